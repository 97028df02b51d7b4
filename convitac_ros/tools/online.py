"""Online evaluation: replay a bag into a running `convitac_node` and score what it answers.

The node publishes, per inference, a JSON result on `~/result` (std_msgs/String) that carries
the stamp of the window's newest input set and the label of every head; answers are matched to
the bag's evaluation points by that stamp. Latency is measured here, from the publish of the
last message of a set to the arrival of the answer for it (so it includes DDS transport both
ways, pairing, queueing and inference).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
import json
import threading
import time
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from std_msgs.msg import String

from convitac_ros.bags.topics import node_topics
from convitac_ros.ros import direct_take
from convitac_ros.tools.bag_samples import BagSamples
from convitac_ros.tools.bagio import BagError, BagRecord
from convitac_ros.tools.metrics import EvaluationRecorder, latency_summary
from convitac_ros.tools.replay import BagPlayer, ReplayOptions

RESULT_TOPIC = 'result'
DIAGNOSTICS_WAIT_S = 2.5


@dataclass
class Answer:
    """One result of the node.

    Attributes:
        stamp_ns: Stamp of the window's newest input set.
        labels: Head -> predicted class name.
        received: Arrival time here, `time.monotonic()` seconds.
        node_latency_ms: The node's own latency (set completed to result published), if sent.
    """

    stamp_ns: int
    labels: dict[str, str]
    received: float
    node_latency_ms: float | None = None


def parse_result(text: str, received: float) -> Answer:
    """Read the node's `~/result` JSON (input stamp, head -> label, optional `latency_ms`).

    Raises:
        ValueError: Not a result message.
    """
    data = json.loads(text)
    if 'stamp_ns' in data:
        stamp = int(data['stamp_ns'])
    else:
        stamp = int(data['stamp']['sec']) * 1_000_000_000 + int(data['stamp']['nanosec'])
    labels = {head: value['label'] if isinstance(value, dict) else str(value)
              for head, value in data.get('heads', {}).items()}
    latency = data.get('latency_ms')
    return Answer(stamp, labels, received, None if latency is None else float(latency))


class AnswerCollector:
    """Subscribes to a node's results and lets a thread wait for the answer to a stamp.

    The results are taken by a thread of the collector's own that waits on that subscription
    alone (:mod:`convitac_ros.ros.direct_take`), as the node takes its images, so the
    receive time is not delayed by the evaluator's executor; :meth:`close` stops it.

    Args:
        node: The evaluator's own node (spun by the caller in another thread).
        target: Fully qualified name of the evaluated node, e.g. `/convitac_node`.
        on_answer: Called with every answer as it arrives (e.g. to print it).
    """

    def __init__(self, node: Node, target: str,
                 on_answer: Callable[[Answer], None] | None = None) -> None:
        self.topic = f'{target.rstrip("/")}/{RESULT_TOPIC}'
        self.answers: dict[int, Answer] = {}
        self.malformed = 0
        self._on_answer = on_answer
        self._cond = threading.Condition()
        qos = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE)
        self.subscription, self._thread = direct_take.subscribe(
            node, String, self.topic, qos, self._receive, self._failed, 'answer_collector')

    def close(self) -> None:
        """Stop taking answers (before the node is destroyed)."""
        if self._thread is not None:
            self._thread.stop()
            self._thread = None

    def _failed(self, exc: Exception) -> None:
        """An answer that could not be handled counts as malformed."""
        self.malformed += 1

    def _receive(self, msg: String) -> None:
        try:
            answer = parse_result(msg.data, time.monotonic())
        except (ValueError, KeyError, TypeError):
            self.malformed += 1
            return
        with self._cond:
            self.answers.setdefault(answer.stamp_ns, answer)
            self._cond.notify_all()
        if self._on_answer is not None:
            self._on_answer(answer)

    def wait_for(self, stamp_ns: int, timeout: float) -> Answer | None:
        """Block until the answer for `stamp_ns` arrived (None after `timeout` seconds)."""
        with self._cond:
            self._cond.wait_for(lambda: stamp_ns in self.answers, timeout)
            return self.answers.get(stamp_ns)

    def wait_all(self, stamps: list[int], timeout: float, settle: float = 0.3) -> None:
        """Wait until every stamp in `stamps` is answered (at most `timeout` s in all).

        Then wait `settle` s more, for answers to the sets between evaluation points.
        """
        deadline = time.monotonic() + timeout
        for stamp in stamps:
            if self.wait_for(stamp, max(0.0, deadline - time.monotonic())) is None:
                break
        time.sleep(settle)


class DiagnosticsWatcher:
    """Keeps the latest `/diagnostics` values of the evaluated node (its counters).

    Args:
        node: The evaluator's node.
        target: Fully qualified name of the evaluated node; its status is `<name>: ...`.
    """

    def __init__(self, node: Node, target: str) -> None:
        self._prefix = target.rstrip('/').rsplit('/', 1)[-1] + ':'
        self._cond = threading.Condition()
        self._latest: tuple[float, dict[str, str]] | None = None
        node.create_subscription(DiagnosticArray, '/diagnostics', self._receive, 10)

    def _receive(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name.startswith(self._prefix):
                with self._cond:
                    self._latest = (time.monotonic(), {v.key: v.value for v in status.values})
                    self._cond.notify_all()

    def wait_newer(self, since: float, timeout: float) -> dict[str, str] | None:
        """The first values received after `since` (monotonic s); None after `timeout` s."""
        with self._cond:
            self._cond.wait_for(lambda: self._latest is not None and self._latest[0] > since,
                                timeout)
            latest = self._latest
        return latest[1] if latest is not None and latest[0] > since else None


def counter_changes(before: dict[str, str], after: dict[str, str]) -> dict[str, int]:
    """Increase of every integer-valued diagnostics entry (counts of pairs, drops, inputs)."""
    changes = {}
    for key, value in after.items():
        if value.isdigit() and before.get(key, '0').isdigit():
            changes[key] = int(value) - int(before.get(key, '0'))
    return changes


class OnlineSession:
    """The evaluator's ROS side: a node with the bag's publishers and the answer collector.

    Args:
        samples: The paired bag.
        target: Fully qualified name of the evaluated node.
        options: Replay options (rate, subscriber wait).
        on_answer: Called with each answer as it arrives.
        ros_args: Extra ROS arguments for rclpy.init (when it is not initialised yet).
        transport: The node's `image_transport`; the bag's image topics are published on the
            node's input topics in that form, whatever their recorded names and form.
    """

    def __init__(self, samples: BagSamples, target: str, options: ReplayOptions,
                 on_answer: Callable[[Answer], None] | None = None,
                 ros_args: list[str] | None = None, transport: str = 'raw') -> None:
        self.samples = samples
        self._own_context = not rclpy.ok()
        if self._own_context:
            rclpy.init(args=['convitac_evaluate', *(ros_args or [])])
        # In the evaluated node's namespace, so that its relative input topics resolve there.
        namespace = target.rstrip('/').rsplit('/', 1)[0] or '/'
        self.node = Node('convitac_evaluate', namespace=namespace)
        options.topics = samples.image_topics
        options.remap = dict(zip(samples.image_topics,
                                 node_topics(samples.image_topics, transport)))
        try:
            self.player = BagPlayer(self.node, samples.path, options)
        except BaseException:
            self.node.destroy_node()
            if self._own_context:
                rclpy.try_shutdown()
            raise
        self.collector = AnswerCollector(self.node, target, on_answer)
        self.diagnostics = DiagnosticsWatcher(self.node, target)
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)
        self._spinner = threading.Thread(target=self.executor.spin, daemon=True)
        self._spinner.start()
        self.published: dict[int, float] = {}

    def close(self) -> None:
        """Stop spinning, destroy the node, shut rclpy down if this session started it."""
        self.collector.close()
        self.executor.shutdown()
        self._spinner.join(timeout=5.0)
        self.node.destroy_node()
        if self._own_context:
            rclpy.try_shutdown()

    def wait_ready(self, timeout: float) -> None:
        """Wait until the node subscribes to every input and publishes results.

        Raises:
            BagError: Nothing subscribes to the bag's image topics in time.
        """
        if not self.player.wait_for_subscribers(timeout):
            raise BagError(f'no node subscribes to {list(self.player.publishers)} '
                           f'(is the node running, in this ROS domain?)')
        deadline = time.monotonic() + timeout
        while self.node.count_publishers(self.collector.topic) == 0:
            if time.monotonic() > deadline:
                raise BagError(f'nothing publishes {self.collector.topic} '
                               f'(is the node active, with that name?)')
            time.sleep(0.05)

    def publish_set(self, index: int) -> None:
        """Publish every message of set `index` now; remember when its last one left."""
        for record in self.samples.records[index]:
            self.player.publish(record)
        self.published[self.samples.sets[index].stamp_ns] = time.monotonic()

    def run_lock_step(self, timeout: float) -> int:
        """Publish set by set; at each evaluation point wait for the answer. Return timeouts."""
        points = {p.set_index for p in self.samples.points}
        missed = 0
        for index, frame_set in enumerate(self.samples.sets):
            self.publish_set(index)
            if index in points and self.collector.wait_for(frame_set.stamp_ns, timeout) is None:
                missed += 1
        return missed

    def run_paced(self) -> None:
        """Replay the image topics at the recorded pace (scaled by the rate)."""
        last_of_set: dict[tuple[str, int], int] = {}
        for frame_set, records in zip(self.samples.sets, self.samples.records):
            for record in records:
                last_of_set[(record.topic, record.time_ns)] = frame_set.stamp_ns

        def note(record: BagRecord, when: float) -> None:
            stamp = last_of_set.get((record.topic, record.time_ns))
            if stamp is not None:
                self.published[stamp] = when

        self.player.play(on_publish=note)


def print_answer(truths: dict[int, dict[str, str]], origin_ns: int) -> Callable[[Answer], None]:
    """A callback that prints each answer to an evaluation point, marking right and wrong.

    Args:
        truths: Evaluation stamp -> head -> true class name.
        origin_ns: Stamp printed as time 0 (the bag's first set).
    """
    def show(answer: Answer) -> None:
        truth = truths.get(answer.stamp_ns)
        if truth is None:
            return
        parts = [f'{head}={label}' + ('' if head not in truth else ' ok' if truth[head] == label
                                      else f' (true: {truth[head]})')
                 for head, label in answer.labels.items()]
        print(f'[{(answer.stamp_ns - origin_ns) / 1e9:7.2f} s] ' + '  '.join(parts),
              flush=True)

    return show


def evaluate_online(samples: BagSamples, *, node: str = '/convitac_node', rate: float = 1.0,
                    lock_step: bool = False, timeout: float = 10.0, predictor: Any = None,
                    live: bool = False, progress: bool = True,
                    ros_args: list[str] | None = None,
                    transport: str = 'raw') -> EvaluationRecorder:
    """Replay a bag into a running node (paced or lock-step) and record its answers.

    Args:
        samples: The paired bag.
        node: Fully qualified name of the running node.
        rate: Replay speed factor (paced mode).
        lock_step: One set at a time, waiting for the answer at each evaluation point.
        timeout: Seconds to wait for the node to appear, for an answer (lock-step) and for
            the last answers after the replay.
        predictor: When given, the class names and window length of the node's model
            (otherwise the bag's layout and the answers tell them).
        live: Print each answer to an evaluation point as it arrives.
        progress: Show the replay progress bar.
        ros_args: Extra ROS arguments for rclpy.init (when it is not initialised yet).
        transport: The node's `image_transport` (`raw` or `compressed`).
    """
    truths = {p.stamp_ns: p.labels for p in samples.points}
    options = ReplayOptions(rate=rate, progress=progress and not live,
                            wait_for_subscribers=timeout)
    origin = samples.sets[0].stamp_ns if samples.sets else 0
    session = OnlineSession(samples, node, options,
                            print_answer(truths, origin) if live else None, ros_args, transport)
    try:
        session.wait_ready(timeout)
        # The node's counters before and after (diagnostics come at about 1 Hz).
        before = session.diagnostics.wait_newer(0.0, DIAGNOSTICS_WAIT_S)
        if lock_step:
            session.run_lock_step(timeout)
        else:
            session.run_paced()
        session.collector.wait_all([p.stamp_ns for p in samples.points], timeout)
        after = (session.diagnostics.wait_newer(time.monotonic(), DIAGNOSTICS_WAIT_S)
                 if before is not None else None)
    finally:
        session.close()
    recorder = _record(samples, session, predictor,
                       'online-lockstep' if lock_step else 'online')
    if before is not None and after is not None:
        changes = counter_changes(before, after)
        recorder.paired_sets = changes.get('pairs', recorder.paired_sets)
        recorder.extra['node_counters'] = changes
    return recorder


def _record(samples: BagSamples, session: OnlineSession, predictor: Any,
            mode: str) -> EvaluationRecorder:
    answers = session.collector.answers
    if predictor is not None:
        classes = {h: list(c) for h, c in predictor.heads.items()}
    else:
        classes = samples.layout.get('heads') or {}
    for answer in answers.values():
        for head, label in answer.labels.items():
            names = classes.setdefault(head, [])
            if label not in names:
                names.append(label)
    recorder = EvaluationRecorder(classes, mode=mode)
    recorder.truths = {p.stamp_ns: p.labels for p in samples.points}
    recorder.predictions = {s: answers[s].labels for s in recorder.truths if s in answers}
    recorder.latencies_s = [answers[s].received - t for s, t in session.published.items()
                            if s in answers]
    recorder.published_sets = len(session.published)
    # Without the node's diagnostics, count the sets it answered (a lower bound of the pairs).
    recorder.paired_sets = sum(1 for s in session.published if s in answers)
    recorder.extra['malformed_results'] = session.collector.malformed
    node_ms = [a.node_latency_ms for a in answers.values() if a.node_latency_ms is not None]
    recorder.extra['node_latency_ms'] = latency_summary([ms / 1e3 for ms in node_ms])
    return recorder
