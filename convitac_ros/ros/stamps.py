"""Header stamps as integer nanoseconds: the one conversion in both directions.

Every stamp the package compares, stores or publishes is an ``int`` of nanoseconds; these
functions are the only place where a ``builtin_interfaces/Time`` (``sec``, ``nanosec``) is read
or written. Messages are duck-typed (anything with ``header.stamp``), so the synchronizer and the
bag tools are tested without a ROS graph.
"""

from __future__ import annotations

from typing import Any

NANOSECONDS_PER_SECOND = 1_000_000_000


def time_to_ns(stamp: Any) -> int:
    """Returns a ``builtin_interfaces/Time`` (or a ``{'sec', 'nanosec'}`` mapping) in ns."""
    if isinstance(stamp, dict):
        return int(stamp['sec']) * NANOSECONDS_PER_SECOND + int(stamp['nanosec'])
    return int(stamp.sec) * NANOSECONDS_PER_SECOND + int(stamp.nanosec)


def stamp_to_ns(msg: Any) -> int | None:
    """Returns ``msg.header.stamp`` in integer nanoseconds, or None when it has no stamp.

    Args:
        msg: Any object with ``header.stamp.sec`` and ``header.stamp.nanosec`` attributes.
    """
    stamp = getattr(getattr(msg, 'header', None), 'stamp', None)
    if stamp is None:
        return None
    try:
        return time_to_ns(stamp)
    except (AttributeError, TypeError, ValueError):
        return None


def write_time(stamp: Any, time_ns: int) -> Any:
    """Writes integer nanoseconds into a ``builtin_interfaces/Time`` in place; returns it."""
    stamp.sec, stamp.nanosec = divmod(int(time_ns), NANOSECONDS_PER_SECOND)
    return stamp


def set_stamp(msg: Any, stamp_ns: int) -> Any:
    """Sets a message's ``header.stamp`` from nanoseconds; returns the message."""
    write_time(msg.header.stamp, stamp_ns)
    return msg


def ns_to_time(time_ns: int) -> Any:
    """A new ``builtin_interfaces/Time`` for integer nanoseconds."""
    from builtin_interfaces.msg import Time

    return write_time(Time(), time_ns)
