"""Predictions over a loader, accuracy per head, confusion matrices and chance levels.

Validation during training and ``training/evaluate.py`` share these functions, so the numbers
in ``metrics.jsonl`` and in an evaluation report are computed the same way.
"""

from __future__ import annotations

from collections.abc import Iterable
import contextlib
from typing import Any

import numpy as np
import torch
from torch import nn

from convitac_ros.data import MISSING_LABEL


@torch.no_grad()
def predict(model: nn.Module, batches: Iterable[Any], device: torch.device,
            autocast: Any = None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Runs the model in eval mode over collated batches.

    Args:
        model: A ConViTac model (``forward(visual, tactile) -> {head: logits}``).
        batches: ``(visual, tactile, labels)`` tuples from ``collate_samples``.
        device: Where the model lives.
        autocast: Optional context-manager factory for mixed precision.

    Returns:
        ``{head: (predicted (N,), target (N,))}``, int64; targets may hold MISSING_LABEL.
    """
    was_training = model.training
    model.eval()
    predicted: dict[str, list[np.ndarray]] = {}
    target: dict[str, list[np.ndarray]] = {}
    for visual, tactile, labels in batches:
        visual, tactile = visual.to(device), tactile.to(device)
        with (autocast or contextlib.nullcontext)():
            logits = model(visual, tactile)
        for head, values in logits.items():
            predicted.setdefault(head, []).append(values.argmax(dim=1).cpu().numpy())
            target.setdefault(head, []).append(labels[head].cpu().numpy())
    model.train(was_training)
    return {head: (np.concatenate(predicted[head]).astype(np.int64),
                   np.concatenate(target[head]).astype(np.int64)) for head in predicted}


def accuracy(predicted: np.ndarray, target: np.ndarray) -> float:
    """Fraction of labelled samples predicted right (NaN when none is labelled)."""
    labelled = target != MISSING_LABEL
    if not labelled.any():
        return float('nan')
    return float((predicted[labelled] == target[labelled]).mean())


def balanced_accuracy(predicted: np.ndarray, target: np.ndarray) -> float:
    """Mean recall over the classes present in the labels (NaN when none is labelled)."""
    labelled = target != MISSING_LABEL
    if not labelled.any():
        return float('nan')
    predicted, target = predicted[labelled], target[labelled]
    return float(np.mean([(predicted[target == c] == c).mean() for c in np.unique(target)]))


def macro_f1(predicted: np.ndarray, target: np.ndarray) -> float:
    """Unweighted mean F1 over the classes that are labelled or predicted (NaN when unlabelled).

    A class that is predicted but never labelled counts with F1 = 0, as in scikit-learn.
    """
    labelled = target != MISSING_LABEL
    if not labelled.any():
        return float('nan')
    predicted, target = predicted[labelled], target[labelled]
    scores = []
    for c in np.union1d(np.unique(target), np.unique(predicted)):
        hits = float(np.sum((predicted == c) & (target == c)))
        scores.append(2 * hits / (np.sum(predicted == c) + np.sum(target == c)))
    return float(np.mean(scores))


def confusion_matrix(predicted: np.ndarray, target: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts ``[true class, predicted class]`` over labelled samples: int64 (C, C)."""
    labelled = target != MISSING_LABEL
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (target[labelled], predicted[labelled]), 1)
    return matrix


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
