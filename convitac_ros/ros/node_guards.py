"""Guards that keep requests, signals and command lines from killing the node.

- :func:`guard_change_state`: a lifecycle request that is not valid in the current state (by
  id or label) is refused with ``success: false`` and a logged reason; rclpy's own service
  lets ``RCLError`` escape and ends the process.
- :func:`init_ros` and :func:`install_stop_signals`: malformed ``--ros-args`` give one line,
  and SIGINT / SIGTERM become ``KeyboardInterrupt`` in the main thread, so they stop the node
  promptly (also during a long warm-up) and the shutdown runs in order: inputs, inference
  thread, node, context. rclpy's own handlers would shut the context down underneath the
  inference thread.
- :func:`one_line`: error text bounded in length and kept on one line for logs and
  /diagnostics (an image encoding or a file name can be arbitrarily long).
"""

from __future__ import annotations

import re
import signal
from typing import Any

import rclpy
from rclpy.impl.implementation_singleton import rclpy_implementation
from rclpy.signals import SignalHandlerOptions

# rcl appends the C source location of every error (", at /project/src/...c:271").
_SOURCE_LOCATION = re.compile(r',? at [^,]*\.c:\d+')
MAX_REASON_CHARS = 200
RCLError = rclpy_implementation.RCLError


def one_line(text: str, limit: int = MAX_REASON_CHARS) -> str:
    """``text`` on one line, cut to at most ``limit`` characters (``...`` marks a cut)."""
    flat = ' '.join(str(text).split())
    return flat if len(flat) <= limit else flat[:limit - 3] + '...'


def rcl_reason(error: Exception) -> str:
    """The user-facing part of an ``RCLError``: no C source locations, one bounded line."""
    text = _SOURCE_LOCATION.sub('', str(error))
    return one_line(text.removeprefix('failed to initialize rcl: '))


def init_ros(args: list[str] | None) -> str | None:
    """``rclpy.init`` without rclpy's signal handlers; return why it failed, or None.

    Malformed ``--ros-args`` (a missing or invalid parameter file, a trailing ``-p``) make
    rcl refuse the command line; the reason comes back as one line.
    """
    try:
        rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    except RCLError as error:
        return rcl_reason(error)
    return None


def install_stop_signals() -> None:
    """Make SIGINT and SIGTERM raise ``KeyboardInterrupt`` in the main thread."""
    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, signal.default_int_handler)


def ignore_stop_signals() -> None:
    """Ignore SIGINT and SIGTERM from now on (the node is already stopping)."""
    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, signal.SIG_IGN)


def guard_change_state(node: Any) -> None:
    """Refuse lifecycle requests that are invalid in the node's current state.

    Wraps the callback of the node's ``change_state`` service (rclpy creates it in
    ``LifecycleNode.__init__`` and keeps it as ``_service_change_state``). A transition is
    allowed when the state machine lists it among the available transitions, by id or label.
    """
    service = node._service_change_state
    handle_request = service.callback

    def change_state(request: Any, response: Any) -> Any:
        transition = request.transition
        available = node._state_machine.available_transitions  # (id, label, from..., to...)
        state = node._state_machine.current_state[1]
        wanted = transition.label or transition.id
        if not any(wanted in (item[0], item[1]) for item in available):
            choices = ', '.join(f'{item[1]} ({item[0]})' for item in available)
            node.get_logger().warning(one_line(
                f'refused lifecycle transition {wanted!r} in state {state!r}; valid here: '
                f'{choices or "none"}'))
            response.success = False
            return response
        return handle_request(request, response)

    service.callback = change_state
