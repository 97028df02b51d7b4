"""Approximate-time pairing of several message streams, with message_filters semantics.

This module does not import rclpy: messages are duck-typed (anything with
``header.stamp.sec`` and ``header.stamp.nanosec``), so it is unit-tested without a ROS graph.

The algorithm is the one of ``message_filters.ApproximateTimeSynchronizer`` (Python), see
``reference/ros.md``:

1. ``queue[k][t] = m``; a second message with the same stamp overwrites the first; while the
   queue holds more than ``queue_size`` stamps the smallest is deleted.
2. For every other input the stamps ``s`` with ``|s - t| <= slop`` are candidates (sorted by
   distance, ties in insertion order); an input without candidates ends the attempt.
3. The Cartesian product of the candidate lists (first other input varies slowest) is walked
   and the first combination whose spread ``max - min < slop`` (strict) is emitted and removed.

Two deliberate differences from upstream: the callback is invoked *after* the internal lock is
released (it should only enqueue the set anyway), and an optional ``purge_older`` mode deletes,
after each emitted set, every queued message older than the oldest stamp of that set. Upstream
keeps such messages until they overflow, so a late partner can still pair with them; with
``purge_older`` a stream that stalls cannot make the other queues hold stale frames.
"""

from __future__ import annotations

from collections.abc import Callable
import itertools
import threading
import time
from typing import Any

from convitac_ros.ros.stamps import NANOSECONDS_PER_SECOND, stamp_to_ns


class ApproximateTimeSynchronizer:
    """Pairs messages from ``num_inputs`` streams whose stamps lie within ``slop`` seconds.

    Thread-safe: :meth:`add` may be called from several executor threads at once.
    """

    def __init__(
        self,
        num_inputs: int,
        queue_size: int,
        slop: float,
        callback: Callable[..., None],
        *,
        allow_headerless: bool = False,
        purge_older: bool = False,
        clock_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        """Create the synchronizer.

        Args:
            num_inputs: Number of streams (at least 2).
            queue_size: Distinct stamps kept per stream (at least 1).
            slop: Largest spread of a set in seconds; a set must be strictly narrower.
            callback: Called as ``callback(*msgs)`` with one message per stream, in stream
                order, outside the internal lock. It should only hand the set to a queue.
            allow_headerless: Stamp messages without ``header.stamp`` with ``clock_ns()``
                instead of dropping them.
            purge_older: After each emitted set, drop queued messages older than the set.
            clock_ns: Time source for headerless messages, in nanoseconds.

        Raises:
            ValueError: For fewer than 2 inputs, a queue size below 1 or a negative slop.
        """
        if num_inputs < 2:
            raise ValueError(f'num_inputs must be at least 2, got {num_inputs}')
        if queue_size < 1:
            raise ValueError(f'queue_size must be at least 1, got {queue_size}')
        if slop < 0:
            raise ValueError(f'slop must be non-negative, got {slop}')
        self._queues: list[dict[int, Any]] = [{} for _ in range(num_inputs)]
        self._queue_size = int(queue_size)
        self._slop_ns = int(round(slop * NANOSECONDS_PER_SECOND))
        self._callback = callback
        self._allow_headerless = allow_headerless
        self._purge_older = purge_older
        self._clock_ns = clock_ns
        self._lock = threading.Lock()
        self.dropped_headerless = 0
        self.dropped_overflow = 0
        self.dropped_purged = 0
        self.emitted = 0

    @property
    def num_inputs(self) -> int:
        """Number of synchronized streams."""
        return len(self._queues)

    def queued(self) -> list[int]:
        """Return the number of stamps currently queued per stream."""
        with self._lock:
            return [len(q) for q in self._queues]

    def clear(self) -> None:
        """Forget every queued message (e.g. after time jumped backwards)."""
        with self._lock:
            for queue in self._queues:
                queue.clear()

    def add(self, msg: Any, index: int, stamp_ns: int | None = None) -> tuple[Any, ...] | None:
        """Offer a message of stream ``index``; emit a set to the callback if one forms.

        Args:
            msg: The message; its stamp is read from ``msg.header.stamp`` unless given.
            index: The stream it arrived on, ``0 <= index < num_inputs``.
            stamp_ns: Overrides the message stamp (integer nanoseconds), e.g. for a driver
                that leaves ``header.stamp`` at zero and is stamped on receipt instead.

        Returns:
            The emitted set (also passed to the callback), or None.
        """
        if not 0 <= index < len(self._queues):
            raise IndexError(f'input index {index} out of range 0..{len(self._queues) - 1}')
        stamp = stamp_to_ns(msg) if stamp_ns is None else int(stamp_ns)
        if stamp is None:
            if not self._allow_headerless:
                self.dropped_headerless += 1
                return None
            stamp = self._clock_ns()
        with self._lock:
            emitted = self._add_locked(msg, index, stamp)
        if emitted is not None:
            self._callback(*emitted)
        return emitted

    def _add_locked(self, msg: Any, index: int, stamp: int) -> tuple[Any, ...] | None:
        own = self._queues[index]
        own[stamp] = msg
        while len(own) > self._queue_size:
            del own[min(own)]
            self.dropped_overflow += 1
        candidates = self._candidates(index, stamp)
        if candidates is None:
            return None
        for combination in itertools.product(*candidates):
            stamps = list(combination)
            stamps.insert(index, stamp)
            if max(stamps) - min(stamps) >= self._slop_ns:
                continue
            if any(s not in q for q, s in zip(self._queues, stamps)):
                continue
            emitted = tuple(q.pop(s) for q, s in zip(self._queues, stamps))
            self.emitted += 1
            if self._purge_older:
                self._purge_before(min(stamps))
            return emitted
        return None

    def _candidates(self, index: int, stamp: int) -> list[list[int]] | None:
        """Per other stream, stamps within slop of ``stamp``, closest first (stable ties)."""
        candidates = []
        for k, queue in enumerate(self._queues):
            if k == index:
                continue
            near = [s for s in queue if abs(s - stamp) <= self._slop_ns]
            if not near:
                return None
            near.sort(key=lambda s: abs(s - stamp))
            candidates.append(near)
        return candidates

    def _purge_before(self, oldest: int) -> None:
        for queue in self._queues:
            for s in [s for s in queue if s < oldest]:
                del queue[s]
                self.dropped_purged += 1
