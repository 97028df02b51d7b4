"""Helpers for end-to-end tests: a real convitac_node process and a probe node over real DDS.

The node runs as ``python -m convitac_ros.ros.node`` in a subprocess that inherits this
process's environment (loopback discovery and a private ROS_DOMAIN_ID, set by conftest.py).
The probe lives in its own rclpy context, spun by a background thread.
"""

from __future__ import annotations

from collections.abc import Callable
import json
import os
from pathlib import Path
import signal
import subprocess
import sys
import threading
import time
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray
from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState, GetState
import numpy as np
from rcl_interfaces.msg import Parameter as ParameterMsg
from rcl_interfaces.srv import GetParameters, SetParameters
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Float32MultiArray, String

NODE = '/convitac_node'
OUTPUTS = '/convitac'  # the node's outputs: <its namespace>/convitac/...
TRANSITIONS = {
    'configure': Transition.TRANSITION_CONFIGURE, 'activate': Transition.TRANSITION_ACTIVATE,
    'deactivate': Transition.TRANSITION_DEACTIVATE, 'cleanup': Transition.TRANSITION_CLEANUP,
    'shutdown': Transition.TRANSITION_INACTIVE_SHUTDOWN,
}


def _arg(value: Any) -> str:
    if isinstance(value, bool):
        return 'true' if value else 'false'
    if isinstance(value, str) and not value:
        return "''"
    return str(value)


class NodeProcess:
    """A convitac_node subprocess; :meth:`stop` always ends it (SIGINT, then SIGKILL)."""

    def __init__(self, params: dict[str, Any], log_path: Path,
                 params_files: tuple[Path, ...] = (), ros_args: tuple[str, ...] = ()) -> None:
        """Start the node with ``-p name:=value`` for each parameter; output goes to a log.

        ``params_files`` come first (``--params-file``), the ``-p`` values after them win;
        ``ros_args`` are more ``--ros-args`` (e.g. ``-r __ns:=/left_hand``).
        """
        args = [sys.executable, '-m', 'convitac_ros.ros.node', '--ros-args', *ros_args]
        for path in params_files:
            args += ['--params-file', str(path)]
        for name, value in params.items():
            args += ['-p', f'{name}:={_arg(value)}']
        self.log_path = log_path
        self._log = open(log_path, 'w')  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT,
                                        env=dict(os.environ))

    @property
    def pid(self) -> int:
        """The node's process id."""
        return self.process.pid

    def alive(self) -> bool:
        """True while the process runs."""
        return self.process.poll() is None

    def log(self) -> str:
        """Everything the node printed so far."""
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text()

    def stop(self, timeout: float = 15.0) -> int:
        """Interrupt the node like Ctrl-C; kill it if it does not exit in time."""
        if self.alive():
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        return self.process.returncode


def image(pixels: np.ndarray, stamp_ns: int, encoding: str = 'rgb8',
          frame_id: str = 'camera') -> Image:
    """A sensor_msgs/Image from a uint8 array (HxWx3 or HxW)."""
    msg = Image(height=pixels.shape[0], width=pixels.shape[1], encoding=encoding,
                is_bigendian=0, step=pixels.shape[1] * (pixels.shape[2] if pixels.ndim == 3
                                                        else 1) * pixels.itemsize,
                data=np.ascontiguousarray(pixels).tobytes())
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
    msg.header.frame_id = frame_id
    return msg


class Probe:
    """A test-side node: publishes images, records outputs and diagnostics, calls services."""

    def __init__(self, heads: list[str], num_tactile: int = 1, compressed: bool = False,
                 node: str = NODE, outputs: str = OUTPUTS, topics_prefix: str = '') -> None:
        """Create publishers, subscriptions and clients and start spinning.

        ``node`` is the node's fully qualified name, ``outputs`` where its outputs are, and
        ``topics_prefix`` goes before the input topics (e.g. ``/left_hand``).
        """
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node('convitac_test_probe', context=self.context)
        self.target = node
        self.results: list[dict] = []
        self.labels: dict[str, list[str]] = {h: [] for h in heads}
        self.probabilities: dict[str, list[np.ndarray]] = {h: [] for h in heads}
        self.statuses: list[Any] = []
        self.all_statuses: list[Any] = []  # of every node on /diagnostics
        self._lock = threading.Lock()
        reliable = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE)
        msg_type = CompressedImage if compressed else Image
        suffix = '/compressed' if compressed else ''
        topics = ['camera/image_raw', 'tactile/image_raw', 'tactile_b/image_raw']
        self.publishers = [self.node.create_publisher(msg_type, f'{topics_prefix}/{t}{suffix}',
                                                       reliable)
                           for t in topics[:1 + num_tactile]]
        sub = self.node.create_subscription
        sub(String, f'{outputs}/result', self._on_result, reliable)
        for head in heads:
            sub(String, f'{outputs}/{head}/label',
                lambda m, h=head: self.labels[h].append(m.data), reliable)
            sub(Float32MultiArray, f'{outputs}/{head}/probabilities',
                lambda m, h=head: self.probabilities[h].append(np.array(m.data, np.float32)),
                reliable)
        sub(DiagnosticArray, '/diagnostics', self._on_diagnostics, 100)
        self._change_state = self.node.create_client(ChangeState, f'{node}/change_state')
        self._get_state = self.node.create_client(GetState, f'{node}/get_state')
        self._set_params = self.node.create_client(SetParameters, f'{node}/set_parameters')
        self._get_params = self.node.create_client(GetParameters, f'{node}/get_parameters')
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        while self.context.ok():
            try:
                self.executor.spin_once(timeout_sec=0.05)
            except Exception:  # noqa: BLE001 - context shut down while spinning
                return

    def _on_result(self, msg: String) -> None:
        with self._lock:
            self.results.append(json.loads(msg.data))

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        with self._lock:
            self.all_statuses.extend(msg.status)
        for status in msg.status:
            if status.name.startswith(self.target + ':'):
                with self._lock:
                    self.statuses.append(status)

    def close(self) -> None:
        """Stop spinning and shut the context down."""
        self.context.try_shutdown()
        self._thread.join(5)
        self.node.destroy_node()

    # -------------------------------------------------------------- publishing

    def publish(self, msgs: list[Any]) -> None:
        """Publish one message per input (camera first)."""
        for publisher, msg in zip(self.publishers, msgs):
            publisher.publish(msg)

    def wait_for_subscribers(self, timeout: float = 20.0) -> None:
        """Wait until the node subscribes to every input and has matched these publishers.

        Discovery is not symmetric in time: our publishers may see the node's subscriptions
        before those have matched our publishers, and a best-effort message sent in between is
        lost. The node's /diagnostics (``<topic> publishers (matched)``) says when its side is
        connected too.
        """
        wait_until(lambda: all(p.get_subscription_count() > 0 for p in self.publishers),
                   timeout, 'the node never subscribed to the inputs')
        with self._lock:
            seen = len(self.statuses)

        def node_side_matched() -> bool:
            with self._lock:
                newer = self.statuses[seen:]
            if not newer:
                return False
            values = {kv.key: kv.value for kv in newer[-1].values}
            matched = [value for key, value in values.items()
                       if key.endswith('publishers (matched)')]
            return len(matched) >= len(self.publishers) and all(
                value != 'n/a' and int(value.split('(')[1].rstrip(')')) >= 1
                for value in matched)

        wait_until(node_side_matched, timeout, 'the node never matched the probe publishers')

    # -------------------------------------------------------------- services

    def _call(self, client: Any, request: Any, timeout: float = 30.0) -> Any:
        if not client.wait_for_service(timeout_sec=timeout):
            raise TimeoutError(f'service {client.srv_name} not available')
        future = client.call_async(request)
        wait_until(future.done, timeout, f'no answer from {client.srv_name}')
        return future.result()

    def transition(self, name: str) -> bool:
        """Request a lifecycle transition; return whether it succeeded."""
        request = ChangeState.Request()
        request.transition.id = TRANSITIONS[name]
        return self._call(self._change_state, request).success

    def state(self) -> str:
        """The node's lifecycle state label."""
        return self._call(self._get_state, GetState.Request()).current_state.label

    def set_parameter(self, name: str, value: Any) -> tuple[bool, str]:
        """Set one parameter; return (successful, reason)."""
        msg: ParameterMsg = Parameter(name, value=value).to_parameter_msg()
        result = self._call(self._set_params, SetParameters.Request(parameters=[msg]))
        return result.results[0].successful, result.results[0].reason

    def get_parameter(self, name: str) -> Any:
        """One parameter's value (None when not declared)."""
        response = self._call(self._get_params, GetParameters.Request(names=[name]))
        if not response.values:
            return None
        return Parameter.from_parameter_msg(ParameterMsg(
            name=name, value=response.values[0])).value

    # -------------------------------------------------------------- observations

    def node_statuses(self) -> list[Any]:
        """Every diagnostics status received so far, of any node."""
        with self._lock:
            return list(self.all_statuses)

    def result_count(self) -> int:
        """Results received so far."""
        with self._lock:
            return len(self.results)

    def next_status(self, timeout: float = 5.0) -> Any:
        """The first diagnostics status of the node received after this call."""
        with self._lock:
            start = len(self.statuses)

        def fresh() -> bool:
            with self._lock:
                return len(self.statuses) > start

        wait_until(fresh, timeout, 'no /diagnostics from the node')
        with self._lock:
            return self.statuses[-1]


def status_values(status: Any) -> dict[str, str]:
    """A DiagnosticStatus's key/values as a dict."""
    return {kv.key: kv.value for kv in status.values}


def wait_until(predicate: Callable[[], bool], timeout: float, message: str) -> None:
    """Poll ``predicate`` every 20 ms; raise AssertionError with ``message`` on timeout."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f'timed out after {timeout} s: {message}')
        time.sleep(0.02)
