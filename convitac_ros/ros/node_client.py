"""Talk to a running `convitac_node`: publish its inputs, take its answers, call its services.

:class:`NodeClient` is an rclpy node in a context of its own, spun by a thread of its own:
publishers for the node's inputs, the node's answers (taken by a thread waiting on the result
subscription alone, so that their arrival time is not delayed by an executor), its
/diagnostics, its lifecycle and parameter services. Used by the demo, the online evaluator,
the benchmarks and the tests; the node process itself: :mod:`convitac_ros.ros.node_process`.
Image messages are built by :mod:`convitac_ros.ros.image_messages`, stamps converted by
:mod:`convitac_ros.ros.stamps`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
import json
import threading
import time
from typing import Any

import numpy as np

from convitac_ros.ros.node_process import NodeProcess
from convitac_ros.ros.stamps import time_to_ns
from convitac_ros.ros.topics import (
    COMPRESSED_SUFFIX,
    image_qos,
    INPUT_TOPICS,
    NODE_NAME,
    OUTPUT_NAMESPACE,
    RESULT_TOPIC,
)


@dataclass
class Answer:
    """One result of the node.

    Attributes:
        stamp_ns: Stamp of the window's newest input set.
        labels: Head -> predicted class name.
        received: Arrival time here, ``time.monotonic()`` seconds.
        payload: The whole JSON result.
    """

    stamp_ns: int
    labels: dict[str, str]
    received: float
    payload: dict[str, Any]

    @property
    def probabilities(self) -> dict[str, list[float]]:
        """Head -> class probabilities as the node published them (empty if it sent none)."""
        heads = self.payload.get('heads', {})
        return {head: [float(p) for p in value['probabilities']]
                for head, value in heads.items()
                if isinstance(value, dict) and isinstance(value.get('probabilities'), list)}

    @property
    def node_latency_ms(self) -> float | None:
        """The node's own latency (set completed to result published), if it sent one."""
        latency = self.payload.get('latency_ms')
        return None if latency is None else float(latency)


def parse_result(text: str, received: float) -> Answer:
    """Read the node's ``~/result`` JSON (input stamp, head -> label, latency).

    Raises:
        ValueError: Not a result message.
    """
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError('a result is a JSON object')
    if 'stamp_ns' in data:
        stamp = int(data['stamp_ns'])
    else:
        stamp = time_to_ns(data['stamp'])
    labels = {head: value['label'] if isinstance(value, dict) else str(value)
              for head, value in data.get('heads', {}).items()}
    return Answer(stamp, labels, received, data)


def status_values(status: Any) -> dict[str, str]:
    """A DiagnosticStatus's key/values as a dict."""
    return {item.key: item.value for item in status.values}


def wait_until(predicate: Callable[[], bool], timeout: float, message: str) -> None:
    """Poll ``predicate`` every 20 ms; raise AssertionError with ``message`` on timeout."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f'timed out after {timeout} s: {message}')
        time.sleep(0.02)


class NodeClient:
    """Publishes into a node and observes it: answers, labels, /diagnostics, services.

    The client's node lives in the target's namespace, so the relative input topics reach it;
    the node's outputs are under ``<its namespace>/convitac/``.

    Args:
        target: Fully qualified name of the node, e.g. ``/convitac_node``.
        inputs: How many input publishers to create (camera, tactile, tactile_b), 0 for none.
        compressed: Publish sensor_msgs/CompressedImage on ``<topic>/compressed``.
        reliable: RELIABLE (else BEST_EFFORT) QoS for the input publishers.
        depth: History depth of the input publishers.
        heads: Heads whose ``~/<head>/label`` and ``~/<head>/probabilities`` are recorded.
        on_answer: Called with every answer as it arrives (on the taking thread).
        name: This client's node name.
        ros_args: command-line arguments for this client's context; those after
            ``--ros-args`` count (e.g. remappings).
    """

    def __init__(self, target: str = f'/{NODE_NAME}', *, inputs: int = 0,
                 compressed: bool = False, reliable: bool = True, depth: int = 1000,
                 heads: Sequence[str] = (), on_answer: Callable[[Answer], None] | None = None,
                 name: str = 'convitac_client', ros_args: Sequence[str] = ()) -> None:
        from diagnostic_msgs.msg import DiagnosticArray
        from lifecycle_msgs.srv import ChangeState, GetState
        from rcl_interfaces.srv import GetParameters, SetParameters
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import CompressedImage, Image
        from std_msgs.msg import Float32MultiArray, String

        from convitac_ros.ros import direct_take

        self.target = '/' + target.strip('/')
        namespace = self.target.rsplit('/', 1)[0] or '/'
        self._rclpy = rclpy
        self.context = rclpy.Context()
        rclpy.init(args=[name, *ros_args] if ros_args else None,
                   context=self.context)
        self.node = rclpy.create_node(name, namespace=namespace, context=self.context)
        self._lock = threading.Condition()
        self.answers: dict[int, Answer] = {}
        self.results: list[dict[str, Any]] = []
        self.malformed = 0
        self.labels: dict[str, list[str]] = {head: [] for head in heads}
        self.probabilities: dict[str, list[np.ndarray]] = {head: [] for head in heads}
        self.statuses: list[tuple[float, Any]] = []
        self.all_statuses: list[Any] = []  # of every node on /diagnostics
        self._on_answer = on_answer

        qos = image_qos(depth, reliable)
        msg_type, suffix = (CompressedImage, COMPRESSED_SUFFIX) if compressed else (Image, '')
        self.publishers = [self.node.create_publisher(msg_type, topic + suffix, qos)
                           for topic in INPUT_TOPICS[:inputs]]
        self.outputs = f'{namespace.rstrip("/")}/{OUTPUT_NAMESPACE}'
        reliable_qos = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE)
        self.result_topic = f'{self.outputs}/{RESULT_TOPIC}'
        self.result_subscription, self._reader = direct_take.subscribe(
            self.node, String, self.result_topic, reliable_qos, self._on_result,
            self._on_malformed, 'client_results')
        for head in heads:
            self.node.create_subscription(
                String, f'{self.outputs}/{head}/label',
                lambda msg, h=head: self._append(self.labels[h], msg.data), reliable_qos)
            self.node.create_subscription(
                Float32MultiArray, f'{self.outputs}/{head}/probabilities',
                lambda msg, h=head: self._append(self.probabilities[h],
                                                 np.array(msg.data, np.float32)), reliable_qos)
        self.node.create_subscription(DiagnosticArray, '/diagnostics', self._on_diagnostics, 100)
        client = self.node.create_client
        self._services = {
            'change_state': (client(ChangeState, f'{self.target}/change_state'), ChangeState),
            'get_state': (client(GetState, f'{self.target}/get_state'), GetState),
            'set_parameters': (client(SetParameters, f'{self.target}/set_parameters'),
                               SetParameters),
            'get_parameters': (client(GetParameters, f'{self.target}/get_parameters'),
                               GetParameters),
        }
        self._executor = SingleThreadedExecutor(context=self.context)
        self._executor.add_node(self.node)
        self._spinner = threading.Thread(target=self._spin, daemon=True)
        self._spinner.start()

    # ------------------------------------------------------------------ life

    def __enter__(self) -> NodeClient:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def _spin(self) -> None:
        try:
            self._executor.spin()
        except Exception:  # noqa: BLE001 - the context shut down while spinning
            return

    def close(self) -> None:
        """Stop taking answers and spinning, destroy the node, shut the context down."""
        if self._reader is not None:
            self._reader.stop()
            self._reader = None
        self._executor.shutdown(timeout_sec=2.0)
        self.node.destroy_node()
        self._rclpy.try_shutdown(context=self.context)
        self._spinner.join(timeout=5.0)

    # ------------------------------------------------------------------ inputs

    def publish(self, msgs: Sequence[Any]) -> None:
        """Publish one message per input publisher (camera first)."""
        for publisher, msg in zip(self.publishers, msgs):
            publisher.publish(msg)

    def inputs_subscribed(self) -> bool:
        """Whether something subscribes to every input topic."""
        return all(p.get_subscription_count() > 0 for p in self.publishers)

    def wait_for_subscribers(self, timeout: float = 20.0, matched: bool = True) -> None:
        """Wait until the node subscribes to every input (and, with ``matched``, matched us).

        Discovery is not symmetric in time: our publishers may see the node's subscriptions
        before those have matched our publishers, and a best-effort message sent in between is
        lost. The node's /diagnostics (``<topic> publishers (matched)``) says when its side is
        connected too.
        """
        wait_until(self.inputs_subscribed, timeout, 'the node never subscribed to the inputs')
        if not matched:
            return
        since = time.monotonic()

        def node_side_matched() -> bool:
            values = self.newest_values(since)
            found = [value for key, value in (values or {}).items()
                     if key.endswith('publishers (matched)')]
            return len(found) >= len(self.publishers) and all(
                value != 'n/a' and int(value.split('(')[1].rstrip(')')) >= 1 for value in found)

        wait_until(node_side_matched, timeout, 'the node never matched the client publishers')

    def wait_ready(self, process: NodeProcess | None, timeout: float) -> None:
        """Wait until the node subscribes to every input, publishes results and diagnostics.

        Raises:
            RuntimeError: the process exited or the node did not get ready in time (its log).
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process is not None and not process.alive():
                raise RuntimeError(f'the node exited ({process.returncode}):\n'
                                   f'{process.log_tail()}')
            if (self.inputs_subscribed() and self.result_subscription.get_publisher_count() > 0
                    and self.newest_values() is not None):
                return
            time.sleep(0.05)
        tail = process.log_tail() if process is not None else ''
        raise RuntimeError(f'{self.target} not ready after {timeout} s\n{tail}'.rstrip())

    # ------------------------------------------------------------------ answers

    def _append(self, items: list, item: Any) -> None:
        with self._lock:
            items.append(item)

    def _on_malformed(self, exc: Exception) -> None:
        with self._lock:
            self.malformed += 1

    def _on_result(self, msg: Any) -> None:
        received = time.monotonic()
        try:
            answer = parse_result(msg.data, received)
        except (ValueError, KeyError, TypeError):
            self._on_malformed(ValueError(msg.data[:80]))
            return
        with self._lock:
            self.results.append(answer.payload)
            self.answers.setdefault(answer.stamp_ns, answer)
            self._lock.notify_all()
        if self._on_answer is not None:
            self._on_answer(answer)

    def result_count(self) -> int:
        """Results received so far."""
        with self._lock:
            return len(self.results)

    def wait_for(self, stamp_ns: int, timeout: float) -> Answer | None:
        """Block until the answer for ``stamp_ns`` arrived (None after ``timeout`` seconds)."""
        with self._lock:
            self._lock.wait_for(lambda: stamp_ns in self.answers, max(timeout, 0.0))
            return self.answers.get(stamp_ns)

    def wait_all(self, stamps: Sequence[int], timeout: float, settle: float = 0.3) -> None:
        """Wait until every stamp is answered (at most ``timeout`` s in all), then ``settle`` s."""
        deadline = time.monotonic() + timeout
        for stamp in stamps:
            if self.wait_for(stamp, deadline - time.monotonic()) is None:
                break
        time.sleep(settle)

    # ------------------------------------------------------------------ diagnostics

    def _ours(self, status_name: str) -> bool:
        """Whether a status belongs to the target (named by its plain or qualified name)."""
        owner = status_name.split(':', 1)[0].strip().lstrip('/')
        return owner in (self.target.lstrip('/'), self.target.rsplit('/', 1)[-1])

    def _on_diagnostics(self, msg: Any) -> None:
        now = time.monotonic()
        with self._lock:
            self.all_statuses.extend(msg.status)
            for status in msg.status:
                if self._ours(status.name):
                    self.statuses.append((now, status))
            self._lock.notify_all()

    def node_statuses(self) -> list[Any]:
        """Every diagnostics status received so far, of any node."""
        with self._lock:
            return list(self.all_statuses)

    def next_status(self, timeout: float = 5.0) -> Any:
        """The first diagnostics status of the node received after this call."""
        with self._lock:
            start = len(self.statuses)
            if not self._lock.wait_for(lambda: len(self.statuses) > start, timeout):
                raise AssertionError(f'timed out after {timeout} s: no /diagnostics from the node')
            return self.statuses[-1][1]

    def newest_values(self, since: float = float('-inf')) -> dict[str, str] | None:
        """The node's newest diagnostics values received after ``since`` (monotonic s)."""
        with self._lock:
            if not self.statuses or self.statuses[-1][0] <= since:
                return None
            return status_values(self.statuses[-1][1])

    def wait_newer_values(self, since: float, timeout: float) -> dict[str, str] | None:
        """The first diagnostics values received after ``since``; None after ``timeout`` s."""
        with self._lock:
            self._lock.wait_for(lambda: bool(self.statuses) and self.statuses[-1][0] > since,
                                timeout)
        return self.newest_values(since)

    def counter(self, key: str) -> int:
        """An integer value of the newest diagnostics (0 when absent)."""
        value = (self.newest_values() or {}).get(key, '0')
        return int(value) if value.isdigit() else 0

    # ------------------------------------------------------------------ services

    def _call(self, service: str, request: Any, timeout: float = 30.0) -> Any:
        client, _ = self._services[service]
        if not client.wait_for_service(timeout_sec=timeout):
            raise TimeoutError(f'service {client.srv_name} not available')
        future = client.call_async(request)
        wait_until(future.done, timeout, f'no answer from {client.srv_name}')
        return future.result()

    def transition(self, name: str) -> bool:
        """Request a lifecycle transition by name (configure, activate, ...); return success."""
        from lifecycle_msgs.msg import Transition

        ids = {'configure': Transition.TRANSITION_CONFIGURE,
               'activate': Transition.TRANSITION_ACTIVATE,
               'deactivate': Transition.TRANSITION_DEACTIVATE,
               'cleanup': Transition.TRANSITION_CLEANUP,
               'shutdown': Transition.TRANSITION_INACTIVE_SHUTDOWN}
        _, service = self._services['change_state']
        request = service.Request()
        request.transition.id = ids[name]
        return self._call('change_state', request).success

    def state(self) -> str:
        """The node's lifecycle state label."""
        _, service = self._services['get_state']
        return self._call('get_state', service.Request()).current_state.label

    def set_parameter(self, name: str, value: Any) -> tuple[bool, str]:
        """Set one parameter; return (successful, reason)."""
        from rclpy.parameter import Parameter

        _, service = self._services['set_parameters']
        msg = Parameter(name, value=value).to_parameter_msg()
        result = self._call('set_parameters', service.Request(parameters=[msg]))
        return result.results[0].successful, result.results[0].reason

    def get_parameter(self, name: str) -> Any:
        """One parameter's value (None when not declared)."""
        from rcl_interfaces.msg import Parameter as ParameterMsg
        from rclpy.parameter import Parameter

        _, service = self._services['get_parameters']
        response = self._call('get_parameters', service.Request(names=[name]))
        if not response.values:
            return None
        return Parameter.from_parameter_msg(ParameterMsg(name=name,
                                                         value=response.values[0])).value
