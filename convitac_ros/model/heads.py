"""Task heads: one linear classifier per task on the fused `(B, d)` representation."""

from __future__ import annotations

import torch
from torch import nn


class TaskHeads(nn.Module):
    """`(B, d)` -> {head: logits `(B, C_head)`}, in the config's head order."""

    def __init__(self, dim: int, heads: tuple[tuple[str, int], ...], dropout: float) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.classifiers = nn.ModuleDict(
            {name: nn.Linear(dim, num_classes) for name, num_classes in heads})

    def forward(self, fused: torch.Tensor) -> dict[str, torch.Tensor]:
        """Args: fused `(B, d)`. Returns: {head: logits `(B, C)`}."""
        fused = self.dropout(fused)
        return {name: classifier(fused) for name, classifier in self.classifiers.items()}
