"""The model's typed input spec and the one frame stager of both predictors and the export.

- :class:`InputSpec`: the checkpoint's ``preprocess`` record as one frozen object (image size,
  mean, std, sequence lengths, tactile sensors), read once wherever a model is loaded: the torch
  `Predictor`, the onnxruntime `OnnxPredictor` and `convitac_export`.
- :class:`FrameStager`: checks a batch of samples and lays its frames out in the staging order
  `(N, T_v + S*T_t)` (visual, then sensor-major tactile), either resized to the model's size on
  the host with the training preprocessing (`convitac_ros.preprocess.resize_frames`: OpenCV,
  INTER_AREA) or copied once at their received sizes, grouped by size, for a device that resizes
  them itself (`convitac_ros.device_preprocess`). Buffers are reused between calls; the caller
  chooses how they are allocated (pinned torch tensors for CUDA, plain numpy arrays otherwise).

No torch here: the onnxruntime backend runs without it.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
import dataclasses
from typing import Any

import numpy as np

from convitac_ros.preprocess import resize_frames, sample_frames, TactileFrames, VisualFrames

Sample = tuple[VisualFrames, TactileFrames]
# Per frame of a staged batch, its received (H, W): what a captured CUDA graph is specialised to.
SizeKey = tuple[tuple[int, int], ...]
MAX_HOST_BUFFERS = 8  # reused staging buffers kept (the least recently used one goes first)


@dataclasses.dataclass(frozen=True)
class InputSpec:
    """What a model takes: the checkpoint's `preprocess` record, typed.

    Attributes:
        image_size: S, the square side every frame is resized to (pixels).
        mean: per-channel RGB mean, in [0, 1] units.
        std: per-channel RGB std.
        visual_len: T_v, camera frames per sample.
        tactile_len: T_t, frames per tactile sensor per sample.
        num_tactile: S_t, tactile sensors.
        channel_order: always 'RGB'.
    """

    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    visual_len: int
    tactile_len: int
    num_tactile: int
    channel_order: str = 'RGB'

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> InputSpec:
        """Read a `preprocess` record (checkpoint or ONNX metadata; validated where loaded)."""
        return cls(image_size=int(record['image_size']),
                   mean=tuple(float(v) for v in record['mean']),
                   std=tuple(float(v) for v in record['std']),
                   visual_len=int(record['visual_len']), tactile_len=int(record['tactile_len']),
                   num_tactile=int(record['num_tactile']),
                   channel_order=str(record.get('channel_order', 'RGB')))

    def to_record(self) -> dict[str, Any]:
        """The JSON-ready `preprocess` record (as `checkpoint.default_preprocess` writes it)."""
        record = dataclasses.asdict(self)
        record.update(mean=list(self.mean), std=list(self.std))
        return record

    @property
    def frames_per_sample(self) -> int:
        """T_v + S_t * T_t: the frames of one sample in staging order."""
        return self.visual_len + self.num_tactile * self.tactile_len

    def staging_shape(self, batch: int) -> tuple[int, int, int, int, int]:
        """`(N, T_v + S_t*T_t, S, S, 3)`: the uint8 layout of resized frames (the ONNX input)."""
        return (batch, self.frames_per_sample, self.image_size, self.image_size, 3)

    def random_frames(self, batch: int, seed: int = 0) -> np.ndarray:
        """Seeded random uint8 frames of :meth:`staging_shape` (export checks, benchmarks)."""
        return np.random.default_rng(seed).integers(0, 256, self.staging_shape(batch),
                                                    dtype=np.uint8)


def _numpy_buffer(shape: tuple[int, ...]) -> np.ndarray:
    return np.empty(shape, dtype=np.uint8)


@dataclasses.dataclass(frozen=True)
class SizeGroup:
    """Frames of one received size in a staged batch.

    Attributes:
        size: (H, W) of every frame of the group.
        positions: where each frame goes in the flat `N * (T_v + S_t*T_t)` staging order.
        buffer: the reused uint8 `(G, H, W, 3)` buffer holding them (the allocator's type:
            a numpy array, or a pinned torch tensor).
    """

    size: tuple[int, int]
    positions: tuple[int, ...]
    buffer: Any


class FrameStager:
    """Checks samples and stages their frames into reused uint8 buffers.

    Not thread-safe: each predictor calls it under its own lock.

    Args:
        spec: the model's input spec.
        allocate: makes a uint8 buffer of a shape; anything `np.asarray` views without a copy
            (default `np.empty`; the CUDA predictor passes pinned torch tensors).
    """

    def __init__(self, spec: InputSpec,
                 allocate: Callable[[tuple[int, ...]], Any] = _numpy_buffer) -> None:
        self.spec = spec
        self._allocate = allocate
        self._buffers: OrderedDict[tuple[int, ...], Any] = OrderedDict()

    def frames(self, samples: Sequence[Sample]) -> list[np.ndarray]:
        """Check every sample and list its frames in staging order (sample-major).

        Raises:
            ValueError: wrong number of frames or sensors, or a frame that is not uint8 RGB
                (`convitac_ros.preprocess.sample_frames`; the sample's index is named).
        """
        spec = self.spec
        frames: list[np.ndarray] = []
        for index, (visual, tactile) in enumerate(samples):
            frames.extend(sample_frames(visual, tactile, spec.visual_len, spec.tactile_len,
                                        spec.num_tactile, index))
        return frames

    def resized(self, samples: Sequence[Sample]) -> Any:
        """Stage a batch resized on the host: the buffer `(N, T_v + S_t*T_t, S, S, 3)` uint8.

        The training preprocessing itself (OpenCV, INTER_AREA when shrinking) writes straight
        into the reused buffer.
        """
        frames = self.frames(samples)
        buffer = self._buffer(self.spec.staging_shape(len(samples)))
        size = self.spec.image_size
        resize_frames(frames, size, out=np.asarray(buffer).reshape(-1, size, size, 3))
        return buffer

    def received(self, samples: Sequence[Sample]) -> tuple[SizeKey, list[SizeGroup]]:
        """Stage a batch at its received sizes, for a device that resizes the frames itself.

        Each frame is copied once, into a reused buffer of its size group (frames of equal
        size share one buffer, so a group goes to the device in one copy).

        Returns:
            The batch's size key (every frame's (H, W) in staging order) and its size groups
            in order of first appearance.
        """
        frames = self.frames(samples)
        key: SizeKey = tuple((f.shape[0], f.shape[1]) for f in frames)
        positions: dict[tuple[int, int], list[int]] = {}
        for position, size in enumerate(key):
            positions.setdefault(size, []).append(position)
        groups = []
        for size, where in positions.items():
            buffer = self._buffer((len(where), *size, 3))
            array = np.asarray(buffer)
            for row, position in enumerate(where):
                array[row] = frames[position]
            groups.append(SizeGroup(size=size, positions=tuple(where), buffer=buffer))
        return key, groups

    def _buffer(self, shape: tuple[int, ...]) -> Any:
        buffer = self._buffers.pop(shape, None)
        if buffer is None:
            buffer = self._allocate(shape)
            while len(self._buffers) >= MAX_HOST_BUFFERS:
                self._buffers.popitem(last=False)
        self._buffers[shape] = buffer
        return buffer
