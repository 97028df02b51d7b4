"""Optimizers and learning-rate schedules built from a stage config."""

from __future__ import annotations

from collections.abc import Iterable
import math
import warnings

import torch
from torch.optim.lr_scheduler import LambdaLR

from training.config import StageConfig

OPTIMIZERS = ('adamw', 'adam', 'sgd')
SCHEDULES = ('cosine', 'constant')


def build_optimizer(params: Iterable[torch.nn.Parameter],
                    stage: StageConfig) -> torch.optim.Optimizer:
    """Builds AdamW (the default), Adam (the paper's choice) or SGD with momentum.

    Raises:
        ValueError: For an unknown optimizer name or no trainable parameters.
    """
    params = list(params)
    if not params:
        raise ValueError('no trainable parameters')
    if stage.optimizer == 'adamw':
        return torch.optim.AdamW(params, lr=stage.lr, betas=stage.betas,
                                 weight_decay=stage.weight_decay)
    if stage.optimizer == 'adam':
        return torch.optim.Adam(params, lr=stage.lr, betas=stage.betas,
                                weight_decay=stage.weight_decay)
    if stage.optimizer == 'sgd':
        return torch.optim.SGD(params, lr=stage.lr, momentum=stage.momentum,
                               weight_decay=stage.weight_decay)
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
