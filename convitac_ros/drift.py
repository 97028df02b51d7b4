"""Input drift: how far a node's frames are from the frames its checkpoint was trained on.

A checkpoint may carry a reference per input (``camera``, ``tactile``, ``tactile_b``), computed
at the end of training (``training/drift_reference.py``):

- image statistics of the frame (:func:`image_features`): its aspect ratio as received, and
  at the model's size per-channel mean and standard deviation, sharpness (log variance of the
  Laplacian), a 4x4 grid of per-channel means (where light and colour lie), the amplitude
  spectrum in bands (texture scale and direction) and gradient energy per orientation;
- E^c's contrasted embedding of the frame (what stage 1 aligned), when the model has E^c.

Each part keeps the per-feature mean and standard deviation over training frames. A frame's
distance in a group of features is the root mean square of its z-scores; each group has a
threshold calibrated on held-out training frames (``MARGIN`` x the ``QUANTILE`` of the median
distance of ``WINDOW`` random held-out frames, at least ``THRESHOLD_FLOOR``), and a frame's
score is its largest distance-to-threshold ratio over groups and parts: above 1 the input
looks unlike the training data (another sensor model, a wrong crop or rotation, a damaged gel,
a camera looking elsewhere). The node scores a sample of frame sets (about one a second) on a
thread of its own and reports the median of the last ``WINDOW`` scores.

No torch and no rclpy here: the embeddings are computed by whoever has the model.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
import math
import threading
import time
from typing import Any

import cv2
import numpy as np

from convitac_ros.preprocess import resize_frame

VERSION = 1
GRID = 4  # the grid of per-channel means: GRID x GRID cells
SPECTRUM = 6  # the grey image's amplitude spectrum, pooled into SPECTRUM x SPECTRUM bands
ORIENTATIONS = 4  # gradient energy in this many orientation bins (0, 45, 90, 135 degrees)
# Feature groups of image_features, in order: name -> length. A frame's image distance is the
# largest group distance, so that a change in a few features (a rotation moves the spectrum,
# a wrong crop the marker spacing) is not averaged away by the many that did not change.
GROUPS = {'aspect': 1, 'colour': 6, 'sharpness': 1, 'layout': GRID * GRID * 3,
          'spectrum': SPECTRUM ** 2, 'orientation': ORIENTATIONS}
FEATURES = sum(GROUPS.values())
STD_FLOOR = 1e-3  # features that never varied in training still get a finite z-score
ASPECT_FLOOR = 0.02  # log aspect ratio: a frame 2 % wider or narrower is one std away
THRESHOLD_FLOOR = 1.0  # a distance of one std is never drift, however alike the held-out frames
QUANTILE = 0.99  # of held-out distances
MARGIN = 1.5  # threshold = MARGIN x that quantile
WINDOW = 5  # the node reports the median of this many recent scores
CALIBRATION_DRAWS = 2000  # random windows of held-out frames the thresholds are set on
INPUT_NAMES = ('camera', 'tactile', 'tactile_b')


def image_features(frame: np.ndarray, image_size: int) -> np.ndarray:
    """Image statistics of one uint8 ``(H, W, 3)`` RGB frame as the node receives it.

    Args:
        frame: The frame at its own size (its aspect ratio is a feature).
        image_size: The model's side S; the other statistics are taken at ``(S, S)``.

    Returns:
        float64 ``(FEATURES,)``, the groups of :data:`GROUPS` in order: log(W / H) (a
        rotation by 90 degrees or a wrong crop changes it); channel means and stds
        (0-1); log Laplacian variance (sharpness); the ``GRID x GRID x 3`` cell means (0-1,
        row-major: where light and colour lie); the grey image's log amplitude spectrum
        pooled into ``SPECTRUM x SPECTRUM`` bands of vertical x horizontal frequency (texture
        scale and direction: gel markers, a rotation, a zoom); the share of gradient energy in
        ``ORIENTATIONS`` orientation bins (edge directions: a rotation swaps them).
    """
    aspect = math.log(frame.shape[1] / frame.shape[0])
    pixels = resize_frame(frame, image_size).astype(np.float32) / 255.0
    grey = cv2.cvtColor(pixels, cv2.COLOR_RGB2GRAY)
    sharpness = math.log(float(cv2.Laplacian(grey, cv2.CV_32F).var()) + 1e-6)
    grid = cv2.resize(pixels, (GRID, GRID), interpolation=cv2.INTER_AREA)
    amplitude = np.abs(np.fft.rfft2(grey - grey.mean()))  # (S, S // 2 + 1)
    half = amplitude[:amplitude.shape[1]]  # vertical frequencies 0..S/2 (the rest mirror them)
    bands = cv2.resize(np.log1p(half).astype(np.float32), (SPECTRUM, SPECTRUM),
                       interpolation=cv2.INTER_AREA)
    gx = cv2.Sobel(grey, cv2.CV_32F, 1, 0)
    gy = cv2.Sobel(grey, cv2.CV_32F, 0, 1)
    energy = gx ** 2 + gy ** 2
    angle = np.mod(np.arctan2(gy, gx), np.pi)  # edge directions, 0..pi
    bins = np.minimum((angle / np.pi * ORIENTATIONS + 0.5).astype(int) % ORIENTATIONS,
                      ORIENTATIONS - 1)
    orientation = np.bincount(bins.ravel(), weights=energy.ravel(), minlength=ORIENTATIONS)
    orientation = orientation / max(float(orientation.sum()), 1e-12)
    return np.concatenate([[aspect], pixels.mean(axis=(0, 1)), pixels.std(axis=(0, 1)),
                           [sharpness],
                           grid.reshape(-1), bands.reshape(-1), orientation]).astype(np.float64)


def rms_z(values: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """Root mean square z-score of each row: ``(N, F)`` or ``(F,)`` -> ``(N,)`` or scalar."""
    return np.sqrt(np.mean(((values - mean) / std) ** 2, axis=-1))


def group_distances(values: np.ndarray, mean: np.ndarray, std: np.ndarray,
                    groups: Sequence[int]) -> np.ndarray:
    """:func:`rms_z` of each group of consecutive features: ``(..., F)`` -> ``(..., G)``."""
    bounds = np.cumsum([0, *groups])
    return np.stack([rms_z(values[..., a:b], mean[a:b], std[a:b])
                     for a, b in zip(bounds[:-1], bounds[1:])], axis=-1)


@dataclass(frozen=True)
class Summary:
    """One part (image statistics or embedding) of one input: statistics and thresholds.

    Attributes:
        mean: ``(F,)`` per-feature mean over training frames.
        std: ``(F,)`` per-feature standard deviation (at least ``STD_FLOOR``).
        thresholds: ``(G,)`` per feature group: ``MARGIN`` x the ``QUANTILE`` of the median
            group distance of ``WINDOW`` held-out frames (what the node thresholds).
        groups: Lengths of the G feature groups (one group: the whole part).
    """

    mean: np.ndarray
    std: np.ndarray
    thresholds: tuple[float, ...]
    groups: tuple[int, ...]

    def ratio(self, values: np.ndarray) -> np.ndarray:
        """The largest group distance over its threshold: ``(..., F)`` -> ``(...)``."""
        distances = group_distances(values, self.mean, self.std, self.groups)
        return np.max(distances / np.asarray(self.thresholds), axis=-1)


def summarise(train: np.ndarray, held_out: np.ndarray, groups: Sequence[int] | None = None,
              std_floor: np.ndarray | float = STD_FLOOR, quantile: float = QUANTILE,
              margin: float = MARGIN) -> Summary:
    """Fit one part: statistics on ``train`` ``(N, F)``, thresholds on ``held_out`` ``(M, F)``.

    Thresholds are at least ``THRESHOLD_FLOOR``; stds at least ``std_floor`` (per feature).

    Raises:
        ValueError: Fewer than 2 training rows or no held-out row.
    """
    train, held_out = np.asarray(train, np.float64), np.asarray(held_out, np.float64)
    if len(train) < 2 or len(held_out) < 1:
        raise ValueError(f'drift reference: {len(train)} training and {len(held_out)} held-out '
                         'frames; need at least 2 and 1')
    groups = tuple(groups) if groups is not None else (train.shape[1],)
    mean, std = train.mean(axis=0), np.maximum(train.std(axis=0), std_floor)
    held = group_distances(held_out, mean, std, groups)  # (M, G)
    # The node thresholds the median of WINDOW sampled sets, so that statistic is calibrated:
    # medians of seeded random draws of WINDOW held-out frames.
    draws = np.random.default_rng(0).integers(0, len(held), size=(CALIBRATION_DRAWS, WINDOW))
    thresholds = margin * np.quantile(np.median(held[draws], axis=1), quantile, axis=0)
    return Summary(mean, std, tuple(float(max(t, THRESHOLD_FLOOR)) for t in thresholds),
                   groups)


@dataclass(frozen=True)
class InputReference:
    """The reference of one input: image statistics and, when available, embeddings."""

    image: Summary
    embedding: Summary | None = None

    def ratios(self, features: np.ndarray, embedding: np.ndarray | None) -> dict[str, float]:
        """Distance over threshold of one frame per part.

        ``image`` always; ``embedding`` when both the reference and the caller have it.
        """
        result = {'image': float(self.image.ratio(features))}
        if self.embedding is not None and embedding is not None:
            result['embedding'] = float(self.embedding.ratio(embedding))
        return result


def score(ratios: Mapping[str, float]) -> float:
    """An input's drift score: its largest part ratio (above 1: unlike the training frames)."""
    return max(ratios.values())


@dataclass(frozen=True)
class DriftReference:
    """Per-input references, stored in a checkpoint's ``drift`` metadata (JSON)."""

    inputs: dict[str, InputReference]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data (``from_dict`` reads it back)."""
        def part(summary: Summary | None) -> dict[str, Any] | None:
            if summary is None:
                return None
            return {'mean': [float(v) for v in summary.mean],
                    'std': [float(v) for v in summary.std],
                    'thresholds': list(summary.thresholds)}

        return {'version': VERSION, 'features': FEATURES,
                'inputs': {name: {'image': part(ref.image), 'embedding': part(ref.embedding)}
                           for name, ref in self.inputs.items()}}

    @classmethod
    def from_dict(cls, raw: Any, inputs: Sequence[str], embed_dim: int
                  ) -> DriftReference | None:
        """Validate and read ``drift`` metadata (a checkpoint is data: nothing else is read).

        Args:
            raw: The decoded JSON.
            inputs: The input names the model has (``camera``, ``tactile``, ...).
            embed_dim: The model's projection_dim (length of an embedding summary).

        Returns:
            The reference, or None for a reference of another version (drift unavailable).

        Raises:
            ValueError: Anything else that is not a well-formed reference for this model.
        """
        if not isinstance(raw, dict) or not isinstance(raw.get('version'), int):
            raise ValueError('drift: expected a mapping with an integer version')
        if raw['version'] != VERSION:
            return None
        if raw.get('features') != FEATURES:
            raise ValueError(f'drift: features must be {FEATURES}, got {raw.get("features")!r}')
        table = raw.get('inputs')
        if not isinstance(table, dict) or sorted(table) != sorted(inputs):
            raise ValueError(f'drift: inputs must be {list(inputs)}, got '
                             f'{list(table) if isinstance(table, dict) else table!r}')
        result = {}
        for name in inputs:
            entry = table[name]
            if not isinstance(entry, dict) or set(entry) != {'image', 'embedding'}:
                raise ValueError(f'drift: input {name} needs exactly "image" and "embedding"')
            image = _summary(entry['image'], FEATURES, f'{name}.image', IMAGE_GROUPS)
            embedding = None if entry['embedding'] is None else _summary(
                entry['embedding'], embed_dim, f'{name}.embedding')
            result[name] = InputReference(image, embedding)
        return cls(result)


IMAGE_GROUPS = tuple(GROUPS.values())
IMAGE_STD_FLOOR = np.array([ASPECT_FLOOR] + [STD_FLOOR] * (FEATURES - 1))


def _summary(raw: Any, size: int, where: str, groups: tuple[int, ...] | None = None
             ) -> Summary:
    groups = groups or (size,)
    if not isinstance(raw, dict) or set(raw) != {'mean', 'std', 'thresholds'}:
        raise ValueError(f'drift: {where} needs exactly mean, std and thresholds')
    arrays = []
    for key, length in (('mean', size), ('std', size), ('thresholds', len(groups))):
        values = raw[key]
        if not (isinstance(values, list) and len(values) == length and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                for v in values)):
            raise ValueError(f'drift: {where}.{key} must be {length} finite numbers')
        arrays.append(np.asarray(values, np.float64))
    if not ((arrays[1] > 0).all() and (arrays[2] > 0).all()):
        raise ValueError(f'drift: {where}.std and thresholds must be positive')
    return Summary(arrays[0], arrays[1], tuple(float(t) for t in arrays[2]), groups)


def input_names(num_tactile: int) -> tuple[str, ...]:
    """The node's input names for a model with ``num_tactile`` sensors (camera first)."""
    return INPUT_NAMES[:1 + num_tactile]


# embed(frames, modality) -> (N, D): E^c's contrasted embeddings (0 camera, 1 tactile).
Embedder = Callable[[Sequence[np.ndarray], int], np.ndarray]


def set_ratios(reference: DriftReference, frames: Sequence[np.ndarray], image_size: int,
               embed: Embedder | None) -> dict[str, dict[str, float]]:
    """Distance-to-threshold ratios of one set's newest frames (camera first), per input, part.

    Args:
        reference: The checkpoint's reference.
        frames: One uint8 ``(H, W, 3)`` frame per input as received, in :func:`input_names`
            order.
        image_size: The model's side S.
        embed: ``embed(frames, modality) -> (N, D)`` contrasted embeddings (modality 0 camera,
            1 tactile), or None (image statistics only).
    """
    embeddings: list[np.ndarray | None] = [None] * len(frames)
    if embed is not None:
        embeddings[0] = embed(frames[:1], 0)[0]
        if len(frames) > 1:
            embeddings[1:] = list(embed(frames[1:], 1))
    return {name: reference.inputs[name].ratios(image_features(frame, image_size), embedding)
            for name, frame, embedding in zip(reference.inputs, frames, embeddings)}


@dataclass(frozen=True)
class DriftState:
    """What the node reports for one input."""

    score: float  # median of the recent scores; > 1: WARN
    ratios: dict[str, float]  # of the last sampled set: distance / threshold per part
    samples: int  # sets scored since activation


class DriftMonitor:
    """Scores a sample of frame sets on its own thread (off the per-pair path).

    :meth:`offer` is called by the inference worker for every set; at most every ``period_s``
    seconds it keeps the set's frame source and wakes the thread, which converts the frames at
    their own size (off the per-pair path) and computes the scores.
    """

    def __init__(self, reference: DriftReference, image_size: int, embed: Embedder | None,
                 period_s: float = 1.0, window: int = WINDOW) -> None:
        self.reference, self._embed, self.period_s = reference, embed, period_s
        self.image_size = image_size
        self._scores = {name: deque(maxlen=window) for name in reference.inputs}
        self._last: dict[str, DriftState] = {}
        self._pending: Callable[[], Sequence[np.ndarray]] | None = None
        self._offered_at = -math.inf
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._closed = False
        self.last_error: str | None = None
        self._thread = threading.Thread(target=self._run, name='convitac_drift', daemon=True)
        self._thread.start()

    def offer(self, frames: Callable[[], Sequence[np.ndarray]]) -> None:
        """Hand over one set if a sample is due (a time check on the caller's thread).

        ``frames()`` returns the set's RGB frames, camera first, at their own size; it is
        called on the monitor's thread.
        """
        now = time.monotonic()
        if now - self._offered_at < self.period_s:
            return
        with self._lock:
            self._offered_at, self._pending = now, frames
            self._wake.notify()

    def snapshot(self) -> dict[str, DriftState]:
        """The current state per input (inputs not scored yet are absent)."""
        with self._lock:
            return dict(self._last)

    def close(self) -> None:
        """Stop the thread (idempotent)."""
        with self._lock:
            self._closed = True
            self._wake.notify()
        self._thread.join(timeout=5.0)

    def _run(self) -> None:
        while True:
            with self._lock:
                while self._pending is None and not self._closed:
                    self._wake.wait()
                if self._closed:
                    return
                frames, self._pending = self._pending, None
            try:
                ratios = set_ratios(self.reference, frames(), self.image_size, self._embed)
            except Exception as exc:  # noqa: BLE001 - reported, never fatal to the node
                self.last_error = f'{type(exc).__name__}: {exc}'
                continue
            with self._lock:
                for name, parts in ratios.items():
                    scores = self._scores[name]
                    scores.append(score(parts))
                    previous = self._last.get(name)
                    self._last[name] = DriftState(float(np.median(scores)), parts,
                                                  (previous.samples if previous else 0) + 1)
