"""``convitac_topic``: list topics, echo messages and read /diagnostics without a ROS distribution.

The pip-only install has rclpy and the message packages but no ``ros2`` command line. This is
the part of ``ros2 topic`` that a user needs to feed and watch the node::

    convitac_topic list                          # every topic on the graph, with its type
    convitac_topic echo convitac/result -n 3     # three messages, then exit
    convitac_topic diagnostics                   # the node's /diagnostics status, once

It uses the caller's ROS environment (``ROS_DOMAIN_ID``, discovery range) as it is. A relative
topic name is taken from the root namespace, as ``ros2 topic echo`` does.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
import importlib
import sys
import time
from typing import Any

from convitac_ros.ros.stamps import NANOSECONDS_PER_SECOND, time_to_ns

DISCOVERY_S = 3.0
_NODE = 'convitac_topic'


def message_class(type_name: str) -> type:
    """Returns the class of ``pkg/msg/Name`` (as the graph names types).

    Raises:
        ValueError: The name is not of that form, or the package is not installed.
    """
    package, kind, name = (type_name.split('/') + ['', '', ''])[:3]
    if not (package and kind == 'msg' and name):
        raise ValueError(f'not a message type: {type_name!r}')
    try:
        return getattr(importlib.import_module(f'{package}.msg'), name)
    except (ImportError, AttributeError) as error:
        raise ValueError(f'message type {type_name} is not installed here') from error


def format_message(msg: Any) -> str:
    """One readable block per message: data fields as values, images as their size only."""
    kind = type(msg).__name__
    if kind == 'DiagnosticArray':
        return '\n'.join(format_status(status) for status in msg.status) or '(no status)'
    if kind in ('String', 'Bool', 'Float32', 'Float64', 'Int32', 'Int64'):
        return str(msg.data)
    if kind == 'Float32MultiArray':
        return '[' + ', '.join(f'{value:.4f}' for value in msg.data) + ']'
    if kind in ('Image', 'CompressedImage'):
        stamp = time_to_ns(msg.header.stamp) / NANOSECONDS_PER_SECOND
        size = (f'{msg.width}x{msg.height} {msg.encoding}' if kind == 'Image'
                else f'{msg.format}, {len(msg.data)} bytes')
        return f'{kind} {size}, stamp {stamp:.6f}'
    fields = getattr(msg, 'get_fields_and_field_types', dict)()
    return ', '.join(f'{name}={getattr(msg, name)!r}' for name in fields) or repr(msg)


def format_status(status: Any) -> str:
    """A DiagnosticStatus as ``LEVEL name: message`` and its key/value lines."""
    raw = status.level
    number = raw[0] if isinstance(raw, (bytes, bytearray)) else int(raw)
    level = {0: 'OK', 1: 'WARN', 2: 'ERROR', 3: 'STALE'}.get(number, str(number))
    lines = [f'{level} {status.name}: {status.message}']
    lines += [f'    {value.key}: {value.value}' for value in status.values]
    return '\n'.join(lines)


def _absolute(topic: str) -> str:
    return topic if topic.startswith('/') else '/' + topic


def _graph(node: Any, wait_s: float) -> dict[str, list[str]]:
    deadline = time.monotonic() + wait_s
    topics: dict[str, list[str]] = {}
    while time.monotonic() < deadline:
        topics = dict(node.get_topic_names_and_types())
        time.sleep(0.1)
    return topics


def _list(node: Any, args: argparse.Namespace) -> int:
    for name, types in sorted(_graph(node, args.wait).items()):
        publishers = node.count_publishers(name)
        subscribers = node.count_subscribers(name)
        print(f'{name}  [{", ".join(types)}]  publishers {publishers}, '
              f'subscribers {subscribers}')
    return 0


def _echo(node: Any, rclpy: Any, topic: str, count: int, timeout: float,
          wait: float) -> int:
    from rclpy.qos import qos_profile_sensor_data

    topic = _absolute(topic)
    deadline = time.monotonic() + max(wait, timeout)
    types: list[str] = []
    while not types and time.monotonic() < deadline:
        types = dict(node.get_topic_names_and_types()).get(topic, [])
        if not types:
            time.sleep(0.1)
    if not types:
        print(f'convitac_topic: error: no publisher of {topic} found within {wait:g} s '
              '(same ROS_DOMAIN_ID and discovery range as the node?)', file=sys.stderr)
        return 1
    cls = message_class(types[0])
    received: list[Any] = []
    # Best effort matches both reliable and best-effort publishers.
    node.create_subscription(cls, topic, received.append, qos_profile_sensor_data)
    shown = 0
    end = time.monotonic() + timeout if timeout > 0 else float('inf')
    while (count <= 0 or shown < count) and time.monotonic() < end:
        rclpy.spin_once(node, timeout_sec=0.1)
        while received and (count <= 0 or shown < count):
            print(format_message(received.pop(0)))
            print('---', flush=True)
            shown += 1
    if count > 0 and shown < count:
        print(f'convitac_topic: error: {shown} of {count} message(s) on {topic} within '
              f'{timeout:g} s', file=sys.stderr)
        return 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The command line: ``list``, ``echo TOPIC``, ``diagnostics``."""
    parser = argparse.ArgumentParser(prog='convitac_topic', description=__doc__.split('\n\n')[0])
    commands = parser.add_subparsers(dest='command', required=True)
    listing = commands.add_parser('list', help='every topic on the graph, with its type')
    listing.add_argument('--wait', type=float, default=DISCOVERY_S,
                         help='seconds of discovery before listing (default %(default)s)')
    echo = commands.add_parser('echo', help='print the messages of a topic')
    echo.add_argument('topic', help='e.g. convitac/result, /left_hand/convitac/contact')
    for sub, default_count in ((echo, 0), (commands.add_parser(
            'diagnostics', help='print the /diagnostics statuses'), 1)):
        sub.add_argument('-n', '--count', type=int, default=default_count,
                         help='exit after this many messages; 0: until Ctrl-C or --timeout '
                              '(default %(default)s)')
        sub.add_argument('--timeout', type=float, default=0.0 if default_count == 0 else 10.0,
                         help='give up after this many seconds; 0: never (default %(default)s)')
        sub.add_argument('--wait', type=float, default=10.0,
                         help='seconds to wait for a publisher (default %(default)s)')
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``convitac_topic``; returns the exit code."""
    args = build_parser().parse_args(argv)
    import rclpy
    from rclpy.executors import ExternalShutdownException

    rclpy.init()
    node = rclpy.create_node(_NODE, start_parameter_services=False)
    try:
        if args.command == 'list':
            return _list(node, args)
        topic = '/diagnostics' if args.command == 'diagnostics' else args.topic
        return _echo(node, rclpy, topic, args.count, args.timeout, args.wait)
    except ValueError as error:
        print(f'convitac_topic: error: {error}', file=sys.stderr)
        return 1
    except (KeyboardInterrupt, ExternalShutdownException):
        return 0
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == '__main__':
    sys.exit(main())
