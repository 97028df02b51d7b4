"""A bag seen as the node sees it: synchronized frame sets, sliding windows, ground truth.

The image messages are paired with the node's own `ApproximateTimeSynchronizer` (same queue
size and slop), in log-time order, so the sets found here are the sets the node forms when the
bag is replayed into it without loss. Ground truth (`ground_truth/<head>`, std_msgs/String,
under any namespace, absolute or relative, as `ros2 bag record` stores it) marks the evaluation
points: the set whose camera stamp is nearest to the ground-truth stamp (within slop) is the
newest set of the window the node classifies for that sample. A labels
file (`convitac_ros.bags.labels_file`) replaces the ground-truth topics for recordings: then every
set inside a labelled interval is an evaluation point. Which topics are the camera and the
tactile sensors is decided by `convitac_ros.bags.topic_mapping` (names as recorded, or mapped).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
import re
from typing import Any

from convitac_ros.bags.bagfile import BagReader, BagRecord
from convitac_ros.bags.labels_file import LabelRow, LabelsError, LabelsFile
from convitac_ros.bags.topic_mapping import resolve_image_topics, resolve_truth_topics
from convitac_ros.ros.image_limits import message_to_rgb
from convitac_ros.ros.parameters import SPECS
from convitac_ros.ros.pipeline import FrameSet, SlidingWindow
from convitac_ros.ros.stamps import stamp_to_ns
from convitac_ros.ros.synchronizer import ApproximateTimeSynchronizer

# The node's defaults, so that offline pairing matches an unconfigured node.
DEFAULT_SLOP_S = SPECS['sync_slop'].default
DEFAULT_QUEUE_SIZE = SPECS['sync_queue_size'].default


@dataclass
class EvaluationPoint:
    """A sample to score: the newest set of its window and its labels.

    Attributes:
        set_index: Index (in the order the sets were formed) of the window's newest set.
        stamp_ns: Stamp of that set (what the node's answer carries).
        labels: Head -> class name from the bag's ground truth.
    """

    set_index: int
    stamp_ns: int
    labels: dict[str, str]


class SetStream:
    """The synchronized sets of one bag, one at a time, as the node's synchronizer emits them.

    Only the synchronizer's queue is held in memory, so a recording of any length can be
    written out set by set (``convitac_make_dataset``). Use as a context manager; ``info``,
    ``topics`` and ``start_ns`` are known on entry, ``images`` and ``truths`` (ground-truth
    messages by log time, when ``read_truth``) grow while iterating.

    Args:
        path: Bag directory.
        num_tactile: Tactile sensors the model takes (None: all in the bag).
        slop: Synchronizer slop in seconds (the node's `slop` parameter).
        queue_size: Synchronizer queue size (the node's `queue_size` parameter).
        camera_topic: Camera topic to use (`convitac_ros.bags.topic_mapping` rules; None: default).
        tactile_topics: Tactile topics in sensor order (None: the defaults).
        read_truth: Also read the bag's ground-truth topics.
        other_topics: More bag topics to read along (exact names); their records are appended
            to ``others`` in log-time order as they are read (readers drain it).

    Raises:
        BagError: Missing or corrupt bag, or no usable image topics (on entry or while reading).
    """

    def __init__(self, path: str | Path, num_tactile: int | None = None,
                 slop: float = DEFAULT_SLOP_S, queue_size: int = DEFAULT_QUEUE_SIZE,
                 camera_topic: str | None = None, tactile_topics: Sequence[str] | None = None,
                 read_truth: bool = True, other_topics: Sequence[str] = ()) -> None:
        self.path = Path(path)
        self.other_topics = list(other_topics)
        self.others: list[BagRecord] = []
        self._reader = BagReader(path)
        self._options = (num_tactile, camera_topic, tactile_topics, read_truth)
        self.slop, self.queue_size = slop, queue_size
        self.images = 0  # image messages read so far
        self.sets = 0  # sets formed so far
        self.truths: dict[int, dict[str, str]] = {}
        self.new_truths: list[int] = []  # log times of truths first seen; readers drain it

    def __enter__(self) -> SetStream:
        self._reader.__enter__()
        try:
            num_tactile, camera_topic, tactile_topics, read_truth = self._options
            self.info = self._reader.info()
            self.start_ns = self.info.start_ns
            self.topics = resolve_image_topics(self.info.topics, camera_topic, tactile_topics,
                                               num_tactile)
            self.truth_topics = resolve_truth_topics(self.info.topics) if read_truth else {}
        except BaseException:
            self._reader.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        self._reader.__exit__(*exc)

    @property
    def unpaired(self) -> int:
        """Image messages read so far that ended in no set."""
        return self.images - self.sets * len(self.topics)

    @property
    def camera_messages(self) -> int:
        """Camera messages in the bag (at most one set each)."""
        return self.info.topics[self.topics[0]][1]

    def __iter__(self) -> Iterator[tuple[FrameSet, list[BagRecord]]]:
        """Yields (set, its stored messages camera first) in the order the sets are formed."""
        ready: list[tuple[FrameSet, list[BagRecord]]] = []

        def emit(*pairs: tuple[BagRecord, Any]) -> None:
            msgs = tuple(p[1] for p in pairs)
            ready.append((FrameSet(msgs, stamp_to_ns(msgs[0]) or 0, 0, message_to_rgb),
                          [p[0] for p in pairs]))

        sync = ApproximateTimeSynchronizer(len(self.topics), self.queue_size, self.slop, emit)
        index = {t: k for k, t in enumerate(self.topics)}
        others = set(self.other_topics)
        for record in self._reader.records([*self.topics, *self.truth_topics, *others]):
            if record.topic in others:
                self.others.append(record)
            elif record.topic in index:
                self.images += 1
                msg = record.decode()
                sync.add((record, msg), index[record.topic], stamp_to_ns(msg))
            else:
                head = self.truth_topics[record.topic]
                if record.time_ns not in self.truths:
                    self.new_truths.append(record.time_ns)
                self.truths.setdefault(record.time_ns, {})[head] = record.decode().data
            self.sets += len(ready)
            yield from ready
            ready.clear()


@dataclass
class StreamFacts:
    """What `evaluation_points` counted while reading (the report's facts about the bag)."""

    unmatched_truth: int = 0
    label_rows_unused: int = 0
    last_offset_ns: int | None = None


# Sets kept for matching a ground-truth stamp read after them (log order is about stamp order).
TRUTH_HORIZON_NS = 1_000_000_000


def evaluation_points(stream: SetStream, length: int, labels: LabelsFile | None = None,
                      facts: StreamFacts | None = None,
                      on_set: Callable[[FrameSet, list[BagRecord]], None] | None = None
                      ) -> Iterator[tuple[int, dict[str, str], tuple[FrameSet, ...] | None]]:
    """The evaluation points of a bag as it is read, with the node's window at each.

    The points are the labelled sets, or for each ground-truth stamp the set nearest to it
    within slop (the first of equally near ones), each with the window of ``length`` sets ending
    there, or None while the window is not yet full. Only the sets of the last second are held.

    Args:
        stream: The bag, entered (`SetStream` with ``read_truth`` unless ``labels``).
        length: Sets per window, `max(T_v, T_t)` of the model.
        labels: A labels file, in place of the bag's ground-truth topics.
        facts: Filled with the counts the report gives.
        on_set: Called with every set and its stored messages as it is read.

    Yields:
        (camera stamp of the point's set, head -> class name, window or None).
    """
    facts = StreamFacts() if facts is None else facts
    window = SlidingWindow(length)
    slop_ns = int(stream.slop * 1e9)
    recent: deque[tuple[int, tuple[FrameSet, ...] | None]] = deque()
    pending: deque[int] = deque()
    used: set[int] = set()

    def resolve(newest_ns: int | None) -> Iterator[tuple[int, dict[str, str], Any]]:
        # A truth is settled once a set newer than its stamp + slop was read (or at the end).
        while pending and (newest_ns is None or pending[0] + slop_ns < newest_ns):
            stamp = pending.popleft()
            best = None
            for set_stamp, full in recent:  # the first of equally near sets, as np.argmin
                if best is None or abs(set_stamp - stamp) < abs(best[0] - stamp):
                    best = (set_stamp, full)
            if best is None or abs(best[0] - stamp) > slop_ns:
                facts.unmatched_truth += 1
            else:
                yield best[0], dict(stream.truths[stamp]), best[1]

    for frame_set, stored in stream:
        if on_set is not None:
            on_set(frame_set, stored)
        facts.last_offset_ns = frame_set.stamp_ns - stream.start_ns
        result = window.push(frame_set)
        full = result if isinstance(result, tuple) else None
        if labels is not None:
            row = label_at(labels, facts.last_offset_ns)
            if row is not None:
                used.add(row.line)
                yield frame_set.stamp_ns, dict(row.labels), full
            continue
        recent.append((frame_set.stamp_ns, full))
        while recent[0][0] < frame_set.stamp_ns - TRUTH_HORIZON_NS:
            recent.popleft()
        pending.extend(stream.new_truths)
        stream.new_truths.clear()
        yield from resolve(frame_set.stamp_ns)
    pending.extend(stream.new_truths)
    stream.new_truths.clear()
    yield from resolve(None)
    if labels is not None:
        facts.label_rows_unused = len(labels.rows) - len(used)


@dataclass
class BagIndex:
    """A bag paired and its evaluation points found, without its images: what a replay needs.

    Made by `index_bag` in one pass that keeps no image; `reopen()` reads the sets again, one at
    a time, for publishing them (`convitac_ros.evaluation.online`).

    Attributes:
        path: The bag.
        image_topics: Camera topic, then the tactile topics used.
        set_stamps: Camera stamp of every set, in the order the synchronizer formed them.
        set_keys: (topic, log time) of every set's stored messages, camera first.
        points: Evaluation points in stamp order (``set_index`` into `set_stamps`).
        facts: The counts of the pass (unmatched truth, unused label rows).
        unpaired: Image messages that ended in no set.
        camera_messages: Camera messages in the bag.
        layout: The writer's layout description (`{}` for foreign bags).
        slop: Synchronizer slop in seconds.
        queue_size: Synchronizer queue size.
        topic_options: ``num_tactile``, ``camera_topic``, ``tactile_topics`` as `index_bag` got
            them (resolving them again finds the same topics).
    """

    path: Path
    image_topics: list[str]
    set_stamps: list[int]
    set_keys: list[list[tuple[str, int]]]
    points: list[EvaluationPoint]
    facts: StreamFacts
    unpaired: int
    camera_messages: int
    layout: dict[str, Any]
    slop: float
    queue_size: int
    topic_options: tuple[int | None, str | None, Sequence[str] | None]

    def reopen(self) -> SetStream:
        """The bag's sets again, paired with the same topics and synchronizer settings."""
        num_tactile, camera_topic, tactile_topics = self.topic_options
        return SetStream(self.path, num_tactile, self.slop, self.queue_size, camera_topic,
                         tactile_topics, read_truth=False)


def index_bag(path: str | Path, num_tactile: int | None = None, slop: float = DEFAULT_SLOP_S,
              queue_size: int = DEFAULT_QUEUE_SIZE, camera_topic: str | None = None,
              tactile_topics: Sequence[str] | None = None,
              labels: LabelsFile | None = None) -> BagIndex:
    """Pair a bag and find its evaluation points in one pass, keeping no image.

    Args:
        path: The bag (this and the next five: as `SetStream` takes them).
        num_tactile: Tactile sensors.
        slop: Synchronizer slop (s).
        queue_size: Synchronizer queue.
        camera_topic: Camera topic.
        tactile_topics: Tactile topics.
        labels: A labels file; when given it replaces the bag's ground-truth topics.

    Raises:
        BagError: Missing or corrupt bag, or no usable image topics.
        LabelsError: The labels file covers none of the bag's sets.
    """
    stamps: list[int] = []
    keys: list[list[tuple[str, int]]] = []

    def note(frame_set: FrameSet, stored: list[BagRecord]) -> None:
        stamps.append(frame_set.stamp_ns)
        keys.append([(record.topic, record.time_ns) for record in stored])

    facts = StreamFacts()
    with SetStream(path, num_tactile, slop, queue_size, camera_topic, tactile_topics,
                   read_truth=labels is None) as stream:
        found = [(stamp, truth) for stamp, truth, _ in
                 evaluation_points(stream, 1, labels, facts, on_set=note)]
    if labels is not None and not found:
        raise no_label_error(labels, facts.last_offset_ns)
    position = {stamp: index for index, stamp in enumerate(stamps)}
    points = sorted((EvaluationPoint(position[stamp], stamp, truth) for stamp, truth in found),
                    key=lambda p: p.stamp_ns)
    return BagIndex(Path(path), stream.topics, stamps, keys, points, facts,
                    stream.unpaired, stream.camera_messages,
                    stream.info.layout, slop, queue_size,
                    (num_tactile, camera_topic, tactile_topics))


def session_name(index: int, bag: Path) -> str:
    """`<index>_<bag name>` with only safe characters: a recording's name in a dataset."""
    return f'{index:03d}_' + re.sub(r'[^A-Za-z0-9_.-]', '_', bag.name.rstrip('/') or 'bag')


def label_at(labels: LabelsFile, offset_ns: int) -> LabelRow | None:
    """The labels-file row whose interval covers ``offset_ns`` from the bag's start (or None)."""
    return labels.row_at(offset_ns)


def no_label_error(labels: LabelsFile, last_offset_ns: int | None) -> LabelsError:
    """The error for a labels file that covers none of a bag's sets."""
    span = (last_offset_ns or 0) / 1e9
    return LabelsError(f'{labels.path}: no interval covers a frame of the bag (its frame '
                       f'sets lie between 0 and {span:.2f} s from its start)')
