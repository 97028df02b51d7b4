"""The contrastive encoder E^c, its SimCLR projection head and the NT-Xent loss (paper eq. 1-3).

E^c is an image backbone: the DINO ViT-S/16 architecture in the paper preset, a small ResNet in
the CPU default (`ModelConfig.tiny_resnet`, demo.yaml's since 0.6). Its spatial feature grid is
pooled to P tokens and projected to the fusion width d. The contrasted embedding of an image
(`ContrastiveEncoder.projection_embed`) is an attention pooling of those P tokens (one learned
score per token, softmax over P, so the touched region can outweigh the rest of the frame)
followed by the SimCLR projection head; NT-Xent compares exactly these embeddings, and stage 2's
default condition (`condition='embedding'`) is this same embedding, L2-normalised as the loss
sees it. The older condition forms (`tokens`, `pooled`) use the P tokens before the head.

The head is Linear, BatchNorm, ReLU: one BatchNorm per modality, with batch statistics while
it trains and the running statistics in eval mode, so a frozen E^c embeds each image on its own.
Both choices were measured on the synthetic world (tiny model, batch 32, the same data and
schedule): a ViT that sees two very different modalities starts with embeddings dominated by
the modality, and with one normalisation over the mixed batch NT-Xent pushed apart the
near-identical images of each modality, which it can only do by memorising training pairs
(training loss down, held-out retrieval at chance); with SimCLR's further Linear output layer
the embeddings collapsed to one direction (loss log(2B - 1) for the whole run). Without either,
the held-out retrieval rose within a few epochs. Under DistributedDataParallel on GPUs stage 1
makes the norms SyncBatchNorms, so the statistics are those of the global batch.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from convitac_ros.model.config import ModelConfig, PROJECTION_HEADS
from convitac_ros.model.encoders import GridTokenizer, TactileHighPass

VISUAL, TACTILE = 0, 1  # modality indices of `projection_embed`


class ProjectionHead(nn.Module):
    """Projection head of E^c, one of :data:`PROJECTION_HEADS` (``ModelConfig.projection_head``).

    Every form starts with a Linear layer and one BatchNorm per modality (no affine part):
    ``'relu'`` (the head of checkpoints before 0.3) then ends in ReLU, so every embedding is
    non-negative and every cosine lies in [0, 1]; ``'linear'`` ends after the BatchNorm;
    ``'mlp'`` (SimCLR's form) adds ReLU and an output Linear layer.
    """

    def __init__(self, dim: int, out_dim: int, num_modalities: int = 2,
                 kind: str = 'relu') -> None:
        super().__init__()
        if kind not in PROJECTION_HEADS:
            raise ValueError(f'projection head must be one of {PROJECTION_HEADS}, got {kind!r}')
        self.kind = kind
        self.linear = nn.Linear(dim, out_dim)
        self.norms = nn.ModuleList(nn.BatchNorm1d(out_dim, affine=False)
                                   for _ in range(num_modalities))
        self.output = nn.Linear(out_dim, out_dim) if kind == 'mlp' else None

    def forward(self, pooled: torch.Tensor, modality: torch.Tensor) -> torch.Tensor:
        """Args: pooled `(N, d)`, modality `(N,)` ints. Returns: `(N, out_dim)`."""
        hidden = self.linear(pooled)
        normalised = torch.zeros_like(hidden)
        for index, norm in enumerate(self.norms):
            rows = modality == index
            if bool(rows.any()):
                normalised[rows] = norm(hidden[rows])
        if self.kind == 'linear':
            return normalised
        activated = torch.relu(normalised)
        return activated if self.output is None else self.output(activated)


class ContrastiveEncoder(nn.Module):
    """E^c: images `(N, 3, S, S)` -> tokens `(N, P, d)`; `projection_embed`: the contrasted one."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.tokenizer = GridTokenizer(config.contrastive_arch, config.contrastive_kwargs,
                                       config.image_size, math.isqrt(config.num_pooled_tokens),
                                       config.dim)
        self.pool_score = nn.Linear(config.dim, 1)  # attention pooling over the P tokens
        self.tactile_filter = TactileHighPass(config.tactile_highpass, config.image_size)
        # Batch statistics while training, running ones in eval (see the module docstring).
        self.projection_head = ProjectionHead(config.dim, config.projection_dim,
                                              kind=config.projection_head)

    @property
    def backbone(self) -> nn.Module:
        """The timm ViT (the part a DINO weight file initialises)."""
        return self.tokenizer.backbone

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Embed images `(N, 3, S, S)` as the projected pooled tokens `(N, P, d)`."""
        return self.tokenizer(images)

    def prepare(self, images: torch.Tensor, modality: torch.Tensor) -> torch.Tensor:
        """Apply the tactile high-pass (``ModelConfig.tactile_highpass``) to the TACTILE rows.

        Args:
            images: `(N, 3, S, S)` normalised frames.
            modality: `(N,)` VISUAL (0) or TACTILE (1) per row.

        Returns:
            `(N, 3, S, S)`: camera rows unchanged, gel rows high-passed.
        """
        if self.tactile_filter.radius == 0:
            return images
        rows = (modality == TACTILE).view(-1, 1, 1, 1)
        return torch.where(rows, self.tactile_filter(images), images)

    def projection_embed(self, images: torch.Tensor, modality: torch.Tensor) -> torch.Tensor:
        """Compute the contrasted embeddings: what NT-Xent compares and CEC is conditioned on.

        Gel images are high-passed first (:meth:`prepare`). The P tokens are
        attention-pooled and passed through the projection head. In training
        mode the head normalises each modality with the statistics of its rows in this batch
        (as in SimCLR; at least 2 rows per modality present), in eval mode with its running
        statistics, so each image is embedded on its own.

        Args:
            images: `(N, 3, S, S)`.
            modality: `(N,)` VISUAL (0) for camera images, TACTILE (1) for gel images.

        Returns:
            `(N, projection_dim)` (not normalised; `nt_xent_loss` normalises).
        """
        tokens = self(self.prepare(images, modality))  # (N, P, d)
        weights = torch.softmax(self.pool_score(tokens), dim=1)  # (N, P, 1)
        return self.projection_head((weights * tokens).sum(dim=1), modality)


NEGATIVES = ('all', 'cross')  # NT-Xent negatives: every other row, or the other modality's only


def nt_xent_loss(embeddings: torch.Tensor, temperature: float,
                 negatives: str = 'all') -> torch.Tensor:
    """NT-Xent (normalised temperature-scaled cross entropy), paper eq. 2-3 / SimCLR.

    Row i and row i+B of `embeddings` are positives (the B visual embeddings, then the B tactile
    embeddings of the same samples). Similarity is cosine / temperature, self-similarity is
    masked with -inf, and the loss is the mean over the 2B anchors of
    `-log(exp(S[i, pos(i)]) / sum_{j != i} exp(S[i, j]))`. (Eq. 2 writes a sum; the mean only
    rescales it and keeps the learning rate independent of the batch size.)

    With ``negatives='cross'`` an anchor's candidates are the B rows of the other modality only
    (its positive and B - 1 negatives; the symmetric cross-modal loss of CLIP): the loss then
    asks nothing about how images of one modality relate to each other.

    Args:
        embeddings: `(2B, D)` with B >= 1.
        temperature: tau > 0.
        negatives: 'all' (SimCLR, paper eq. 2-3) or 'cross'.

    Returns:
        Scalar loss.

    Raises:
        ValueError: on a non-positive or non-finite temperature or a badly shaped tensor.
    """
    if not isinstance(temperature, (int, float)) or not math.isfinite(temperature) \
            or temperature <= 0:
        raise ValueError(f'temperature must be a finite number > 0, got {temperature!r}')
    if negatives not in NEGATIVES:
        raise ValueError(f'negatives must be one of {NEGATIVES}, got {negatives!r}')
    if embeddings.ndim != 2 or embeddings.shape[0] < 2 or embeddings.shape[0] % 2:
        raise ValueError('embeddings must be (2B, D) with an even number of rows >= 2, got '
                         f'{tuple(embeddings.shape)}')
    num_rows = embeddings.shape[0]
    half = num_rows // 2
    unit = F.normalize(embeddings.float(), dim=1)
    similarity = unit @ unit.T / temperature  # (2B, 2B)
    if negatives == 'cross':
        side = torch.arange(num_rows, device=embeddings.device) >= half  # (2B,) modality
        masked = side[:, None] == side[None, :]  # same modality, the diagonal included
    else:
        masked = torch.eye(num_rows, dtype=torch.bool, device=embeddings.device)
    similarity = similarity.masked_fill(masked, float('-inf'))
    positives = (torch.arange(num_rows, device=embeddings.device) + half) % num_rows  # (2B,)
    return F.cross_entropy(similarity, positives)
