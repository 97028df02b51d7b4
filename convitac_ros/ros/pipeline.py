"""The node's data path between the synchronizer and the model, free of rclpy.

- :class:`FrameSet`: one synchronized set of messages, converted to RGB once, on demand.
- :class:`SlidingWindow`: the last ``length`` sets in stamp order; each new set yields the
  window that ends with it (the model's visual and tactile sequences).
- :func:`window_inputs`: a window split into the model's visual and tactile sequences.
- :class:`DropOldestQueue`: the bounded hand-over to the inference thread.
- :class:`Counters` and :class:`LatencyWindow`: thread-safe statistics for diagnostics.
"""

from __future__ import annotations

import bisect
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
import enum
import threading
from typing import Any

import numpy as np

from convitac_ros.preprocess import resize_frame
from convitac_ros.ros.image_conversion import ImageConversionError


@dataclass
class FrameSet:
    """A synchronized set: ``msgs[0]`` is the camera, then the tactile sensors in order.

    Attributes:
        msgs: The messages as received.
        stamp_ns: The camera stamp in nanoseconds (after the zero-stamp policy).
        received_ns: ``time.perf_counter_ns()`` when the set was completed.
        convert: Turns one message into uint8 (H, W, 3) RGB (raises ImageConversionError):
            one function for every message, or one per input (each input has its own
            encoding, crop and rotation in the node).
    """

    msgs: tuple[Any, ...]
    stamp_ns: int
    received_ns: int
    convert: Callable[[Any], np.ndarray] | Sequence[Callable[[Any], np.ndarray]]
    _error: str | None = field(default=None, repr=False)
    _sized: tuple[int, list[np.ndarray]] | None = field(default=None, repr=False)

    def rgb(self) -> list[np.ndarray]:
        """The RGB frames at their own size, converted anew at each call (never kept).

        A set stays in ``2 * length`` windows; keeping full-resolution frames for that long
        held gigabytes for large images, so only :meth:`model_frames` is kept.

        Raises:
            ImageConversionError: With the input index in the text; the failure is cached so
                a bad set in several windows is converted only once.
        """
        if self._error is not None:
            raise ImageConversionError(self._error)
        frames = []
        converters = (self.convert if isinstance(self.convert, Sequence)
                      else [self.convert] * len(self.msgs))
        for index, (msg, convert) in enumerate(zip(self.msgs, converters)):
            try:
                frames.append(convert(msg))
            except ImageConversionError as exc:
                self._error = f'input {index}: {exc}'
                raise ImageConversionError(self._error) from None
        return frames

    def model_frames(self, image_size: int) -> list[np.ndarray]:
        """The RGB frames resized to the model's ``image_size``, converted once per set.

        A set appears in ``length`` consecutive windows; converting and resizing it once
        instead of in every window saves the work for all but the newest set, and only frames
        of the model's size are kept. The Predictor then finds frames of its own size, which
        its resize only copies, so the result is the same as predicting on :meth:`rgb`.

        Raises:
            ImageConversionError: As :meth:`rgb`.
        """
        if self._sized is None or self._sized[0] != image_size:
            self._sized = (image_size, [resize_frame(f, image_size) for f in self.rgb()])
        return self._sized[1]


def window_inputs(window: Sequence[FrameSet], visual_len: int, tactile_len: int,
                  image_size: int | None = None
                  ) -> tuple[list[np.ndarray], list[list[np.ndarray]]]:
    """Split a window of synchronized sets into the Predictor's inputs.

    Args:
        window: Sets oldest first, each camera first then the tactile sensors.
        visual_len: Camera frames the model takes (T_v).
        tactile_len: Frames per tactile sensor the model takes (T_t).
        image_size: When given, the frames come already resized to it (cached per set, see
            :meth:`FrameSet.model_frames`); otherwise at their own sizes.

    Returns:
        The last T_v camera frames and, per sensor, the last T_t frames, oldest first.

    Raises:
        ImageConversionError: When an image of the window does not convert.
    """
    frames = [frame_set.rgb() if image_size is None else frame_set.model_frames(image_size)
              for frame_set in window]
    visual = [f[0] for f in frames[len(frames) - visual_len:]]
    tactile = [[f[sensor] for f in frames[len(frames) - tactile_len:]]
               for sensor in range(1, len(frames[0]))]
    return visual, tactile


class Drop(str, enum.Enum):
    """Why a message, set or window was dropped (in /diagnostics: ``dropped <value>``)."""

    WINDOW_FILLING = 'window_filling'
    OUT_OF_ORDER = 'out_of_order'
    QUEUE_FULL = 'queue_full'
    ZERO_STAMP = 'zero_stamp'
    IMAGE_TOO_LARGE = 'image_too_large'
    UNREADABLE_IMAGE_SIZE = 'unreadable_image_size'
    CONVERSION_ERROR = 'conversion_error'
    INFERENCE_ERROR = 'inference_error'
    OUTPUT_ERROR = 'output_error'  # the model's output failed the check: not probabilities
    PUBLISH_ERROR = 'publish_error'


class SlidingWindow:
    """The newest synchronized sets, ordered by stamp, yielding windows of ``length`` sets.

    The synchronizer may emit a set slightly out of order; it is inserted at its place, and
    ``2 * length`` sets are kept so that such a late set still finds its predecessors.
    """

    FILLING = Drop.WINDOW_FILLING
    OUT_OF_ORDER = Drop.OUT_OF_ORDER

    def __init__(self, length: int) -> None:
        """Create an empty window of ``length`` (>= 1) sets."""
        if length < 1:
            raise ValueError(f'window length must be at least 1, got {length}')
        self.length = length
        self._keep = 2 * length
        self._sets: list[FrameSet] = []
        self._stamps: list[int] = []

    def __len__(self) -> int:
        """Number of sets held."""
        return len(self._sets)

    def clear(self) -> None:
        """Forget every set (time went backwards, or the node was deactivated)."""
        self._sets.clear()
        self._stamps.clear()

    def push(self, frame_set: FrameSet) -> tuple[FrameSet, ...] | str:
        """Insert a set; return the window of ``length`` sets that ends with it, or why not.

        Returns:
            ``length`` sets oldest first with ``frame_set`` last; or :attr:`FILLING` while
            fewer than ``length - 1`` sets precede the newest set; or :attr:`OUT_OF_ORDER` for
            a late set without enough kept predecessors (older than every kept set: not kept).
        """
        stamp = frame_set.stamp_ns
        if len(self._sets) == self._keep and stamp <= self._stamps[0]:
            return self.OUT_OF_ORDER
        position = bisect.bisect_right(self._stamps, stamp)
        self._stamps.insert(position, stamp)
        self._sets.insert(position, frame_set)
        if len(self._sets) > self._keep:
            del self._sets[0], self._stamps[0]
            position -= 1
        if position + 1 < self.length:
            return self.FILLING if position == len(self._sets) - 1 else self.OUT_OF_ORDER
        return tuple(self._sets[position + 1 - self.length:position + 1])


class DropOldestQueue:
    """A bounded FIFO between threads: putting into a full queue drops the oldest item."""

    def __init__(self, capacity: int) -> None:
        """Create a queue holding at most ``capacity`` (>= 1) items."""
        self._items: deque[Any] = deque()
        self._capacity = 1
        self._closed = False
        self._cond = threading.Condition()
        self.set_capacity(capacity)

    def set_capacity(self, capacity: int) -> int:
        """Change the capacity; return how many of the oldest items were dropped to fit."""
        if capacity < 1:
            raise ValueError(f'capacity must be at least 1, got {capacity}')
        with self._cond:
            self._capacity = capacity
            dropped = 0
            while len(self._items) > capacity:
                self._items.popleft()
                dropped += 1
            return dropped

    def __len__(self) -> int:
        """Items waiting."""
        with self._cond:
            return len(self._items)

    def put(self, item: Any) -> bool:
        """Append ``item``; return True when the oldest waiting item had to be dropped."""
        with self._cond:
            dropped = len(self._items) >= self._capacity
            if dropped:
                self._items.popleft()
            self._items.append(item)
            self._cond.notify()
            return dropped

    def get(self, timeout: float | None = None) -> Any | None:
        """Take the oldest item, waiting up to ``timeout`` s; None when closed or timed out."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._items or self._closed, timeout):
                return None
            if self._closed:
                return None
            return self._items.popleft()

    def clear(self) -> int:
        """Drop every waiting item; return how many."""
        with self._cond:
            count = len(self._items)
            self._items.clear()
            return count

    def close(self) -> None:
        """Wake every waiter; later :meth:`get` calls return None at once."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def reopen(self) -> None:
        """Accept and hand out items again after :meth:`close`."""
        with self._cond:
            self._closed = False


class Counters:
    """Event counters shared by threads: named counts and drops by :class:`Drop` reason."""

    def __init__(self) -> None:
        """Start with every count at zero."""
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._drops: Counter[Drop] = Counter()

    def add(self, name: str, amount: int = 1) -> None:
        """Count ``amount`` events named ``name``."""
        if amount:
            with self._lock:
                self._counts[name] += amount

    def drop(self, reason: Drop, amount: int = 1) -> None:
        """Count ``amount`` drops for ``reason``."""
        if amount:
            with self._lock:
                self._drops[Drop(reason)] += amount

    def snapshot(self) -> dict[str, int]:
        """A copy of every named count."""
        with self._lock:
            return dict(self._counts)

    def drops(self) -> dict[str, int]:
        """A copy of the drop counts, by reason value."""
        with self._lock:
            return {reason.value: count for reason, count in self._drops.items()}

    def __getitem__(self, name: str | Drop) -> int:
        """The count of ``name``, or of a drop reason (0 when never counted)."""
        with self._lock:
            return self._drops[name] if isinstance(name, Drop) else self._counts[name]


class LatencyWindow:
    """The most recent ``size`` latency samples (ms) and their percentiles."""

    def __init__(self, size: int = 1000) -> None:
        """Keep at most ``size`` samples."""
        self._lock = threading.Lock()
        self._samples: deque[float] = deque(maxlen=size)

    def add(self, milliseconds: float) -> None:
        """Record one sample."""
        with self._lock:
            self._samples.append(milliseconds)

    def clear(self) -> None:
        """Forget every sample."""
        with self._lock:
            self._samples.clear()

    def percentiles(self, qs: Sequence[float] = (50, 95, 99)) -> dict[float, float] | None:
        """``{q: value}`` over the window, or None when it is empty."""
        with self._lock:
            if not self._samples:
                return None
            values = np.percentile(np.fromiter(self._samples, float), qs)
        return dict(zip(qs, (float(v) for v in values)))
