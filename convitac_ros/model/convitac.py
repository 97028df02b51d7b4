"""ConViTac: frozen contrastive condition + fusion encoders + CEC fusion + task heads."""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

import torch
from torch import nn

from convitac_ros.model.config import ModelConfig
from convitac_ros.model.contrastive import ContrastiveEncoder, TACTILE, VISUAL
from convitac_ros.model.encoders import FusionEncoder, TactileHighPass
from convitac_ros.model.fusion import CECFusion, GatedCondition, PooledFusion
from convitac_ros.model.heads import TaskHeads


class AttentionMaps(NamedTuple):
    """Attention mass on the feature tokens of each frame, as grids.

    Each map is the attention summed over queries (averaged over heads and blocks), scaled to
    a maximum of 1 per frame.

    Attributes:
        visual: `(B, T_v, k, k)` or None without a visual stream.
        tactile: `(B, S, T_t, k, k)` or None without tactile streams.
    """

    visual: torch.Tensor | None
    tactile: torch.Tensor | None


class ConViTac(nn.Module):
    """The ConViTac network (paper Sec. II).

    The contrastive encoder E^c (`contrastive_encoder`, present only for `fusion='cec'`) is
    frozen from construction: its parameters never require gradients, it stays in eval mode
    when `train()` is called, and it runs under `torch.no_grad`. It embeds the latest visual
    frame and the latest frame of every tactile sensor in one batched call.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.use_visual = config.modalities in ('both', 'vision')
        self.use_tactile = config.modalities in ('both', 'touch')
        self.num_streams = int(self.use_visual) + (config.num_tactile if self.use_tactile else 0)
        grid_args = (config.image_size, config.feature_grid, config.dim)
        self.visual_encoder = FusionEncoder(
            config.visual_arch, config.visual_kwargs, *grid_args, config.visual_len, 1,
        ) if self.use_visual else None
        self.tactile_encoder = FusionEncoder(
            config.tactile_arch, config.tactile_kwargs, *grid_args, config.tactile_len,
            config.num_tactile,
        ) if self.use_tactile else None
        # The tactile fusion encoder reads high-passed gel frames, as E^c does (prepare()).
        self.tactile_filter = TactileHighPass(config.tactile_highpass, config.image_size)
        self.contrastive_encoder = ContrastiveEncoder(config) if config.uses_condition else None
        self.token_level = config.condition != 'pooled'
        self.condition_gate = GatedCondition(config.projection_dim, config.dim) if (
            config.uses_condition and config.condition == 'embedding') else None
        if config.fusion in ('cec', 'cross_attention'):
            queries_per_stream = config.num_pooled_tokens if self.token_level else 1
            self.fusion = CECFusion(config.dim, config.num_blocks, config.num_heads,
                                    config.mlp_ratio, config.dropout,
                                    self.num_streams * queries_per_stream)
        else:
            self.fusion = PooledFusion(config.dim, self.num_streams, config.fusion)
        self.heads = TaskHeads(config.dim, config.heads, config.dropout)
        self.freeze_contrastive_encoder()

    def freeze_contrastive_encoder(self) -> None:
        """Freeze E^c (stage 2): no gradients, eval mode (also after `train()`)."""
        if self.contrastive_encoder is not None:
            self.contrastive_encoder.requires_grad_(False)
            self.contrastive_encoder.eval()

    def train(self, mode: bool = True) -> ConViTac:
        """Set train/eval mode everywhere except E^c, which always stays in eval mode."""
        super().train(mode)
        if self.contrastive_encoder is not None:
            self.contrastive_encoder.eval()
        return self

    def trainable_parameters(self) -> Iterator[nn.Parameter]:
        """Iterate over the parameters stage 2 optimises (everything but the frozen E^c)."""
        return (parameter for parameter in self.parameters() if parameter.requires_grad)

    def forward(self, visual: torch.Tensor | None, tactile: torch.Tensor | None
                ) -> dict[str, torch.Tensor]:
        """Classify a batch of visual-tactile sequences.

        Args:
            visual: `(B, T_v, 3, S, S)` normalised frames, oldest first (None if unused).
            tactile: `(B, num_tactile*T_t, 3, S, S)`, sensor-major (None if unused).

        Returns:
            {head: logits `(B, C_head)`} in the config's head order.
        """
        return self._run(visual, tactile, need_weights=False)[0]

    def forward_with_attention(self, visual: torch.Tensor | None,
                               tactile: torch.Tensor | None
                               ) -> tuple[dict[str, torch.Tensor], AttentionMaps | None]:
        """Like `forward`, plus per-frame attention maps from the CEC weights.

        The maps are None when the fusion has no token-level attention (`concat`, `add`, or
        `condition='pooled'`).
        """
        logits, attention = self._run(visual, tactile, need_weights=True)
        return logits, None if attention is None else self._split_attention(attention)

    def _run(self, visual: torch.Tensor | None, tactile: torch.Tensor | None,
             need_weights: bool) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
        self._check_inputs(visual, tactile)
        streams = []  # per stream: (B, T, k*k, d)
        if self.visual_encoder is not None:
            streams.extend(self.visual_encoder(visual).unbind(1))
        if self.tactile_encoder is not None:
            streams.extend(self.tactile_encoder(self.tactile_filter(tactile)).unbind(1))
        pooled_streams = torch.stack([s.mean(dim=(1, 2)) for s in streams], dim=1)  # (B, n, d)
        if isinstance(self.fusion, PooledFusion):
            return self.heads(self.fusion(pooled_streams)), None
        condition = self._condition(visual, tactile)
        if self.token_level:
            features = torch.cat([s.flatten(1, 2) for s in streams], dim=1)  # (B, N, d)
        else:
            features = pooled_streams
            need_weights = False
        fused, attention = self.fusion(condition, features, need_weights)
        return self.heads(fused), attention

    def _condition(self, visual: torch.Tensor | None, tactile: torch.Tensor | None
                   ) -> torch.Tensor | None:
        """Compute the condition from the latest frame of every stream.

        Returns:
            `(B, n*P, d)` query offsets (`embedding`: gated contrasted embeddings, repeated over
            each stream's P queries; `tokens`: E^c's tokens), `(B, n, d)` (`pooled`), or None
            without E^c.
        """
        if self.contrastive_encoder is None:
            return None
        latest = []  # each (B, streams, 3, S, S)
        kinds = []  # modality of each stream
        if self.use_visual:
            latest.append(visual[:, -1:])
            kinds.append(VISUAL)
        if self.use_tactile:
            kinds.extend([TACTILE] * self.config.num_tactile)
            batch = tactile.shape[0]
            per_sensor = tactile.reshape(batch, self.config.num_tactile, self.config.tactile_len,
                                         *tactile.shape[2:])
            latest.append(per_sensor[:, :, -1])
        frames = torch.cat(latest, dim=1)  # (B, n, 3, S, S)
        frozen = not any(p.requires_grad for p in self.contrastive_encoder.parameters())
        flat = frames.flatten(0, 1)  # (B*n, 3, S, S)
        modality = torch.tensor(kinds, device=flat.device).repeat(frames.shape[0])
        with torch.set_grad_enabled(torch.is_grad_enabled() and not frozen):
            if self.condition_gate is not None:
                encoded = self.contrastive_encoder.projection_embed(flat, modality)  # (B*n, D)
            else:
                encoded = self.contrastive_encoder(
                    self.contrastive_encoder.prepare(flat, modality))  # (B*n, P, d)
        encoded = encoded.reshape(*frames.shape[:2], *encoded.shape[1:])
        if self.condition_gate is not None:
            return self.condition_gate(encoded, self.config.num_pooled_tokens)
        return encoded.flatten(1, 2) if self.token_level else encoded.mean(dim=2)

    def _check_inputs(self, visual: torch.Tensor | None, tactile: torch.Tensor | None
                      ) -> None:
        config = self.config
        frame = (3, config.image_size, config.image_size)
        expected = []
        if self.use_visual:
            expected.append(('visual', visual, config.visual_len))
        if self.use_tactile:
            expected.append(('tactile', tactile, config.num_tactile * config.tactile_len))
        for name, tensor, length in expected:
            if tensor is None or tensor.ndim != 5 or tuple(tensor.shape[1:]) != (length, *frame):
                shape = None if tensor is None else tuple(tensor.shape)
                raise ValueError(f'{name} must be (B, {length}, {frame[0]}, {frame[1]}, '
                                 f'{frame[2]}), got {shape}')

    def _split_attention(self, attention: torch.Tensor) -> AttentionMaps:
        """`(B, Q, N)` attention -> per-frame grids scaled to max 1."""
        config = self.config
        grid = config.feature_grid
        mass = attention.sum(dim=1)  # (B, N)
        mass = mass.reshape(mass.shape[0], -1, grid, grid)  # (B, frames, k, k)
        peak = mass.flatten(2).amax(dim=2).clamp_min(1e-12)[..., None, None]
        mass = mass / peak
        visual = tactile = None
        if self.use_visual:
            visual, mass = mass[:, :config.visual_len], mass[:, config.visual_len:]
        if self.use_tactile:
            tactile = mass.reshape(mass.shape[0], config.num_tactile, config.tactile_len,
                                   grid, grid)
        return AttentionMaps(visual, tactile)
