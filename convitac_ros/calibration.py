"""Temperature scaling: one temperature per head makes its probabilities mean what they say.

A network trained with cross-entropy is usually over-confident: of the grasps it gives
P(success) = 0.9, fewer than 90 % succeed. Temperature scaling (Guo et al., "On Calibration of
Modern Neural Networks", ICML 2017) divides a head's logits by one scalar T > 0 before the
softmax, fitted to minimise the negative log-likelihood on held-out data; the argmax, hence the
accuracy, does not change. Stage 2 fits T per head on its validation split when it writes a
checkpoint (`training/train.py`, `stage2.calibrate`), and stores them in the checkpoint's
``training`` metadata under ``calibration``::

    "calibration": {"temperatures": {"grasp_success": 1.7, ...}, "fitted_on": "validation",
                    "samples": {...}, "nll_before": {...}, "nll_after": {...}}

The Predictor, the ONNX export (hence the onnxruntime backend) and the node apply them alike;
a checkpoint without them (older ones, or ``stage2.calibrate: false``) has T = 1 for every head.
Temperatures come from a file, so they are checked like the rest of its metadata. No torch here.
"""

from __future__ import annotations

from collections.abc import Mapping
import math
from typing import Any

import numpy as np

# A temperature outside this range is an error in the file, not a fit: the search is bounded
# to it, and 20 already flattens any sane logits to about uniform.
TEMPERATURE_RANGE = (0.05, 20.0)
KEY = 'calibration'


def temperatures_of(training: Mapping[str, Any] | None, heads: Mapping[str, Any],
                    where: str) -> dict[str, float]:
    """The temperature of every head recorded in a checkpoint's training metadata (1 if none).

    Args:
        training: The checkpoint's (or export's) ``training`` metadata.
        heads: The model's heads (head -> class names).
        where: The file, for the message.

    Raises:
        ValueError: A temperature that is not a number in `TEMPERATURE_RANGE`, or one for a
            head the model does not have.
    """
    record = (training.get(KEY) if isinstance(training, Mapping) else None) or {}
    found = record.get('temperatures', {}) if isinstance(record, Mapping) else None
    if not isinstance(found, Mapping):
        raise ValueError(f'{where}: calibration.temperatures must map heads to numbers')
    low, high = TEMPERATURE_RANGE
    out = {}
    for head in heads:
        value = found.get(head, 1.0)
        if (isinstance(value, bool) or not isinstance(value, (int, float))
                or not math.isfinite(value) or not low <= value <= high):
            raise ValueError(f'{where}: temperature of head {head} is {value!r}; it must be a '
                             f'number in [{low}, {high}]')
        out[head] = float(value)
    unknown = [head for head in found if head not in heads]
    if unknown:
        raise ValueError(f'{where}: temperatures for head(s) {unknown} the model does not have')
    return out


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Softmax of ``logits / temperature`` over the last axis: (..., C) -> (..., C) float64."""
    scaled = np.asarray(logits, dtype=np.float64) / temperature
    scaled -= scaled.max(axis=-1, keepdims=True)
    exp = np.exp(scaled)
    return exp / exp.sum(axis=-1, keepdims=True)


def negative_log_likelihood(logits: np.ndarray, target: np.ndarray,
                            temperature: float = 1.0) -> float:
    """Mean NLL of the true classes under ``softmax(logits / T)``: logits (N, C), target (N,)."""
    scaled = np.asarray(logits, dtype=np.float64) / temperature
    top = scaled.max(axis=1, keepdims=True)
    log_norm = np.log(np.exp(scaled - top).sum(axis=1)) + top[:, 0]
    return float(np.mean(log_norm - scaled[np.arange(len(target)), target]))


def fit_temperature(logits: np.ndarray, target: np.ndarray, steps: int = 60) -> float:
    """The temperature that minimises the NLL of labelled samples (golden-section on log T).

    The NLL of ``logits / T`` is convex in 1/T, so it has one minimum on the bounded range; the
    search finds it to about 1e-6 in log T.

    Args:
        logits: (N, C) logits.
        target: (N,) true class indices (samples with a negative index are left out).
        steps: Golden-section iterations.

    Returns:
        T in `TEMPERATURE_RANGE`; 1.0 when no sample is labelled, or when every labelled sample
        is classified right: the NLL then falls all the way to T -> 0 and no temperature is
        identified (the search would return the range's floor, a model sharpened to certainty
        by a validation split too small to show its errors).
    """
    target = np.asarray(target, dtype=np.int64)
    labelled = target >= 0
    if not labelled.any():
        return 1.0
    logits, target = np.asarray(logits, dtype=np.float64)[labelled], target[labelled]
    if not identifiable(logits, target):
        return 1.0

    def loss(log_t: float) -> float:
        return negative_log_likelihood(logits, target, math.exp(log_t))

    low, high = (math.log(v) for v in TEMPERATURE_RANGE)
    ratio = (math.sqrt(5.0) - 1.0) / 2.0
    a, b = low + (1 - ratio) * (high - low), low + ratio * (high - low)
    loss_a, loss_b = loss(a), loss(b)
    for _ in range(steps):
        if loss_a <= loss_b:
            high, b, loss_b = b, a, loss_a
            a = low + (1 - ratio) * (high - low)
            loss_a = loss(a)
        else:
            low, a, loss_a = a, b, loss_b
            b = low + ratio * (high - low)
            loss_b = loss(b)
    return float(math.exp((low + high) / 2.0))


def identifiable(logits: np.ndarray, target: np.ndarray) -> bool:
    """Whether labelled samples pin a temperature down: at least one of them misclassified."""
    return bool((np.asarray(logits).argmax(axis=1) != np.asarray(target)).any())


def fit_temperatures(logits: Mapping[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, Any]:
    """Fit every head's temperature; the record stored as ``training['calibration']``.

    Args:
        logits: Head -> (logits (N, C), target (N,) with -1 where unlabelled), e.g.
            `training.predictions.predict_logits` on the validation split.

    Returns:
        ``temperatures``, ``samples`` (labelled samples per head), ``nll_before`` and
        ``nll_after`` per head (None without labels), ``fitted_on``, and ``not_fitted``: the
        heads left at T = 1 and why (no labels, or no validation error to fit on).
    """
    record: dict[str, Any] = {'temperatures': {}, 'samples': {}, 'nll_before': {},
                              'nll_after': {}, 'fitted_on': 'validation', 'not_fitted': {}}
    for head, (values, target) in logits.items():
        target = np.asarray(target)
        labelled = target >= 0
        temperature = fit_temperature(values, target)
        record['temperatures'][head] = round(temperature, 6)
        record['samples'][head] = int(labelled.sum())
        if not labelled.any():
            record['not_fitted'][head] = 'no labelled validation sample'
        elif not identifiable(values[labelled], target[labelled]):
            record['not_fitted'][head] = (f'all {int(labelled.sum())} validation samples right: '
                                          'no error to fit a temperature on (T = 1)')
        for key, t in (('nll_before', 1.0), ('nll_after', temperature)):
            record[key][head] = (negative_log_likelihood(values[labelled], target[labelled], t)
                                 if labelled.any() else None)
    return record
