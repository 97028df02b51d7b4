"""A model's declared contract and its outputs, checked the same way whichever runtime runs it.

A model file (a `.safetensors` checkpoint or an `.onnx` export) declares what it takes and
gives: its heads and their class names, the side S of its frames and the frames per sample
(T_v + S_t * T_t). Those numbers size what the predictor allocates, so they are data to check
before anything is allocated: `model_contract` refuses a malformed or oversized declaration in
one line naming the file and the field, and `ModelContract.check_memory` refuses a batch whose
input buffers would exceed `MAX_INPUT_BYTES`. `check_outputs` is the one check of what a model
returned (finite, shaped as declared, probabilities that sum to 1): a batch that fails it is
never published or scored. No torch, no ROS here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
import math
from typing import Any

import numpy as np

MAX_IMAGE_SIZE = 1024  # pixels, the side S of the square frames the model sees
MAX_FRAMES_PER_SAMPLE = 64  # T_v + S_t * T_t
MAX_HEADS = 64
MAX_CLASSES = 10_000  # per head
MAX_CLASS_NAME_CHARS = 200
# uint8 staging plus the float32 frames made from it, for the largest batch: 1 GiB holds a
# batch of 16 paper-size samples (4 frames of 224 px) hundreds of times over.
MAX_INPUT_BYTES = 1 << 30
BYTES_PER_PIXEL = 3 * (1 + 4)  # RGB, uint8 staging + float32 normalised copy
# Softmax in fp16 sums to 1 within about 1e-3; anything further off is not a distribution.
SUM_TOLERANCE = 1e-2


class ContractError(ValueError):
    """A model file whose declared heads or sizes cannot be served; the text names both."""


class OutputError(ValueError):
    """A model output that is not a finite, well-shaped probability distribution per head."""


@dataclass(frozen=True)
class ModelContract:
    """What a model takes and gives, checked.

    Attributes:
        heads: head -> ordered class names (at least one head, each with >= 1 class).
        image_size: side S in pixels of the frames the model sees.
        visual_len: T_v, camera frames per sample.
        tactile_len: T_t, frames per tactile sensor.
        num_tactile: S_t, tactile sensors.
        source: the file, for messages.
    """

    heads: dict[str, list[str]]
    image_size: int
    visual_len: int
    tactile_len: int
    num_tactile: int
    source: str

    @property
    def frames_per_sample(self) -> int:
        """T_v + S_t * T_t: frames in one sample's staging row."""
        return self.visual_len + self.num_tactile * self.tactile_len

    def input_bytes(self, batch: int) -> int:
        """Bytes of the input buffers for `batch` samples (uint8 staging + float32 frames)."""
        return batch * self.frames_per_sample * self.image_size ** 2 * BYTES_PER_PIXEL

    def check_memory(self, batch: int, limit: int = MAX_INPUT_BYTES) -> None:
        """Refuse a batch whose input buffers would exceed `limit` bytes (nothing allocated).

        Raises:
            ContractError: naming the file, the sizes and the limit.
        """
        needed = self.input_bytes(batch)
        if needed > limit:
            raise ContractError(
                f'{self.source}: a batch of {batch} needs {needed / 2**20:.0f} MiB of input '
                f'buffers ({self.frames_per_sample} frames of {self.image_size} px per sample), '
                f'over the limit of {limit / 2**20:.0f} MiB; use a smaller max_batch or model')


def model_contract(heads: Any, preprocess: Any, source: str) -> ModelContract:
    """Check a model's declared heads and sizes; nothing is allocated here.

    Args:
        heads: the file's head -> class names mapping, as decoded (any JSON value).
        preprocess: the file's preprocessing record (`image_size`, `visual_len`,
            `tactile_len`, `num_tactile`), as decoded.
        source: the file, named in every message.

    Returns:
        The checked contract (class names copied).

    Raises:
        ContractError: one line naming the file and the field: no heads, a head that is not
            a non-empty list of distinct non-empty strings, a size that is not an int or is
            beyond `MAX_IMAGE_SIZE` / `MAX_FRAMES_PER_SAMPLE`, or one sample's buffers over
            `MAX_INPUT_BYTES`.
    """
    if not isinstance(heads, Mapping):
        raise ContractError(f'{source}: heads must map each head name to its class names, '
                            f'got a {type(heads).__name__}')
    if not heads:
        raise ContractError(f'{source}: heads is empty; a model needs at least one head')
    if len(heads) > MAX_HEADS:
        raise ContractError(f'{source}: {len(heads)} heads, at most {MAX_HEADS}')
    checked = {}
    for head, classes in heads.items():
        if not _is_name(head):
            raise ContractError(f'{source}: head name {str(head)[:50]!r} must be a non-empty '
                                'string')
        checked[head] = check_class_names(classes, f'{source}: heads.{head}')
    if not isinstance(preprocess, Mapping):
        raise ContractError(f'{source}: preprocess must be a mapping, got a '
                            f'{type(preprocess).__name__}')
    sizes = {}
    for key, low, high in (('image_size', 1, MAX_IMAGE_SIZE),
                           ('visual_len', 0, MAX_FRAMES_PER_SAMPLE),
                           ('tactile_len', 0, MAX_FRAMES_PER_SAMPLE),
                           ('num_tactile', 0, MAX_FRAMES_PER_SAMPLE)):
        value = preprocess.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise ContractError(f'{source}: preprocess.{key} must be an integer in '
                                f'[{low}, {high}], got {str(value)[:50]}')
        sizes[key] = value
    contract = ModelContract(heads=checked, source=source, **sizes)
    frames = contract.frames_per_sample
    if not 1 <= frames <= MAX_FRAMES_PER_SAMPLE:
        raise ContractError(f'{source}: preprocess declares {frames} frames per sample '
                            f'(visual_len + num_tactile * tactile_len), allowed 1 to '
                            f'{MAX_FRAMES_PER_SAMPLE}')
    contract.check_memory(1)
    return contract


def check_class_names(classes: Any, where: str) -> list[str]:
    """A head's class names, checked so that every file the project writes can carry them.

    A name is a non-empty string of at most `MAX_CLASS_NAME_CHARS` printable characters with
    no leading or trailing space; names are distinct.

    Raises:
        ContractError: `where`, then what is wrong.
    """
    if not isinstance(classes, list) or not classes:
        raise ContractError(f'{where} must be a non-empty list of class names, got '
                            f'{str(classes)[:50]}')
    if len(classes) > MAX_CLASSES:
        raise ContractError(f'{where}: {len(classes)} classes, at most {MAX_CLASSES}')
    for name in classes:
        if not _is_name(name):
            raise ContractError(f'{where}: class name {str(name)[:50]!r} must be a non-empty '
                                f'string of at most {MAX_CLASS_NAME_CHARS} printable '
                                'characters without leading or trailing spaces')
    if len(set(classes)) != len(classes):
        raise ContractError(f'{where}: repeated class names in {classes[:20]}')
    return list(classes)


def _is_name(value: Any) -> bool:
    return (isinstance(value, str) and 0 < len(value) <= MAX_CLASS_NAME_CHARS
            and value.isprintable() and value == value.strip())


def check_outputs(outputs: Sequence[Any], heads: Mapping[str, Sequence[str]], batch: int
                  ) -> list[np.ndarray]:
    """Check one batch of per-head probabilities before anything is published or scored.

    Args:
        outputs: one array per head, in the order of `heads`, each `(batch, C_h)`.
        heads: head -> class names (C_h of them).
        batch: samples in the batch.

    Returns:
        The outputs as float32 arrays `(batch, C_h)`.

    Raises:
        OutputError: a missing head, a shape other than declared, a NaN or inf, a value
            outside [0, 1], or a row that does not sum to 1 within `SUM_TOLERANCE`; the text
            names the head and how many samples fail.
    """
    if len(outputs) != len(heads):
        raise OutputError(f'the model gave {len(outputs)} outputs for {len(heads)} heads')
    checked = []
    for (head, classes), output in zip(heads.items(), outputs):
        array = np.asarray(output, dtype=np.float32)
        if array.shape != (batch, len(classes)):
            raise OutputError(f'head {head}: output of shape {array.shape}, expected '
                              f'({batch}, {len(classes)})')
        # Three reductions on the normal path; NaN propagates into min and max.
        low, high = float(array.min()), float(array.max())
        sums = array.sum(axis=1, dtype=np.float64)
        if not (0.0 <= low and high <= 1.0 and (np.abs(sums - 1.0) <= SUM_TOLERANCE).all()):
            _raise_for(head, array, sums, batch)
        checked.append(array)
    return checked


def _raise_for(head: str, array: np.ndarray, sums: np.ndarray, batch: int) -> None:
    """Say what is wrong with a head's output (called once a check failed)."""
    finite = np.isfinite(array).all(axis=1)
    if not finite.all():
        raise OutputError(f'the model gave non-finite probabilities for head {head} in '
                          f'{int((~finite).sum())} of {batch} sample(s)')
    good = (array >= 0).all(axis=1) & (array <= 1).all(axis=1) & (
        np.abs(sums - 1.0) <= SUM_TOLERANCE)
    row = int(np.argmin(good))
    raise OutputError(
        f'head {head}: not probabilities in {int((~good).sum())} of {batch} sample(s) (values '
        f'in [{_fmt(array[row].min())}, {_fmt(array[row].max())}], sum {_fmt(sums[row])}; '
        'expected [0, 1] summing to 1)')


def _fmt(value: float) -> str:
    return f'{value:.3g}' if math.isfinite(value) else str(value)
