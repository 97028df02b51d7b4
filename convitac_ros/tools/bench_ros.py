"""The ROS side of the node benchmark: the node as a subprocess and a load-generating client.

The client publishes camera/tactile pairs with a shared stamp at a fixed rate and matches each
``~/result`` (whose JSON carries the input stamp) to the moment its pair was published. Results
are taken the way the node takes its images (:mod:`convitac_ros.ros.direct_take`: a thread
waiting on that subscription alone), so the instrument adds as little as it can to what it
measures. It also keeps the newest /diagnostics values of the node. Discovery stays on
loopback in a private domain (set here when the user did not choose one).
"""

from __future__ import annotations

from collections.abc import Callable
import dataclasses
import json
import os
from pathlib import Path
import signal
import subprocess
import sys
import threading
import time
from typing import Any

import numpy as np
import psutil

NODE_NAME = 'convitac_node'
INPUT_TOPICS = ('camera/image_raw', 'tactile/image_raw', 'tactile_b/image_raw')


def ensure_local_dds() -> dict[str, str]:
    """Keep DDS discovery on loopback and in a private domain, unless the user chose them.

    Returns:
        The discovery settings in effect (they are inherited by the node subprocess).
    """
    os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
    if os.environ.get('ROS_DISTRO') == 'humble':  # Humble predates the discovery range.
        os.environ.setdefault('ROS_LOCALHOST_ONLY', '1')
    # 102..201 stays clear of the pytest range (1..100) and inside the valid range on Linux.
    os.environ.setdefault('ROS_DOMAIN_ID', str(102 + os.getpid() % 100))
    keys = ('ROS_AUTOMATIC_DISCOVERY_RANGE', 'ROS_LOCALHOST_ONLY', 'ROS_DOMAIN_ID')
    return {key: os.environ[key] for key in keys if key in os.environ}


class NodeProcess:
    """`convitac_node` in its own process (a context manager that always stops it)."""

    def __init__(self, parameters: dict[str, Any], log_path: Path,
                 command: list[str] | None = None) -> None:
        """Prepare the command line.

        Args:
            parameters: node parameters, passed as ``-p name:=value`` arguments.
            log_path: where the process's stdout and stderr go.
            command: another command to run instead of the node (the echo node); then
                ``parameters`` must be empty.
        """
        self.command = command or [sys.executable, '-m', 'convitac_ros.ros.node', '--ros-args']
        for name, value in parameters.items():
            text = str(value).lower() if isinstance(value, bool) else str(value)
            self.command += ['-p', f'{name}:={text}']
        self.log_path = log_path
        self.popen: subprocess.Popen | None = None
        self._process: psutil.Process | None = None

    def __enter__(self) -> NodeProcess:
        """Start the node (stdout and stderr go to the log file)."""
        with open(self.log_path, 'wb') as log:
            self.popen = subprocess.Popen(self.command, stdout=log, stderr=subprocess.STDOUT)
        self._process = psutil.Process(self.popen.pid)
        return self

    def __exit__(self, *exc_info: Any) -> None:
        """Stop the node: SIGINT, then SIGKILL if it does not exit in time."""
        self.stop()

    def stop(self, timeout_s: float = 15.0) -> int | None:
        """Stop the node and return its exit code."""
        if self.popen is None:
            return None
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGINT)
            try:
                self.popen.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        return self.popen.returncode

    def alive(self) -> bool:
        """Whether the process is still running."""
        return self.popen is not None and self.popen.poll() is None

    def rss_mib(self) -> float:
        """Resident memory of the node process in MiB."""
        return self._process.memory_info().rss / 2**20

    def cpu_times(self) -> float:
        """User + system CPU seconds used by the node process so far."""
        times = self._process.cpu_times()
        return times.user + times.system

    def log_tail(self, lines: int = 20) -> str:
        """The end of the node's output (for error messages)."""
        try:
            return '\n'.join(self.log_path.read_text(errors='replace').splitlines()[-lines:])
        except OSError:
            return ''


@dataclasses.dataclass
class Sent:
    """One published pair: its stamp and when its last message was published (perf_counter ns).

    The node cannot start before the pair is complete, so the clock starts right before the
    publication of the last message of the pair.
    """

    stamp_ns: int
    sent_ns: int


class Client:
    """Publishes image pairs into the node and collects its results and diagnostics."""

    def __init__(self, frame_sizes: list[tuple[int, int]], reliable: bool = False,
                 node_name: str = NODE_NAME, compressed: bool = False) -> None:
        """Create the ROS client.

        Args:
            frame_sizes: (height, width) of the images of each input topic.
            reliable: publish with RELIABLE QoS (the node must subscribe reliably too to
                benefit) instead of BEST_EFFORT.
            node_name: name of the node under test.
            compressed: publish JPEG sensor_msgs/CompressedImage on ``<topic>/compressed``
                (of a smooth synthetic scene, so the JPEG has a realistic size).
        """
        from diagnostic_msgs.msg import DiagnosticArray
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import CompressedImage, Image
        from std_msgs.msg import String

        from convitac_ros.ros import direct_take
        from convitac_ros.ros.outputs import OUTPUT_NAMESPACE

        self._rclpy = rclpy
        self._context = rclpy.Context()
        rclpy.init(context=self._context)
        self.node = rclpy.create_node('convitac_benchmark', context=self._context)
        qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=5,
                         reliability=ReliabilityPolicy.RELIABLE if reliable
                         else ReliabilityPolicy.BEST_EFFORT)
        suffix, msg_type = ('/compressed', CompressedImage) if compressed else ('', Image)
        self._publishers = [self.node.create_publisher(msg_type, topic + suffix, qos)
                            for topic in INPUT_TOPICS[:len(frame_sizes)]]
        make = _jpeg if compressed else _image
        self._messages = [make(height, width, seed) for seed, (height, width)
                          in enumerate(frame_sizes)]
        self.message_bytes = [len(message.data) for message in self._messages]
        self._status_name = f'/{node_name}: inference'
        self._lock = threading.Condition()
        self.results: dict[int, tuple[int, dict[str, Any]]] = {}
        self.diagnostics: dict[str, str] = {}
        self._result_sub, self._reader_thread = direct_take.subscribe(
            self.node, String, f'/{OUTPUT_NAMESPACE}/result', 100, self._on_result, _ignore,
            'benchmark_results')
        self.node.create_subscription(DiagnosticArray, '/diagnostics', self._on_diagnostics, 10)
        self._executor = SingleThreadedExecutor(context=self._context)
        self._executor.add_node(self.node)
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        try:
            self._executor.spin()
        except Exception:  # noqa: BLE001 - shutdown while spinning ends the thread quietly
            return

    def _on_result(self, msg: Any) -> None:
        received = time.perf_counter_ns()
        payload = json.loads(msg.data)
        with self._lock:
            self.results[int(payload['stamp_ns'])] = (received, payload)
            self._lock.notify_all()

    def wait_result(self, stamp_ns: int, deadline: float) -> bool:
        """Wait until the result for ``stamp_ns`` is in, or ``deadline`` (perf_counter s)."""
        with self._lock:
            return self._lock.wait_for(lambda: stamp_ns in self.results,
                                       max(deadline - time.perf_counter(), 0.0))

    def _on_diagnostics(self, msg: Any) -> None:
        for status in msg.status:
            if status.name == self._status_name:
                values = {item.key: item.value for item in status.values}
                with self._lock:
                    self.diagnostics = values

    def counter(self, key: str) -> int:
        """An integer value of the node's newest diagnostics (0 when absent)."""
        with self._lock:
            value = self.diagnostics.get(key, '0')
        return int(value) if value.isdigit() else 0

    def wait_ready(self, process: NodeProcess, timeout_s: float) -> None:
        """Wait until the node subscribes to every input and publishes results and health.

        Raises:
            RuntimeError: the node exited or did not get ready in time (with its log).
        """
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not process.alive():
                raise RuntimeError(f'convitac_node exited:\n{process.log_tail()}')
            subscribed = all(p.get_subscription_count() > 0 for p in self._publishers)
            if subscribed and self._result_sub.get_publisher_count() > 0 and self.diagnostics:
                return
            time.sleep(0.1)
        raise RuntimeError(f'convitac_node not ready after {timeout_s} s:\n{process.log_tail()}')

    def publish_pair(self) -> Sent:
        """Publish one camera/tactile set with a shared stamp (the current wall time)."""
        stamp_ns = time.time_ns()
        for message in self._messages:
            message.header.stamp.sec, message.header.stamp.nanosec = divmod(stamp_ns, 10**9)
        for publisher, message in zip(self._publishers[:-1], self._messages):
            publisher.publish(message)
        sent_ns = time.perf_counter_ns()
        self._publishers[-1].publish(self._messages[-1])
        return Sent(stamp_ns, sent_ns)

    def run_rate(self, rate_hz: float, duration_s: float,
                 between: Callable[[Sent, float], None] | None = None) -> list[Sent]:
        """Publish pairs at ``rate_hz`` for ``duration_s``; never bursts to catch up.

        Args:
            rate_hz: target pairs per second.
            duration_s: how long to publish.
            between: called after each pair with the pair and the time (perf_counter s)
                of the next publication, to do measured work in the idle gap.

        Returns:
            Every pair sent, in order.
        """
        period = 1.0 / rate_hz
        sent = []
        start = next_time = time.perf_counter()
        while next_time - start < duration_s:
            delay = next_time - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            elif delay < -period:  # fell behind: skip ahead instead of bursting
                next_time = time.perf_counter()
            sent.append(self.publish_pair())
            next_time += period
            if between is not None:
                between(sent[-1], next_time)
        return sent

    def matched(self, sent: list[Sent]) -> list[tuple[Sent, int, dict[str, Any]]]:
        """The pairs that got a result: (pair, receive time in ns, result payload)."""
        with self._lock:
            return [(item, *self.results[item.stamp_ns]) for item in sent
                    if item.stamp_ns in self.results]

    def settle(self, seconds: float) -> None:
        """Wait for late results (publishing nothing)."""
        time.sleep(seconds)

    def close(self) -> None:
        """Stop spinning and shut this client's ROS context down."""
        if self._reader_thread is not None:
            self._reader_thread.stop()
            self._reader_thread = None
        self._executor.shutdown(timeout_sec=2.0)
        self.node.destroy_node()
        self._rclpy.try_shutdown(context=self._context)
        self._thread.join(timeout=2.0)


def _ignore(exc: Exception) -> None:
    """A result that fails to parse is simply not matched (it shows up as unanswered)."""


def smooth_scene(height: int, width: int, seed: int) -> np.ndarray:
    """A camera-like uint8 RGB frame: gradients, a few filled shapes and mild noise."""
    import cv2

    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack([rows / height, cols / width, (rows + cols) / (height + width)], axis=-1)
    frame = (base * rng.uniform(80, 200, 3) + rng.uniform(0, 40, 3)).astype(np.uint8)
    for _ in range(6):
        center = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        radius = int(rng.integers(min(height, width) // 20 + 1, min(height, width) // 4 + 2))
        color = tuple(int(c) for c in rng.integers(0, 256, 3))
        cv2.circle(frame, center, radius, color, thickness=-1)
    noise = rng.normal(0, 4, frame.shape)
    return np.clip(frame + noise, 0, 255).astype(np.uint8)


def _jpeg(height: int, width: int, seed: int) -> Any:
    """A JPEG (quality 90) sensor_msgs/CompressedImage of :func:`smooth_scene`."""
    import cv2
    from sensor_msgs.msg import CompressedImage

    ok, data = cv2.imencode('.jpg', smooth_scene(height, width, seed)[:, :, ::-1],
                            [cv2.IMWRITE_JPEG_QUALITY, 90])
    if not ok:
        raise RuntimeError('JPEG encoding failed')
    message = CompressedImage(format='jpeg', data=data.tobytes())
    message.header.frame_id = f'benchmark_{seed}'
    return message


def _image(height: int, width: int, seed: int) -> Any:
    """A random rgb8 sensor_msgs/Image (content does not change the timing)."""
    from sensor_msgs.msg import Image

    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    message = Image(height=height, width=width, encoding='rgb8', is_bigendian=0, step=width * 3)
    message.header.frame_id = f'benchmark_{seed}'
    message.data = pixels.tobytes()
    return message
