"""Taking messages without the executor: one thread waiting on a few subscriptions only.

An rclpy executor rebuilds its wait set in Python from every entity of its nodes each time it
wakes up. For the lifecycle node (lifecycle and parameter services, a timer, a dozen
publishers with their QoS-event handlers) that costs more than taking the message itself, and
the thread that did it keeps the GIL meanwhile. Measured on a 2-core machine with 64 px frames
at 30 pairs/s, the node answered about 0.9 ms sooner with its images taken as here
(``docs/benchmarks``, table "Input path").

- :class:`HiddenCallbackGroup`: subscriptions created with it (and their QoS-event handlers)
  are never waited on or taken by an executor.
- :class:`DirectReader`: waits on a wait set holding just those subscriptions plus a guard
  condition (so that :meth:`DirectReader.close` wakes it at once) and takes every waiting
  message, with its message info (publication sequence number, timestamps).
- :class:`ReaderThread` / :func:`start_reader`: a thread taking from a reader;
  :func:`subscribe`: one subscription whose callback runs on such a thread (on the executor
  where this rclpy has no wait set).

The wait set and take calls are the ones ``rclpy.wait_for_message`` uses, the same in Humble,
Jazzy and Kilted; :func:`available` says whether this rclpy has them.
"""

from __future__ import annotations

from collections.abc import Sequence
import threading
from typing import Any

from rclpy.callback_groups import CallbackGroup
from rclpy.guard_condition import GuardCondition

try:
    from rclpy.impl.implementation_singleton import rclpy_implementation as _rclpy

    _WaitSet = _rclpy.WaitSet
except (ImportError, AttributeError):  # an rclpy without the pybind11 wait set
    _WaitSet = None

MAX_TAKE = 100  # messages taken from one subscription per wake-up (bounds one pass)


def available() -> bool:
    """Whether this rclpy offers the wait set that :class:`DirectReader` needs."""
    return _WaitSet is not None


class HiddenCallbackGroup(CallbackGroup):
    """A callback group whose entities no executor ever runs: a :class:`DirectReader` does."""

    def can_execute(self, entity: Any) -> bool:
        """Never: the executor skips the entity when it builds its wait set."""
        return False

    def beginning_execution(self, entity: Any) -> bool:
        """Never starts (not reached, since :meth:`can_execute` is False)."""
        return False

    def ending_execution(self, entity: Any) -> None:
        """Nothing to undo."""


def create_direct_subscription(node: Any, msg_type: Any, topic: str, qos: Any,
                               group: HiddenCallbackGroup) -> Any:
    """Create a subscription on ``node`` that only a :class:`DirectReader` takes from.

    It belongs to the node like any other (``ros2 node info``, remapping, QoS overrides), but
    its callback is never called. Its QoS-event handlers are hidden with it (moved to an
    executor's group, they kept that executor spinning here): rclpy's incompatible-QoS warning
    does not appear for it, so the node reports publishers it cannot match in /diagnostics.
    """
    return node.create_subscription(msg_type, topic, _never_called, qos, callback_group=group)


def _never_called(msg: Any) -> None:  # pragma: no cover - a hidden subscription never runs
    raise AssertionError('a direct subscription was run by an executor')


class DirectReader:
    """Waits on ``subscriptions`` alone and takes what they hold.

    One thread calls :meth:`take`; any thread may call :meth:`close`. The subscriptions must
    outlive the reader: destroy them only after the taking thread has returned.
    """

    def __init__(self, context: Any, subscriptions: Sequence[Any]) -> None:
        """Prepare the wait set (``context``: the rclpy context of the subscriptions)."""
        if _WaitSet is None:
            raise RuntimeError('this rclpy has no wait set for direct taking')
        self._subscriptions = list(subscriptions)
        self._guard = GuardCondition(None, None, context=context)
        self._wait_set = _WaitSet(len(self._subscriptions), 1, 0, 0, 0, 0, context.handle)
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._destroyed = False

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed.is_set()

    def close(self) -> None:
        """Make the current and every later :meth:`take` return None at once (idempotent)."""
        with self._lock:
            if self._closed.is_set():
                return
            self._closed.set()
            self._guard.trigger()

    def take(self, timeout_s: float | None = None) -> list[tuple[int, Any, dict]] | None:
        """Wait until a message is waiting, then take every waiting message.

        Args:
            timeout_s: the longest wait; None waits until a message comes or :meth:`close`.

        Returns:
            ``(subscription index, message, message info)`` tuples, each subscription's in
            arrival order (empty after a timeout), or None once closed.
        """
        if self._closed.is_set():
            return None
        wait_set = self._wait_set
        wait_set.clear_entities()
        for subscription in self._subscriptions:
            wait_set.add_subscription(subscription.handle)
        wait_set.add_guard_condition(self._guard.handle)
        wait_set.wait(-1 if timeout_s is None else max(int(timeout_s * 1e9), 0))
        if self._closed.is_set():
            return None
        ready = set(wait_set.get_ready_entities('subscription'))
        taken = []
        for index, subscription in enumerate(self._subscriptions):
            handle = subscription.handle
            if handle.pointer not in ready:
                continue
            for _ in range(MAX_TAKE):
                result = handle.take_message(subscription.msg_type, subscription.raw)
                if result is None:
                    break
                taken.append((index, result[0], result[1]))
        return taken

    def destroy(self) -> None:
        """Close, then release the guard condition (after the taking thread has returned)."""
        self.close()
        with self._lock:
            if not self._destroyed:
                self._destroyed = True
                self._guard.destroy()


class ReaderThread(threading.Thread):
    """Takes from a :class:`DirectReader` until it is closed, handing each message on.

    ``handle(index, message, info)`` runs on this thread; an exception in it is passed to
    ``on_error`` (which must not raise) and the thread goes on: one bad message never stops
    the input.
    """

    def __init__(self, reader: DirectReader, handle: Any, on_error: Any,
                 name: str = 'direct_take') -> None:
        """Bind the reader and the two callbacks; :meth:`start` starts taking."""
        super().__init__(name=name, daemon=True)
        self.reader = reader
        self._handle = handle
        self._on_error = on_error

    def run(self) -> None:
        """Take and hand on until the reader is closed (or its context is shut down)."""
        while True:
            try:
                taken = self.reader.take()
            except Exception as exc:  # noqa: BLE001 - e.g. the context was shut down
                if not self.reader.closed:
                    self._on_error(exc)
                return
            if taken is None:
                return
            for index, message, info in taken:
                try:
                    self._handle(index, message, info)
                except Exception as exc:  # noqa: BLE001 - reported, never fatal
                    self._on_error(exc)

    def stop(self, timeout_s: float = 5.0) -> None:
        """Close the reader, wait for the thread, release the reader."""
        self.reader.close()
        if self.is_alive() and threading.current_thread() is not self:
            self.join(timeout_s)
        if not self.is_alive():
            self.reader.destroy()


def start_reader(context: Any, subscriptions: Sequence[Any], handle: Any, on_error: Any,
                 name: str) -> ReaderThread:
    """Start a :class:`ReaderThread` on a new :class:`DirectReader` of ``subscriptions``."""
    thread = ReaderThread(DirectReader(context, subscriptions), handle, on_error, name=name)
    thread.start()
    return thread


def subscribe(node: Any, msg_type: Any, topic: str, qos: Any, callback: Any, on_error: Any,
              name: str) -> tuple[Any, ReaderThread | None]:
    """A subscription whose ``callback(msg)`` runs on a thread of its own, taking directly.

    Where this rclpy has no wait set, an ordinary subscription served by the node's executor.

    Returns:
        The subscription and its thread (None in the fallback); stop the thread before the
        node is destroyed.
    """
    if not available():
        return node.create_subscription(msg_type, topic, callback, qos), None
    subscription = create_direct_subscription(node, msg_type, topic, qos, HiddenCallbackGroup())
    return subscription, start_reader(node.context, [subscription],
                                      lambda _, msg, __: callback(msg), on_error, name)
