"""Optimizers and learning-rate schedules built from a stage config."""

from __future__ import annotations

from collections.abc import Callable, Iterable
import math
from typing import Any
import warnings

import torch
from torch.optim.lr_scheduler import LambdaLR

from training.train_config import StageConfig

OPTIMIZERS = ('adamw', 'adam', 'sgd')
SCHEDULES = ('cosine', 'constant')


# Parameters that weight decay leaves alone: norms, biases and learned embeddings/tokens
# (ViT cls/pos/register tokens, our time, stream, spatial and query embeddings). Decaying them
# pulls positions and norms towards zero without regularising anything.
NO_DECAY_NAMES = ('cls_token', 'pos_embed', 'reg_token', 'time_embed', 'stream_embed',
                  'query_embed', 'dist_token')


def decays(name: str, parameter: torch.nn.Parameter) -> bool:
    """Whether weight decay applies: weight matrices and kernels, not 1-D or embedding tensors."""
    leaf = name.rsplit('.', 1)[-1]
    return parameter.ndim >= 2 and leaf not in NO_DECAY_NAMES


def is_backbone(name: str) -> bool:
    """Whether a parameter belongs to a timm backbone (the part pretrained weights initialise)."""
    return '.backbone.' in f'.{name}'


def parameter_groups(named: Iterable[tuple[str, torch.nn.Parameter]], stage: StageConfig,
                     lr_scale: Callable[[str], float] | None = None) -> list[dict[str, Any]]:
    """Optimizer groups: decay or not, backbone or not (``stage.backbone_lr``, 0 = ``lr``).

    Only trainable parameters are taken; empty groups are left out. ``lr_scale(name)``, when
    given, multiplies a parameter's learning rate (fine-tuning: loaded weights learn slower).
    """
    groups: dict[tuple[bool, bool, float], list[torch.nn.Parameter]] = {}
    for name, parameter in named:
        if parameter.requires_grad:
            scale = 1.0 if lr_scale is None else float(lr_scale(name))
            key = (decays(name, parameter), is_backbone(name), scale)
            groups.setdefault(key, []).append(parameter)
    backbone_lr = stage.backbone_lr if stage.backbone_lr > 0 else stage.lr
    return [{'params': params, 'weight_decay': stage.weight_decay if decay else 0.0,
             'lr': (backbone_lr if backbone else stage.lr) * scale}
            for (decay, backbone, scale), params in sorted(groups.items(),
                                                           key=lambda item: item[0])]


def build_optimizer(named: Iterable[tuple[str, torch.nn.Parameter]], stage: StageConfig,
                    lr_scale: Callable[[str], float] | None = None) -> torch.optim.Optimizer:
    """Builds AdamW (the default), Adam (the paper's choice) or SGD with momentum.

    Args:
        named: ``model.named_parameters()``; frozen ones are skipped.
        stage: The stage's optimiser settings (see :func:`parameter_groups`).
        lr_scale: Per-parameter learning-rate multiplier by name (None: 1 everywhere).

    Raises:
        ValueError: For an unknown optimizer name or no trainable parameters.
    """
    groups = parameter_groups(named, stage, lr_scale)
    if not groups:
        raise ValueError('no trainable parameters')
    if stage.optimizer == 'adamw':
        return torch.optim.AdamW(groups, lr=stage.lr, betas=stage.betas)
    if stage.optimizer == 'adam':
        return torch.optim.Adam(groups, lr=stage.lr, betas=stage.betas)
    if stage.optimizer == 'sgd':
        return torch.optim.SGD(groups, lr=stage.lr, momentum=stage.momentum)
    raise ValueError(f'optimizer must be one of {OPTIMIZERS}, got {stage.optimizer!r}')


def lr_factor(step: int, total_steps: int, warmup_steps: int, schedule: str,
              min_ratio: float) -> float:
    """Multiplier of the base learning rate before optimizer step ``step`` (0-based).

    Linear warmup from 1/(warmup+1) to 1 over ``warmup_steps``, then constant or a cosine decay
    to ``min_ratio`` at ``total_steps``.
    """
    if step < warmup_steps:
        return (step + 1) / (warmup_steps + 1)
    if schedule == 'constant':
        return 1.0
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def effective_warmup(warmup_steps: int, total_steps: int) -> int:
    """The warmup actually used: at most half of the run.

    A warmup sized for a large dataset (``touch_and_go.yaml``: 500 steps) would otherwise never
    reach the base learning rate on a small one; the cap is announced with a warning.
    """
    cap = total_steps // 2
    if warmup_steps > cap:
        warnings.warn(f'warmup_steps={warmup_steps} is more than half of the {total_steps} '
                      f'steps of this stage: warming up over {cap} steps instead',
                      stacklevel=2)
        return cap
    return warmup_steps


def build_scheduler(optimizer: torch.optim.Optimizer, stage: StageConfig,
                    total_steps: int) -> LambdaLR:
    """A per-step scheduler following :func:`lr_factor` (warmup capped by effective_warmup).

    Raises:
        ValueError: For an unknown schedule name.
    """
    if stage.schedule not in SCHEDULES:
        raise ValueError(f'schedule must be one of {SCHEDULES}, got {stage.schedule!r}')
    warmup = effective_warmup(stage.warmup_steps, total_steps)

    def factor(step: int) -> float:
        return lr_factor(step, total_steps, warmup, stage.schedule, stage.min_lr_ratio)

    return LambdaLR(optimizer, factor)
