"""Online evaluation: replay a bag into a running `convitac_node` and score what it answers.

The node publishes, per inference, a JSON result on `~/result` (std_msgs/String) that carries
the stamp of the window's newest input set and the label of every head; answers are matched to
the bag's evaluation points by that stamp. Latency is measured here, from the publish of the
last message of a set to the arrival of the answer for it (so it includes DDS transport both
ways, pairing, queueing and inference).

The bag is indexed first (`index_bag`: pairing and evaluation points, no images kept); the
replay then reads it again as it publishes, so memory does not grow with the recording.
"""

from __future__ import annotations

from collections.abc import Callable
import time
from typing import Any

from convitac_ros.bags.bagfile import BagError, BagRecord
from convitac_ros.bags.replay import BagPlayer, ReplayOptions
from convitac_ros.bags.samples import BagIndex
from convitac_ros.bags.topic_mapping import node_topics
from convitac_ros.evaluation.metrics import EvaluationRecorder, latency_summary
from convitac_ros.ros.node_client import Answer, NodeClient
from convitac_ros.ros.outputs import SUCCESS_CLASS

DIAGNOSTICS_WAIT_S = 2.5
GRASP_HEAD = 'grasp_success'


def counter_changes(before: dict[str, str], after: dict[str, str]) -> dict[str, int]:
    """Increase of every integer-valued diagnostics entry (counts of pairs, drops, inputs)."""
    changes = {}
    for key, value in after.items():
        if value.isdigit() and before.get(key, '0').isdigit():
            changes[key] = int(value) - int(before.get(key, '0'))
    return changes


class OnlineSession:
    """The evaluator's ROS side: a client of the node with the bag's publishers.

    Args:
        index: The bag, indexed (`index_bag`).
        target: Fully qualified name of the evaluated node.
        options: Replay options (rate, subscriber wait).
        on_answer: Called with each answer as it arrives.
        ros_args: Command-line arguments for the evaluator's ROS context.
        transport: The node's `image_transport`; the bag's image topics are published on the
            node's input topics in that form, whatever their recorded names and form.
    """

    def __init__(self, index: BagIndex, target: str, options: ReplayOptions,
                 on_answer: Callable[[Answer], None] | None = None,
                 ros_args: list[str] | None = None, transport: str = 'raw') -> None:
        self.index = index
        # In the evaluated node's namespace, so that the bag's relative topics reach it.
        self.client = NodeClient(target, on_answer=on_answer, name='convitac_evaluate',
                                 ros_args=ros_args or ())
        options.topics = index.image_topics
        options.remap = dict(zip(index.image_topics,
                                 node_topics(index.image_topics, transport)))
        try:
            self.player = BagPlayer(self.client.node, index.path, options)
        except BaseException:
            self.client.close()
            raise
        self.published: dict[int, float] = {}

    def close(self) -> None:
        """Stop the client (its node and context)."""
        self.client.close()

    def wait_ready(self, timeout: float) -> None:
        """Wait until the node subscribes to every input and publishes results.

        Raises:
            BagError: Nothing subscribes to the bag's image topics in time.
        """
        if not self.player.wait_for_subscribers(timeout):
            raise BagError(f'no node subscribes to {list(self.player.publishers)} '
                           f'(is the node running, in this ROS domain?)')
        deadline = time.monotonic() + timeout
        while self.client.result_subscription.get_publisher_count() == 0:
            if time.monotonic() > deadline:
                raise BagError(f'nothing publishes {self.client.result_topic} '
                               f'(is the node active, with that name?)')
            time.sleep(0.05)

    def run_lock_step(self, timeout: float) -> int:
        """Publish set by set, reading the bag again; wait for the answer at each point.

        Returns:
            The number of evaluation points whose answer did not come within ``timeout``.
        """
        points = {p.stamp_ns for p in self.index.points}
        missed = 0
        with self.index.reopen() as stream:
            for frame_set, stored in stream:
                for record in stored:
                    self.player.publish(record)
                self.published[frame_set.stamp_ns] = time.monotonic()
                if (frame_set.stamp_ns in points
                        and self.client.wait_for(frame_set.stamp_ns, timeout) is None):
                    missed += 1
        return missed

    def run_paced(self) -> None:
        """Replay the image topics at the recorded pace (scaled by the rate)."""
        last_of_set: dict[tuple[str, int], int] = {}
        for stamp, keys in zip(self.index.set_stamps, self.index.set_keys):
            for key in keys:
                last_of_set[key] = stamp

        def note(record: BagRecord, when: float) -> None:
            stamp = last_of_set.get((record.topic, record.time_ns))
            if stamp is not None:
                self.published[stamp] = when

        self.player.play(on_publish=note)


def print_answer(truths: dict[int, dict[str, str]], origin_ns: int) -> Callable[[Answer], None]:
    """A callback that prints each answer to an evaluation point, marking right and wrong.

    Grasp success also shows the probability of success the node published.

    Args:
        truths: Evaluation stamp -> head -> true class name.
        origin_ns: Stamp printed as time 0 (the bag's first set).
    """
    def show(answer: Answer) -> None:
        truth = truths.get(answer.stamp_ns)
        if truth is None:
            return
        probabilities = answer.probabilities
        parts = []
        for head, label in answer.labels.items():
            text = f'{head}={label}'
            if head == GRASP_HEAD and len(probabilities.get(head, ())) == 2:
                top = max(probabilities[head])  # two classes: P(success) from the winner's
                text += f' P(success)={top if label == SUCCESS_CLASS else 1.0 - top:.2f}'
            parts.append(text + ('' if head not in truth else ' ok' if truth[head] == label
                                 else f' (true: {truth[head]})'))
        print(f'[{(answer.stamp_ns - origin_ns) / 1e9:7.2f} s] ' + '  '.join(parts),
              flush=True)

    return show


def evaluate_online(index: BagIndex, *, node: str = '/convitac_node', rate: float = 1.0,
                    lock_step: bool = False, timeout: float = 10.0, predictor: Any = None,
                    live: bool = False, progress: bool = True,
                    ros_args: list[str] | None = None,
                    transport: str = 'raw') -> EvaluationRecorder:
    """Replay a bag into a running node (paced or lock-step) and record its answers.

    Args:
        index: The bag, indexed (`convitac_ros.bags.samples.index_bag`).
        node: Fully qualified name of the running node.
        rate: Replay speed factor (paced mode).
        lock_step: One set at a time, waiting for the answer at each evaluation point.
        timeout: Seconds to wait for the node to appear, for an answer (lock-step) and for
            the last answers after the replay.
        predictor: When given, the class names and window length of the node's model
            (otherwise the bag's layout and the answers tell them).
        live: Print each answer to an evaluation point as it arrives.
        progress: Show the replay progress bar.
        ros_args: Command-line arguments for the evaluator's ROS context.
        transport: The node's `image_transport` (`raw` or `compressed`).
    """
    truths = {p.stamp_ns: p.labels for p in index.points}
    options = ReplayOptions(rate=rate, progress=progress and not live,
                            wait_for_subscribers=timeout)
    origin = index.set_stamps[0] if index.set_stamps else 0
    session = OnlineSession(index, node, options,
                            print_answer(truths, origin) if live else None, ros_args, transport)
    try:
        session.wait_ready(timeout)
        # The node's counters before and after (diagnostics come at about 1 Hz).
        before = session.client.wait_newer_values(float('-inf'), DIAGNOSTICS_WAIT_S)
        if lock_step:
            session.run_lock_step(timeout)
        else:
            session.run_paced()
        session.client.wait_all([p.stamp_ns for p in index.points], timeout)
        after = (session.client.wait_newer_values(time.monotonic(), DIAGNOSTICS_WAIT_S)
                 if before is not None else None)
    finally:
        session.close()
    recorder = _record(index, session, predictor,
                       'online-lockstep' if lock_step else 'online')
    if before is not None and after is not None:
        changes = counter_changes(before, after)
        recorder.paired_sets = changes.get('pairs', recorder.paired_sets)
        recorder.extra['node_counters'] = changes
    return recorder


def _record(index: BagIndex, session: OnlineSession, predictor: Any,
            mode: str) -> EvaluationRecorder:
    answers = session.client.answers
    if predictor is not None:
        classes = {h: list(c) for h, c in predictor.heads.items()}
    else:
        classes = index.layout.get('heads') or {}
    for answer in answers.values():
        for head, label in answer.labels.items():
            names = classes.setdefault(head, [])
            if label not in names:
                names.append(label)
    recorder = EvaluationRecorder(classes, mode=mode)
    recorder.truths = {p.stamp_ns: p.labels for p in index.points}
    recorder.predictions = {s: answers[s].labels for s in recorder.truths if s in answers}
    recorder.probabilities = {s: answers[s].probabilities for s in recorder.predictions
                              if answers[s].probabilities}
    recorder.latencies_s = [answers[s].received - t for s, t in session.published.items()
                            if s in answers]
    recorder.published_sets = len(session.published)
    # Without the node's diagnostics, count the sets it answered (a lower bound of the pairs).
    recorder.paired_sets = sum(1 for s in session.published if s in answers)
    recorder.extra['malformed_results'] = session.client.malformed
    node_ms = [a.node_latency_ms for a in answers.values() if a.node_latency_ms is not None]
    recorder.extra['node_latency_ms'] = latency_summary([ms / 1e3 for ms in node_ms])
    return recorder
