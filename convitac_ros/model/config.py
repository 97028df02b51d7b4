"""The one frozen dataclass that holds every architecture number of ConViTac.

Training knobs (optimiser, schedule, augmentation) and deployment knobs (ROS parameters) live
elsewhere; a checkpoint stores `ModelConfig.to_dict()` and the model is rebuilt from it alone.
"""

from __future__ import annotations

from collections.abc import Mapping
import dataclasses
import math
from typing import Any, Union

BackboneArg = Union[int, float, bool]
BackboneKwargs = tuple[tuple[str, BackboneArg], ...]

FUSIONS = ('cec', 'cross_attention', 'concat', 'add')
MODALITIES = ('both', 'vision', 'touch')
CONDITIONS = ('embedding', 'tokens', 'pooled')
# E^c's projection head (convitac_ros.model.contrastive.ProjectionHead); a checkpoint whose
# model_config lacks the field was written with LEGACY_PROJECTION_HEAD.
PROJECTION_HEADS = ('linear', 'mlp', 'relu')
LEGACY_PROJECTION_HEAD = 'relu'
# The tactile high-pass (convitac_ros.model.encoders.TactileHighPass) of a checkpoint whose
# model_config lacks the field: off, as every checkpoint before 0.4 was trained.
LEGACY_TACTILE_HIGHPASS = 0.0
HEAD_NAMES = ('material', 'hardness', 'roughness', 'grasp_success')

# The timm backbones a config may name, with the constructor arguments it may pass them. A
# checkpoint's config is data: anything else (a hub name such as 'hf-hub:owner/model', a
# 'checkpoint_path' or 'pretrained_cfg' argument that makes timm read a file or download) is
# refused before any model is built.
_VIT_ARGS = frozenset(('patch_size', 'embed_dim', 'depth', 'num_heads', 'mlp_ratio', 'qkv_bias',
                       'drop_rate', 'drop_path_rate'))
_RESNET_ARGS = frozenset(('drop_rate', 'drop_path_rate'))
# SMALL_RESNET is built here (timm's ResNet class with BasicBlocks), not by name from timm's
# registry: `width` channels in the first stage, doubling per stage (4 stages), `blocks` per stage.
SMALL_RESNET = 'resnet_small'
SMALL_RESNET_LIMITS = {'width': (1, 512), 'blocks': (1, 8)}  # inclusive int ranges
BACKBONES: dict[str, frozenset[str]] = {
    'vit_tiny_patch16_224': _VIT_ARGS, 'vit_small_patch16_224': _VIT_ARGS,
    'vit_base_patch16_224': _VIT_ARGS, 'resnet18': _RESNET_ARGS, 'resnet34': _RESNET_ARGS,
    'resnet50': _RESNET_ARGS, SMALL_RESNET: _RESNET_ARGS | {'width', 'blocks'},
}

# A DINO-style tiny ViT: 64 px images, patch 8 (an 8 x 8 grid), width 64.
_TINY_VIT: BackboneKwargs = (('patch_size', 8), ('embed_dim', 64), ('depth', 2), ('num_heads', 2))
_TINY_FUSION_VIT: BackboneKwargs = (
    ('patch_size', 8), ('embed_dim', 48), ('depth', 1), ('num_heads', 2),
)


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Every architecture number of ConViTac (paper Sec. II plus the gaps it leaves open).

    Attributes:
        image_size: side S of the square frames every encoder sees, in pixels.
        visual_len: T_v, camera frames per sample (oldest first).
        tactile_len: T_t, frames per tactile sensor per sample.
        num_tactile: number of tactile sensors (1 Touch and Go, 2 Feeling of Success).
        contrastive_arch: backbone of the contrastive encoder E^c, one of :data:`BACKBONES`
            (a timm name, or :data:`SMALL_RESNET`, built here).
        contrastive_kwargs: extra timm constructor arguments for E^c (width, depth, patch;
            only those :data:`BACKBONES` allows, numbers or bools).
        num_pooled_tokens: P, tokens E^c keeps per image (a square: its patch grid is
            adaptively average-pooled to sqrt(P) x sqrt(P)).
        dim: d, the fusion width (E^c tokens, feature tokens and CEC blocks).
        visual_arch / visual_kwargs: timm backbone of the visual fusion encoder.
        tactile_arch / tactile_kwargs: timm backbone of the tactile fusion encoder.
        feature_grid: each fusion-encoder frame is pooled to feature_grid^2 spatial tokens.
        num_blocks: L, the number of CEC (cross-attention) blocks.
        num_heads: attention heads in each CEC block.
        mlp_ratio: hidden width of the CEC MLP relative to d.
        dropout: dropout in the CEC blocks and before the heads.
        projection_dim: width of the contrasted embedding.
        projection_head: form of E^c's projection head: 'linear' (default: Linear, BN, so
            cosines span [-1, 1]), 'mlp' (SimCLR's Linear, BN, ReLU, Linear) or 'relu'
            (Linear, BN, ReLU: the head of every checkpoint written before the field existed,
            whose config lacks it).
        tactile_highpass: sigma of the Gaussian whose blur is subtracted from every tactile
            frame before any encoder sees it, as a fraction of the frame side S (0: off, the
            frames as they come). A gel image is mostly the sensor's own illumination pattern,
            the same in every frame; what touch adds is its fine relief. Subtracting the
            low-pass keeps the relief and drops the pattern, for any sensor, without a
            reference frame. Checkpoints written before the field existed have it off.
        fusion: 'cec' (paper), 'cross_attention' (learned queries, no contrastive condition),
            'concat' or 'add' (pooled stream features, no attention).
        modalities: 'both', 'vision' or 'touch' (drops the other stream and its condition).
        condition: 'embedding' (default: E^c's contrasted embedding of each stream's latest
            frame, the vector NT-Xent trained, added to that stream's learned queries through
            a zero-initialised gate, so CEC starts as the cross-attention baseline), 'tokens'
            (the earlier form: E^c's P tokens before the projection head are the queries) or
            'pooled' (one pooled token per stream, the condition acting through the residual;
            the shape of the authors' released model.py, not a reproduction of it).
        heads: (name, num_classes) per task head, in output order.
    """

    image_size: int = 224
    visual_len: int = 2
    tactile_len: int = 2
    num_tactile: int = 1
    contrastive_arch: str = 'vit_small_patch16_224'
    contrastive_kwargs: BackboneKwargs = ()
    num_pooled_tokens: int = 16
    dim: int = 256
    visual_arch: str = 'resnet18'
    visual_kwargs: BackboneKwargs = ()
    tactile_arch: str = 'resnet18'
    tactile_kwargs: BackboneKwargs = ()
    feature_grid: int = 4
    num_blocks: int = 2
    num_heads: int = 8
    mlp_ratio: float = 4.0
    dropout: float = 0.1
    projection_dim: int = 128
    projection_head: str = 'linear'
    tactile_highpass: float = 1 / 16
    fusion: str = 'cec'
    modalities: str = 'both'
    condition: str = 'embedding'
    heads: tuple[tuple[str, int], ...] = (('material', 20), ('hardness', 2), ('roughness', 2))

    def __post_init__(self) -> None:
        # JSON gives lists (and callers may pass dicts); store tuples of pairs so the config
        # stays hashable and compares equal after a round trip.
        for name in ('contrastive_kwargs', 'visual_kwargs', 'tactile_kwargs', 'heads'):
            value = getattr(self, name)
            items = value.items() if isinstance(value, Mapping) else value
            object.__setattr__(self, name, tuple(tuple(item) for item in items))
        self._validate()

    def _validate(self) -> None:
        positive = ('image_size', 'visual_len', 'tactile_len', 'num_tactile', 'num_pooled_tokens',
                    'dim', 'feature_grid', 'num_blocks', 'num_heads', 'projection_dim')
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f'ModelConfig.{name} must be a positive int, got {value!r}')
        choices = {'fusion': FUSIONS, 'modalities': MODALITIES, 'condition': CONDITIONS,
                   'projection_head': PROJECTION_HEADS}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(
                    f'ModelConfig.{name} must be one of {allowed}, got {getattr(self, name)!r}')
        if math.isqrt(self.num_pooled_tokens) ** 2 != self.num_pooled_tokens:
            raise ValueError('ModelConfig.num_pooled_tokens must be a square (a k x k grid), '
                             f'got {self.num_pooled_tokens}')
        if self.dim % self.num_heads:
            raise ValueError(f'ModelConfig.dim ({self.dim}) must be divisible by num_heads '
                             f'({self.num_heads})')
        if not self.mlp_ratio > 0:
            raise ValueError(f'ModelConfig.mlp_ratio must be > 0, got {self.mlp_ratio}')
        highpass = self.tactile_highpass
        if (isinstance(highpass, bool) or not isinstance(highpass, (int, float))
                or not math.isfinite(highpass) or not 0.0 <= highpass <= 0.5):
            raise ValueError('ModelConfig.tactile_highpass must be a number in [0, 0.5] (a '
                             f'fraction of the frame side; 0 = off), got {highpass!r}')
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f'ModelConfig.dropout must be in [0, 1), got {self.dropout}')
        self._validate_backbones()
        self._validate_heads()

    def _validate_backbones(self) -> None:
        for stream in ('contrastive', 'visual', 'tactile'):
            arch = getattr(self, f'{stream}_arch')
            if arch not in BACKBONES:
                raise ValueError(f'ModelConfig.{stream}_arch {str(arch)[:100]!r} is not a '
                                 f'supported backbone; supported: {sorted(BACKBONES)}')
            for item in getattr(self, f'{stream}_kwargs'):
                if len(item) != 2 or not isinstance(item[0], str):
                    raise ValueError(f'ModelConfig.{stream}_kwargs must hold (name, value) '
                                     f'pairs, got {str(item)[:100]}')
                key, value = item
                if key not in BACKBONES[arch]:
                    raise ValueError(f'ModelConfig.{stream}_kwargs: {key[:100]!r} is not an '
                                     f'allowed argument of {arch}; allowed: '
                                     f'{sorted(BACKBONES[arch])}')
                if isinstance(value, str) or not isinstance(value, (int, float)):
                    raise ValueError(f'ModelConfig.{stream}_kwargs: {key} must be a number or '
                                     f'a bool, got {str(value)[:100]!r}')
                limits = SMALL_RESNET_LIMITS.get(key) if arch == SMALL_RESNET else None
                if limits and (isinstance(value, bool) or not isinstance(value, int)
                               or not limits[0] <= value <= limits[1]):
                    raise ValueError(f'ModelConfig.{stream}_kwargs: {key} of {arch} must be an '
                                     f'int in [{limits[0]}, {limits[1]}], got '
                                     f'{str(value)[:100]!r}')

    def _validate_heads(self) -> None:
        if not self.heads:
            raise ValueError('ModelConfig.heads must name at least one task head')
        names = [head[0] if len(head) == 2 else None for head in self.heads]
        for head in self.heads:
            if (len(head) != 2 or not isinstance(head[0], str) or not head[0]
                    or not isinstance(head[1], int) or head[1] < 2):
                raise ValueError('ModelConfig.heads must hold (name, num_classes >= 2) pairs, '
                                 f'got {head!r}')
        if len(set(names)) != len(names):
            raise ValueError(f'ModelConfig.heads has duplicate names: {names}')

    @property
    def uses_condition(self) -> bool:
        """Whether the model has (and needs) the contrastive encoder E^c."""
        return self.fusion == 'cec'

    @property
    def head_sizes(self) -> dict[str, int]:
        """Head name -> number of classes, in output order."""
        return dict(self.heads)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (tuples become lists) that `from_dict` turns back into this config."""
        return {field.name: _jsonable(getattr(self, field.name))
                for field in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Rebuild a config from `to_dict()` output.

        A dict without ``projection_head`` or ``tactile_highpass`` (a checkpoint written before
        the field existed) gets :data:`LEGACY_PROJECTION_HEAD` and
        :data:`LEGACY_TACTILE_HIGHPASS`, what it was trained with.

        Raises:
            ValueError: on unknown keys (e.g. a checkpoint from a newer version) or bad values.
        """
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f'unknown ModelConfig keys {unknown}; known keys: {sorted(known)}')
        return cls(**{'projection_head': LEGACY_PROJECTION_HEAD,
                      'tactile_highpass': LEGACY_TACTILE_HIGHPASS, **data})

    def replace(self, **changes: Any) -> ModelConfig:
        """Return a copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    @classmethod
    def tiny(cls, **overrides: Any) -> ModelConfig:
        """Build the tiny config (~250k parameters) for CPU tests and the demo checkpoint."""
        base = {
            'image_size': 64, 'visual_len': 2, 'tactile_len': 2, 'num_tactile': 1,
            'contrastive_arch': 'vit_small_patch16_224', 'contrastive_kwargs': _TINY_VIT,
            'num_pooled_tokens': 16, 'dim': 64,
            'visual_arch': 'vit_small_patch16_224', 'visual_kwargs': _TINY_FUSION_VIT,
            'tactile_arch': 'vit_small_patch16_224', 'tactile_kwargs': _TINY_FUSION_VIT,
            'feature_grid': 4, 'num_blocks': 1, 'num_heads': 4, 'mlp_ratio': 2.0, 'dropout': 0.0,
            'projection_dim': 64,
        }
        base.update(overrides)
        return cls(**base)

    @classmethod
    def tiny_resnet(cls, **overrides: Any) -> ModelConfig:
        """Build the tiny config with E^c a small ResNet: demo.yaml's preset since 0.6.

        E^c is :data:`SMALL_RESNET` of width 32 with one block per stage (1.3 M parameters).
        Its held-out retrieval on a world the defaults were not designed on was over twice
        the tiny ViT's (docs/results/stage1_v0.6/README.md).
        """
        return cls.tiny(**{'contrastive_arch': SMALL_RESNET,
                           'contrastive_kwargs': (('width', 32), ('blocks', 1)), **overrides})

    @classmethod
    def paper(cls, **overrides: Any) -> ModelConfig:
        """Build the paper-size config: DINO ViT-S/16 E^c at 224 px, ResNet-18 fusion encoders."""
        return cls(**overrides)


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_jsonable(item) for item in value]
    return value
