"""The contrastive encoder E^c, its SimCLR projection head and the NT-Xent loss (paper eq. 1-3).

E^c is a timm ViT (DINO ViT-S/16 architecture by default). Its patch-token grid is pooled to
P tokens and projected to the fusion width d. The contrasted embedding of an image
(`ContrastiveEncoder.projection_embed`) is an attention pooling of those P tokens (one learned
score per token, softmax over P, so the touched region can outweigh the rest of the frame)
followed by the SimCLR projection head; NT-Xent compares exactly these embeddings, and stage 2's
default condition (`condition='embedding'`) is this same embedding, L2-normalised as the loss
sees it. The older condition forms (`tokens`, `pooled`) use the P tokens before the head.

The head normalises its hidden layer with batch statistics while it trains (SimCLR's
Linear-BN-ReLU-Linear) and with the running statistics in eval mode, so a frozen E^c embeds each
image on its own. A ViT that sees two very different modalities starts with embeddings
dominated by one direction shared by all images (mean cosine ~0.8); without the batch
normalisation NT-Xent falls straight into the collapsed solution (all embeddings equal, loss
log(2B - 1), zero gradient) before it finds the visual-tactile link. Under DistributedDataParallel
on GPUs stage 1 makes it a SyncBatchNorm, so the statistics are those of the global batch.
"""

from __future__ import annotations

from collections import OrderedDict
import math

import torch
from torch import nn
from torch.nn import functional as F

from convitac_ros.model.config import ModelConfig
from convitac_ros.model.encoders import GridTokenizer


class ContrastiveEncoder(nn.Module):
    """E^c: images `(N, 3, S, S)` -> tokens `(N, P, d)`; `projection_embed`: the contrasted one."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.tokenizer = GridTokenizer(config.contrastive_arch, config.contrastive_kwargs,
                                       config.image_size, math.isqrt(config.num_pooled_tokens),
                                       config.dim)
        self.pool_score = nn.Linear(config.dim, 1)  # attention pooling over the P tokens
        self.projection_head = nn.Sequential(OrderedDict([
            ('0', nn.Linear(config.dim, config.dim)),
            # Batch statistics while training, running ones in eval (see the module docstring).
            ('norm', nn.BatchNorm1d(config.dim, affine=False)),
            ('1', nn.ReLU(inplace=True)),
            ('2', nn.Linear(config.dim, config.projection_dim)),
        ]))

    @property
    def backbone(self) -> nn.Module:
        """The timm ViT (the part a DINO weight file initialises)."""
        return self.tokenizer.backbone

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Embed images `(N, 3, S, S)` as the projected pooled tokens `(N, P, d)`."""
        return self.tokenizer(images)

    def projection_embed(self, images: torch.Tensor) -> torch.Tensor:
        """Compute the contrasted embeddings: what NT-Xent compares and CEC is conditioned on.

        The P tokens are attention-pooled and passed through the projection head. In training
        mode the head normalises with the statistics of this batch (as in SimCLR; N >= 2), in
        eval mode with its running statistics, so each image is embedded on its own.

        Args:
            images: `(N, 3, S, S)`.

        Returns:
            `(N, projection_dim)` (not normalised; `nt_xent_loss` normalises).
        """
        tokens = self(images)  # (N, P, d)
        weights = torch.softmax(self.pool_score(tokens), dim=1)  # (N, P, 1)
        return self.projection_head((weights * tokens).sum(dim=1))


def nt_xent_loss(embeddings: torch.Tensor, temperature: float) -> torch.Tensor:
    """NT-Xent (normalised temperature-scaled cross entropy), paper eq. 2-3 / SimCLR.

    Row i and row i+B of `embeddings` are positives (the B visual embeddings, then the B tactile
    embeddings of the same samples). Similarity is cosine / temperature, self-similarity is
    masked with -inf, and the loss is the mean over the 2B anchors of
    `-log(exp(S[i, pos(i)]) / sum_{j != i} exp(S[i, j]))`. (Eq. 2 writes a sum; the mean only
    rescales it and keeps the learning rate independent of the batch size.)

    Args:
        embeddings: `(2B, D)` with B >= 1.
        temperature: tau > 0.

    Returns:
        Scalar loss.

    Raises:
        ValueError: on a non-positive or non-finite temperature or a badly shaped tensor.
    """
    if not isinstance(temperature, (int, float)) or not math.isfinite(temperature) \
            or temperature <= 0:
        raise ValueError(f'temperature must be a finite number > 0, got {temperature!r}')
    if embeddings.ndim != 2 or embeddings.shape[0] < 2 or embeddings.shape[0] % 2:
        raise ValueError('embeddings must be (2B, D) with an even number of rows >= 2, got '
                         f'{tuple(embeddings.shape)}')
    num_rows = embeddings.shape[0]
    half = num_rows // 2
    unit = F.normalize(embeddings.float(), dim=1)
    similarity = unit @ unit.T / temperature  # (2B, 2B)
    eye = torch.eye(num_rows, dtype=torch.bool, device=embeddings.device)
    similarity = similarity.masked_fill(eye, float('-inf'))
    positives = (torch.arange(num_rows, device=embeddings.device) + half) % num_rows  # (2B,)
    return F.cross_entropy(similarity, positives)
