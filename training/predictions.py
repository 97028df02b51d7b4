"""Predictions over a loader, and the per-head scores of validation and chance levels.

Validation during training and ``training/evaluate.py`` share these functions, and they score
with `convitac_ros.evaluation.metrics` (the module ``convitac_evaluate`` uses too), so the
numbers in ``metrics.jsonl``, in a dataset report and in a bag report are computed the same way.
"""

from __future__ import annotations

from collections.abc import Iterable
import contextlib
from typing import Any

import numpy as np
import torch
from torch import nn

from convitac_ros.data import MISSING_LABEL
from convitac_ros.evaluation.metrics import accuracy, balanced_accuracy, macro_f1

__all__ = ['accuracy', 'balanced_accuracy', 'head_accuracies', 'macro_f1', 'majority_chance',
           'predict', 'predict_logits']


@torch.no_grad()
def predict_logits(model: nn.Module, batches: Iterable[Any], device: torch.device,
                   autocast: Any = None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Runs the model in eval mode over collated batches and keeps its logits.

    Args:
        model: A ConViTac model (``forward(visual, tactile) -> {head: logits}``).
        batches: ``(visual, tactile, labels)`` tuples from ``collate_samples``.
        device: Where the model lives.
        autocast: Optional context-manager factory for mixed precision.

    Returns:
        ``{head: (logits (N, C) float32, target (N,) int64)}``; targets may hold MISSING_LABEL.
    """
    was_training = model.training
    model.eval()
    logits_of: dict[str, list[np.ndarray]] = {}
    target: dict[str, list[np.ndarray]] = {}
    for visual, tactile, labels in batches:
        visual, tactile = visual.to(device), tactile.to(device)
        with (autocast or contextlib.nullcontext)():
            logits = model(visual, tactile)
        for head, values in logits.items():
            logits_of.setdefault(head, []).append(values.float().cpu().numpy())
            target.setdefault(head, []).append(labels[head].cpu().numpy())
    model.train(was_training)
    return {head: (np.concatenate(logits_of[head]).astype(np.float32),
                   np.concatenate(target[head]).astype(np.int64)) for head in logits_of}


def predict(model: nn.Module, batches: Iterable[Any], device: torch.device,
            autocast: Any = None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """:func:`predict_logits` reduced to the argmax class.

    Returns:
        ``{head: (predicted (N,), target (N,))}``, int64; targets may hold MISSING_LABEL.
    """
    logits_by_head = predict_logits(model, batches, device, autocast)
    return {head: (logits.argmax(axis=1).astype(np.int64), target)
            for head, (logits, target) in logits_by_head.items()}


def majority_chance(train_target: np.ndarray, test_target: np.ndarray) -> float:
    """Accuracy on the test labels of always predicting the train split's most common class."""
    labelled = train_target[train_target != MISSING_LABEL]
    if labelled.size == 0:
        return float('nan')
    majority = np.bincount(labelled).argmax()
    return accuracy(np.full_like(test_target, majority), test_target)


def head_accuracies(predictions: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, float]:
    """Accuracy, balanced accuracy and macro-F1 per head, and the mean accuracy.

    Returns:
        ``{'accuracy/<head>', 'balanced_accuracy/<head>', 'macro_f1/<head>': value,
        'accuracy_mean': mean accuracy over heads with labels}``.
    """
    values = {head: accuracy(*pair) for head, pair in predictions.items()}
    known = [value for value in values.values() if not np.isnan(value)]
    result = {f'accuracy/{head}': value for head, value in values.items()}
    for head, pair in predictions.items():
        result[f'balanced_accuracy/{head}'] = balanced_accuracy(*pair)
        result[f'macro_f1/{head}'] = macro_f1(*pair)
    result['accuracy_mean'] = float(np.mean(known)) if known else float('nan')
    return result
