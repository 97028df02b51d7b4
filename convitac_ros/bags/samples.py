"""A bag seen as the node sees it: synchronized frame sets, sliding windows, ground truth.

The image messages are paired with the node's own `ApproximateTimeSynchronizer` (same queue
size and slop), in log-time order, so the sets found here are the sets the node forms when the
bag is replayed into it without loss. Ground truth (`ground_truth/<head>`, std_msgs/String)
marks the evaluation points: the set whose camera stamp is nearest to the ground-truth stamp
(within slop) is the newest set of the window the node classifies for that sample. A labels
file (`convitac_ros.bags.labels`) replaces the ground-truth topics for recordings: then every
set inside a labelled interval is an evaluation point. Which topics are the camera and the
tactile sensors is decided by `convitac_ros.bags.topics` (names as recorded, or mapped).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sensor_msgs.msg import CompressedImage

from convitac_ros.bags.bagfile import (
    BagReader,
    BagRecord,
    GROUND_TRUTH_PREFIX,
)
from convitac_ros.bags.labels import LabelsError, LabelsFile
from convitac_ros.bags.topics import resolve_image_topics
from convitac_ros.ros.image_conversion import compressed_to_rgb, image_to_rgb
from convitac_ros.ros.image_limits import check_image_size, DEFAULT_MAX_PIXELS
from convitac_ros.ros.parameters import SPECS
from convitac_ros.ros.pipeline import FrameSet, SlidingWindow
from convitac_ros.ros.synchronizer import ApproximateTimeSynchronizer, stamp_to_ns

# The node's defaults, so that offline pairing matches an unconfigured node.
DEFAULT_SLOP_S = SPECS['sync_slop'].default
DEFAULT_QUEUE_SIZE = SPECS['sync_queue_size'].default


def to_rgb(msg: Any) -> np.ndarray:
    """Convert a sensor_msgs Image or CompressedImage into uint8 (H, W, 3) RGB (node rules).

    Images that would decode to more than the node's default ``max_image_pixels`` are refused
    (ImageTooLargeError) before decoding.
    """
    check_image_size(msg, DEFAULT_MAX_PIXELS)
    return compressed_to_rgb(msg) if isinstance(msg, CompressedImage) else image_to_rgb(msg)


@dataclass
class EvaluationPoint:
    """A sample to score: the newest set of its window and its labels.

    Attributes:
        set_index: Index into `BagSamples.sets` of the window's newest set.
        stamp_ns: Stamp of that set (what the node's answer carries).
        labels: Head -> class name from the bag's ground truth.
    """

    set_index: int
    stamp_ns: int
    labels: dict[str, str]


@dataclass
class BagSamples:
    """Synchronized sets and evaluation points of one bag.

    Attributes:
        path: The bag.
        image_topics: Camera topic, then the tactile topics used.
        sets: Synchronized sets (the node's `FrameSet`) in the order the synchronizer
            emitted them.
        records: The stored messages of each set, camera first (for replaying it).
        points: Evaluation points in stamp order.
        unmatched_truth: Ground-truth stamps with no set within slop.
        unpaired: Image messages that ended in no set.
        camera_messages: Camera messages in the bag.
        layout: The writer's layout description (`{}` for foreign bags).
        start_ns: The bag's first log time (time 0 of a labels file).
        label_rows_unused: Labels-file rows that cover no set.
    """

    path: Path
    image_topics: list[str]
    sets: list[FrameSet]
    records: list[list[BagRecord]]
    points: list[EvaluationPoint]
    unmatched_truth: int = 0
    unpaired: int = 0
    camera_messages: int = 0
    layout: dict[str, Any] = field(default_factory=dict)
    start_ns: int = 0
    label_rows_unused: int = 0

    @property
    def heads(self) -> list[str]:
        """Heads that have ground truth in the bag, in first-seen order."""
        seen: dict[str, None] = {}
        for point in self.points:
            seen.update(dict.fromkeys(point.labels))
        return list(seen)

    def windows(self, length: int) -> dict[int, tuple[FrameSet, ...]]:
        """The node's window at each evaluation point, built with the node's `SlidingWindow`.

        Args:
            length: Sets per window, `max(T_v, T_t)` of the model.

        Returns:
            Evaluation set index -> the `length` sets ending with it, oldest first; points
            whose window is not full (too few sets before them) are absent.
        """
        wanted = {p.set_index for p in self.points}
        window = SlidingWindow(length)
        out = {}
        for index, frame_set in enumerate(self.sets):
            result = window.push(frame_set)
            if index in wanted and isinstance(result, tuple):
                out[index] = result
        return out


def load_bag_samples(path: str | Path, num_tactile: int | None = None,
                     slop: float = DEFAULT_SLOP_S,
                     queue_size: int = DEFAULT_QUEUE_SIZE, camera_topic: str | None = None,
                     tactile_topics: Sequence[str] | None = None,
                     labels: LabelsFile | None = None) -> BagSamples:
    """Read a bag, pair its images like the node does and locate the evaluation points.

    Args:
        path: Bag directory.
        num_tactile: Tactile sensors the model takes (None: all in the bag).
        slop: Synchronizer slop in seconds (the node's `slop` parameter).
        queue_size: Synchronizer queue size (the node's `queue_size` parameter).
        camera_topic: Camera topic to use (`convitac_ros.bags.topics` rules; None: default).
        tactile_topics: Tactile topics in sensor order (None: the defaults).
        labels: A labels file; when given it replaces the bag's ground-truth topics.

    Raises:
        BagError: Missing or corrupt bag, or no usable image topics.
        LabelsError: The labels file covers none of the bag's sets.
    """
    with BagReader(path) as reader:
        info = reader.info()
        topics = resolve_image_topics(info.topics, camera_topic, tactile_topics, num_tactile)
        truth_topics = [] if labels is not None else [
            t for t in info.topics if t.startswith(GROUND_TRUTH_PREFIX)]
        sets: list[FrameSet] = []
        records: list[list[BagRecord]] = []
        truths: dict[int, dict[str, str]] = {}

        def emit(*pairs: tuple[BagRecord, Any]) -> None:
            msgs = tuple(p[1] for p in pairs)
            sets.append(FrameSet(msgs, stamp_to_ns(msgs[0]) or 0, 0, to_rgb))
            records.append([p[0] for p in pairs])

        sync = ApproximateTimeSynchronizer(len(topics), queue_size, slop, emit)
        index = {t: k for k, t in enumerate(topics)}
        images = 0
        for record in reader.records([*topics, *truth_topics]):
            if record.topic in index:
                images += 1
                msg = record.decode()
                sync.add((record, msg), index[record.topic], stamp_to_ns(msg))
            else:
                head = record.topic[len(GROUND_TRUTH_PREFIX):]
                truths.setdefault(record.time_ns, {})[head] = record.decode().data
    unused = 0
    if labels is None:
        points, unmatched = _match_points(sets, truths, int(slop * 1e9))
    else:
        points, unused = _label_points(sets, labels, info.start_ns)
        unmatched = 0
    return BagSamples(Path(path), topics, sets, records, points, unmatched,
                      images - len(sets) * len(topics), info.topics[topics[0]][1], info.layout,
                      info.start_ns, unused)


def _label_points(sets: list[FrameSet], labels: LabelsFile,
                  start_ns: int) -> tuple[list[EvaluationPoint], int]:
    """Every set inside a labelled interval, with that row's labels; and the rows covering none.

    Raises:
        LabelsError: No set of the bag lies in any interval.
    """
    points = []
    used: set[int] = set()
    for index, frame_set in enumerate(sets):
        offset = frame_set.stamp_ns - start_ns
        for row in labels.rows:
            if row.covers(offset):
                points.append(EvaluationPoint(index, frame_set.stamp_ns, dict(row.labels)))
                used.add(row.line)
                break
    if not points:
        span = (sets[-1].stamp_ns - start_ns) / 1e9 if sets else 0.0
        raise LabelsError(f'{labels.path}: no interval covers a frame of the bag (its frame '
                          f'sets lie between 0 and {span:.2f} s from its start)')
    points.sort(key=lambda p: p.stamp_ns)
    return points, len(labels.rows) - len(used)


def _match_points(sets: list[FrameSet], truths: dict[int, dict[str, str]],
                  slop_ns: int) -> tuple[list[EvaluationPoint], int]:
    """Attach each ground-truth stamp to the set with the nearest camera stamp within slop."""
    if not sets:
        return [], len(truths)
    stamps = np.array([s.stamp_ns for s in sets], dtype=np.int64)
    points, unmatched = [], 0
    for stamp, labels in sorted(truths.items()):
        nearest = int(np.argmin(np.abs(stamps - stamp)))
        if abs(int(stamps[nearest]) - stamp) > slop_ns:
            unmatched += 1
            continue
        points.append(EvaluationPoint(nearest, sets[nearest].stamp_ns, labels))
    return points, unmatched
