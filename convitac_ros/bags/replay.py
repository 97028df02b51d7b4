"""`convitac_replay`: play a bag's topics into the live ROS graph at the recorded pace.

Like `ros2 bag play` for the topics this package uses (which needs no rosbag2 install): messages
are published as the stored CDR bytes (no re-serialization, stamps untouched) at their log
times scaled by `--rate`, optionally from `--start-offset` seconds into the bag, looping, and
with `/clock` published from the log times for nodes running with `use_sim_time`. With
`--camera-topic` / `--tactile-topic` (or `--transport`), a recording's image topics are
published on the node's input topics (`camera/image_raw`, `tactile/image_raw`, ...), converted
to the node's transport when it was recorded in the other form.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
import sys
import threading
import time

import rclpy
from rclpy.node import Node
from rclpy.publisher import Publisher
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rclpy.utilities import remove_ros_args
from rosgraph_msgs.msg import Clock
from tqdm import tqdm

from convitac_ros.bags.bagfile import (
    BagError,
    BagReader,
    BagRecord,
    message_class,
)
from convitac_ros.bags.topic_mapping import (
    convert_record,
    is_compressed,
    message_type_of,
    node_topics,
    resolve_image_topics,
    TRANSPORTS,
    truth_head,
)
from convitac_ros.ros.dds_profile import use_fastdds_profile
from convitac_ros.ros.stamps import write_time

NANOSECONDS = 1_000_000_000


@dataclass
class ReplayOptions:
    """How to play a bag.

    Attributes:
        rate: Playback speed factor (2.0 plays twice as fast).
        start_offset: Seconds into the bag to start at.
        loop: Start again at the end until stopped.
        clock: Publish `/clock` (rosgraph_msgs/Clock) with the log time of each message.
        topics: Only these topics (all when None).
        remap: Bag topic -> topic to publish it on; an image published on a name of the other
            transport (`/compressed` or not) is converted, same pixels.
        qos_depth: History depth of the (reliable) publishers.
        wait_for_subscribers: Seconds to wait until every image topic has a subscriber.
        progress: Show a progress bar (bag seconds) on stderr.
    """

    rate: float = 1.0
    start_offset: float = 0.0
    loop: bool = False
    clock: bool = False
    topics: list[str] | None = None
    remap: dict[str, str] | None = None
    qos_depth: int = 100
    wait_for_subscribers: float = 2.0
    progress: bool = True

    def validate(self) -> None:
        """Raise ValueError for a rate or offset that cannot be played."""
        if not self.rate > 0:
            raise ValueError(f'rate must be positive, got {self.rate}')
        if self.start_offset < 0:
            raise ValueError(f'start offset must not be negative, got {self.start_offset}')
        if self.qos_depth < 1:
            raise ValueError(f'qos depth must be at least 1, got {self.qos_depth}')


@dataclass
class ReplayStats:
    """What a replay did.

    Attributes:
        published: Topic -> messages published.
        loops: Passes over the bag started.
        wall_s: Seconds spent playing.
        max_lag_s: Largest delay of a publish behind its scheduled time.
    """

    published: dict[str, int] = field(default_factory=dict)
    loops: int = 0
    wall_s: float = 0.0
    max_lag_s: float = 0.0

    @property
    def total(self) -> int:
        """Messages published on all topics."""
        return sum(self.published.values())


class BagPlayer:
    """Publishes the messages of a bag through a node's publishers.

    Args:
        node: Node that owns the publishers (relative bag topics resolve in its namespace).
        bag: The bag directory.
        options: Playback options.

    Raises:
        BagError: The bag is missing or corrupt, or holds none of the requested topics.
    """

    def __init__(self, node: Node, bag: str | Path, options: ReplayOptions | None = None) -> None:
        self.options = options or ReplayOptions()
        self.options.validate()
        self.path = Path(bag)
        with BagReader(self.path) as reader:
            self.info = reader.info()
        wanted = self.options.topics
        self.topics = {t: msgtype for t, (msgtype, _) in self.info.topics.items()
                       if wanted is None or t in wanted}
        if not self.topics:
            raise BagError(f'bag {self.path} has none of the topics {wanted}; '
                           f'it has {sorted(self.info.topics)}')
        qos = QoSProfile(depth=self.options.qos_depth, reliability=ReliabilityPolicy.RELIABLE)
        self.node = node
        self.remap = dict(self.options.remap or {})
        self.publishers: dict[str, Publisher] = {
            topic: node.create_publisher(
                message_type_of(self.remap[topic]) if topic in self.remap
                else message_class(msgtype), self.remap.get(topic, topic), qos)
            for topic, msgtype in self.topics.items()}
        self._clock = node.create_publisher(Clock, '/clock', qos) if self.options.clock else None

    def wait_for_subscribers(self, timeout: float | None = None) -> bool:
        """Wait until every non-ground-truth topic has a subscriber; True when they all do."""
        timeout = self.options.wait_for_subscribers if timeout is None else timeout
        deadline = time.monotonic() + timeout
        inputs = [p for t, p in self.publishers.items() if truth_head(t) is None]
        while True:
            if all(p.get_subscription_count() > 0 for p in inputs):
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)

    def publish(self, record: BagRecord) -> None:
        """Publish one stored message now (and `/clock` first when enabled)."""
        if self._clock is not None:
            clock = Clock()
            write_time(clock.clock, record.time_ns)
            self._clock.publish(clock)
        target = self.remap.get(record.topic)
        raw = record.raw if target is None else convert_record(record, is_compressed(target))
        self.publishers[record.topic].publish(raw)

    def flush(self, timeout_s: float = 5.0) -> bool:
        """Wait until every reliable subscriber acknowledged what was published.

        A process that exits right after its last publish can otherwise take the last messages
        with it. Best-effort publishers return at once.

        Returns:
            Whether everything was acknowledged within ``timeout_s`` (per publisher).
        """
        from rclpy.duration import Duration

        return all(publisher.wait_for_all_acked(Duration(nanoseconds=int(timeout_s * 1e9)))
                   for publisher in self.publishers.values())

    def play(self, stop: threading.Event | None = None,
             on_publish: Callable[[BagRecord, float], None] | None = None) -> ReplayStats:
        """Play the bag at its recorded pace until its end (or `stop`, when looping).

        Args:
            stop: Set it from another thread to end playback early.
            on_publish: Called after each publish with the record and `time.monotonic()`.

        Returns:
            Counts, loops, wall time and the worst scheduling lag.
        """
        stop = stop or threading.Event()
        opts = self.options
        begin_ns = self.info.start_ns + int(opts.start_offset * NANOSECONDS)
        stats = ReplayStats(published=dict.fromkeys(self.topics, 0))
        span_s = max(0.0, (self.info.end_ns - begin_ns) / NANOSECONDS)
        started = time.monotonic()
        with tqdm(total=round(span_s, 3), unit='s', desc=f'replay {self.path.name}',
                  disable=not opts.progress,
                  bar_format='{l_bar}{bar}| {n:.1f}/{total:.1f} s of bag [{elapsed}]') as bar:
            while not stop.is_set():
                stats.loops += 1
                bar.reset(total=round(span_s, 3))
                self._play_once(begin_ns, stop, stats, bar, on_publish)
                if not opts.loop:
                    break
        stats.wall_s = time.monotonic() - started
        return stats

    def _play_once(self, begin_ns: int, stop: threading.Event, stats: ReplayStats, bar: tqdm,
                   on_publish: Callable[[BagRecord, float], None] | None) -> None:
        wall0 = time.monotonic()
        with BagReader(self.path) as reader:
            for record in reader.records(self.topics, start_ns=begin_ns):
                due = wall0 + (record.time_ns - begin_ns) / NANOSECONDS / self.options.rate
                while (delay := due - time.monotonic()) > 0:
                    if stop.wait(min(delay, 0.1)):
                        return
                stats.max_lag_s = max(stats.max_lag_s, -delay)
                self.publish(record)
                stats.published[record.topic] += 1
                if on_publish is not None:
                    on_publish(record, time.monotonic())
                bar.update(round((record.time_ns - begin_ns) / NANOSECONDS - bar.n, 3))
                if stop.is_set():
                    return


def map_image_topics(options: ReplayOptions, bag: str | Path, camera: str | None,
                     tactile: list[str] | None, transport: str | None) -> None:
    """Publish a bag's image streams on the node's input topics (plus `options.topics`).

    Raises:
        BagError: The bag lacks a wanted topic.
    """
    with BagReader(bag) as reader:
        image_topics = resolve_image_topics(reader.info().topics, camera, tactile)
    options.remap = dict(zip(image_topics, node_topics(image_topics, transport)))
    options.topics = [*image_topics, *(options.topics or [])]


def build_parser() -> argparse.ArgumentParser:
    """Command-line interface of `convitac_replay`."""
    parser = argparse.ArgumentParser(
        prog='convitac_replay', description=__doc__.split('\n\n')[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument('bag', help='rosbag2 directory (mcap or sqlite3)')
    parser.add_argument('--rate', '-r', type=float, default=1.0, help='playback speed factor')
    parser.add_argument('--start-offset', type=float, default=0.0,
                        help='seconds into the bag to start at')
    parser.add_argument('--loop', '-l', action='store_true', help='repeat until interrupted')
    parser.add_argument('--clock', action='store_true',
                        help='publish /clock from the bag (for nodes with use_sim_time)')
    parser.add_argument('--topics', nargs='+', default=None, help='only these topics')
    parser.add_argument('--camera-topic', default=None, metavar='TOPIC',
                        help="camera topic in the bag, published on the node's camera/image_raw")
    parser.add_argument('--tactile-topic', action='append', default=None, metavar='TOPIC',
                        help="tactile topic in the bag (repeatable), published on the node's "
                        'tactile/image_raw, tactile_b/image_raw')
    parser.add_argument('--transport', choices=TRANSPORTS, default=None,
                        help="with mapped topics: the node's image_transport (default: as "
                        'recorded)')
    parser.add_argument('--wait-for-subscribers', type=float, default=2.0,
                        help='seconds to wait for subscribers of the image topics')
    parser.add_argument('--quiet', action='store_true', help='no progress bar')
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `convitac_replay`."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(remove_ros_args(argv))
    options = ReplayOptions(rate=args.rate, start_offset=args.start_offset, loop=args.loop,
                            clock=args.clock, topics=args.topics,
                            wait_for_subscribers=args.wait_for_subscribers,
                            progress=not args.quiet)
    use_fastdds_profile()  # a process publishing images must load it (see the README)
    rclpy.init(args=['convitac_replay', *argv])
    node = Node('convitac_replay')
    try:
        if args.camera_topic or args.tactile_topic or args.transport:
            map_image_topics(options, args.bag, args.camera_topic, args.tactile_topic,
                             args.transport)
        player = BagPlayer(node, args.bag, options)
        if not player.wait_for_subscribers():
            node.get_logger().warning('not every image topic has a subscriber; playing anyway')
        stats = player.play()
        if not player.flush():
            node.get_logger().warning('not every subscriber acknowledged the last messages')
        print(f'published {stats.total} messages in {stats.wall_s:.1f} s '
              f'({stats.loops} pass(es)), worst lag {stats.max_lag_s * 1e3:.1f} ms')
        return 0
    except (BagError, ValueError) as exc:
        print(f'convitac_replay: error: {exc}', file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print('interrupted', file=sys.stderr)
        return 0
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == '__main__':
    sys.exit(main())
