"""The transport floor of the node benchmark: a node that answers each pair without a model.

``python -m benchmarks.echo --inputs N --reliable`` subscribes to the node's
input topics with the node's QoS and input path (a thread of its own taking the images, as
``direct_input: true``; ``--executor``: subscription callbacks on a single-threaded executor)
and, once every input of a stamp has arrived, publishes ``convitac/result`` (JSON with
``stamp_ns``)
under the node's name. Its end-to-end latency is what DDS and rclpy cost on this machine before
any conversion or model work: the floor under the node's latency. It also publishes a minimal
/diagnostics status so that the benchmark client sees it as ready, exactly as it sees the node.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import String

from convitac_ros.ros import direct_take
from convitac_ros.ros.stamps import stamp_to_ns
from convitac_ros.ros.topics import image_qos, INPUT_TOPICS, NODE_NAME, OUTPUT_NAMESPACE

KEEP_STAMPS = 100  # stamps waiting for their partners (a lost message never completes one)


class EchoNode:
    """Pairs messages by exact stamp and answers each complete pair on ``convitac/result``."""

    def __init__(self, inputs: int, reliable: bool, executor_input: bool = False,
                 compressed: bool = False) -> None:
        """Create the node, its subscriptions and its publishers (and the input thread)."""
        self.node = rclpy.create_node(NODE_NAME)
        self.input_thread = None
        self._inputs = inputs
        self._seen: dict[int, int] = {}
        qos = image_qos(5, reliable)
        self._result = self.node.create_publisher(String, f'{OUTPUT_NAMESPACE}/result', 10)
        msg_type = CompressedImage if compressed else Image
        topics = [topic + ('/compressed' if compressed else '') for topic in INPUT_TOPICS[:inputs]]
        if executor_input or not direct_take.available():
            for topic in topics:
                self.node.create_subscription(msg_type, topic, self._on_image, qos)
        else:
            group = direct_take.HiddenCallbackGroup()
            subscriptions = [direct_take.create_direct_subscription(
                self.node, msg_type, topic, qos, group) for topic in topics]
            self.input_thread = direct_take.start_reader(
                self.node.context, subscriptions, lambda _, msg, __: self._on_image(msg),
                self._on_error, 'echo_input')
        self._diagnostics = self.node.create_publisher(DiagnosticArray, '/diagnostics', 10)
        self.node.create_timer(1.0, self._publish_diagnostics)

    def _on_image(self, msg: Any) -> None:
        stamp = stamp_to_ns(msg)
        count = self._seen.pop(stamp, 0) + 1
        if count < self._inputs:
            self._seen[stamp] = count
            if len(self._seen) > KEEP_STAMPS:
                del self._seen[next(iter(self._seen))]
            return
        self._result.publish(String(data=json.dumps({'stamp_ns': stamp})))

    def _on_error(self, exc: Exception) -> None:
        self.node.get_logger().error(f'input thread: {type(exc).__name__}: {exc}')

    def _publish_diagnostics(self) -> None:
        self._diagnostics.publish(DiagnosticArray(status=[DiagnosticStatus(
            name=f'/{NODE_NAME}: inference', message='echo',
            values=[KeyValue(key='model', value='none (echo)')])]))


def main(argv: list[str] | None = None) -> int:
    """Run the echo node until Ctrl-C."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--inputs', type=int, default=2, help='camera + tactile topics')
    parser.add_argument('--reliable', action='store_true', help='RELIABLE input QoS')
    parser.add_argument('--executor', action='store_true',
                        help='take the images in executor callbacks (direct_input: false)')
    parser.add_argument('--compressed', action='store_true',
                        help='sensor_msgs/CompressedImage on <topic>/compressed')
    args = parser.parse_args(argv)
    rclpy.init()
    echo = None
    try:
        echo = EchoNode(args.inputs, args.reliable, args.executor, args.compressed)
        executor = SingleThreadedExecutor()
        executor.add_node(echo.node)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if echo is not None:
            if echo.input_thread is not None:
                echo.input_thread.stop()
            echo.node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == '__main__':
    sys.exit(main())
