"""Reading and writing rosbag2 bags (mcap and sqlite3) with the `rosbags` library.

Messages travel as the CDR bytes that `rclpy.serialization` produces and consumes; `rosbags`
stores them unchanged, so a bag written here replays byte for byte and a bag recorded by
`ros2 bag record` reads here. Every failure to open or read a bag becomes a `BagError` that names
the bag, never a traceback from deep inside the storage plugin.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
import importlib
import json
from pathlib import Path
import shutil
import sqlite3
from types import TracebackType
from typing import Any

from rclpy.serialization import deserialize_message, serialize_message
from rosbags.rosbag2 import Reader, StoragePlugin, Writer
from rosbags.typesys import get_typestore, Stores

from convitac_ros.ros.topics import COMPRESSED_SUFFIX  # noqa: F401 - also for the bag tools

GROUND_TRUTH_PREFIX = 'ground_truth/'
STORAGE_PLUGINS = {'mcap': StoragePlugin.MCAP, 'sqlite3': StoragePlugin.SQLITE3}
# Bag metadata key (rosbag2 `custom_data`) holding the writer's description of the bag.
LAYOUT_KEY = 'convitac.layout'
# rosbag2 metadata version 8, not 9: version 9 (rosbag2 PR 1476, Jazzy) writes each topic's
# `offered_qos_profiles` as a YAML list, which Humble's and Iron's readers parse as a string and
# refuse ("yaml-cpp: bad conversion"); version 8 writes the same profiles as one YAML string, the
# form Humble and Iron parse, and Jazzy and Kilted still read it (rosbag2 reads every older
# version). Nothing this package stores needs version 9.
BAG_VERSION = 8


class BagError(RuntimeError):
    """A bag is missing, unreadable, corrupt, or lacks what a tool needs from it."""


@dataclass(frozen=True)
class BagRecord:
    """One stored message.

    Attributes:
        topic: Topic name as stored (relative names stay relative).
        msgtype: ROS type name, e.g. `sensor_msgs/msg/Image`.
        time_ns: Receive (log) time in the bag, integer nanoseconds.
        raw: CDR-serialized message bytes.
    """

    topic: str
    msgtype: str
    time_ns: int
    raw: bytes

    def decode(self) -> Any:
        """Deserialize into the rclpy message class of `msgtype`."""
        return deserialize_message(self.raw, message_class(self.msgtype))


def message_class(msgtype: str) -> type:
    """Return the rclpy message class for a ROS type name.

    Args:
        msgtype: `pkg/msg/Name` (or `pkg/Name`).

    Raises:
        BagError: The message package is not installed.
    """
    parts = msgtype.split('/')
    package, name = parts[0], parts[-1]
    try:
        return getattr(importlib.import_module(f'{package}.msg'), name)
    except (ImportError, AttributeError) as exc:
        raise BagError(f'message type {msgtype} is not available in this environment') from exc


def msgtype_of(msg: Any) -> str:
    """Return the ROS type name (`pkg/msg/Name`) of an rclpy message instance."""
    cls = type(msg)
    return f'{cls.__module__.split(".")[0]}/msg/{cls.__name__}'


class BagWriter:
    """Write rclpy messages into a new rosbag2 bag; one connection per topic, made on first use.

    Use as a context manager; on an exception the partial bag is removed.

    Args:
        path: Bag directory to create (must not exist).
        storage: `mcap` (default) or `sqlite3`.
        layout: JSON-serializable description stored in the bag metadata under `LAYOUT_KEY`.
    """

    def __init__(self, path: str | Path, storage: str = 'mcap',
                 layout: dict[str, Any] | None = None) -> None:
        if storage not in STORAGE_PLUGINS:
            raise BagError(f'unknown storage {storage!r}; choose one of {sorted(STORAGE_PLUGINS)}')
        self.path = Path(path)
        if self.path.exists():
            raise BagError(f'{self.path} exists already; bags are never overwritten')
        self._writer = Writer(self.path, version=BAG_VERSION,
                              storage_plugin=STORAGE_PLUGINS[storage])
        if layout is not None:
            self._writer.set_custom_data(LAYOUT_KEY, json.dumps(layout))
        self._typestore = get_typestore(Stores.ROS2_JAZZY)
        self._connections: dict[str, Any] = {}
        self.count = 0

    def __enter__(self) -> BagWriter:
        try:
            self._writer.open()  # creates the folder exclusively: one that appeared is refused
        except Exception as exc:  # noqa: BLE001 - rosbags' WriterError and OSErrors alike
            raise BagError(f'cannot create the bag {self.path}: {exc}') from None
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is None:
            self._writer.close()
        else:
            self._writer.abort()
            shutil.rmtree(self.path, ignore_errors=True)

    def write(self, topic: str, time_ns: int, msg: Any) -> None:
        """Serialize `msg` with rclpy and store it on `topic` at log time `time_ns`."""
        connection = self._connections.get(topic)
        if connection is None:
            connection = self._writer.add_connection(topic, msgtype_of(msg),
                                                     typestore=self._typestore)
            self._connections[topic] = connection
        self._writer.write(connection, int(time_ns), serialize_message(msg))
        self.count += 1


@dataclass
class BagInfo:
    """What a bag holds.

    Attributes:
        path: The bag.
        topics: Topic -> (msgtype, message count).
        start_ns: First log time; `end_ns` the last.
        layout: The writer's layout description (`{}` for bags from other writers).
    """

    path: Path
    topics: dict[str, tuple[str, int]]
    start_ns: int
    end_ns: int
    layout: dict[str, Any]

    @property
    def message_count(self) -> int:
        """Total number of messages."""
        return sum(count for _, count in self.topics.values())


class BagReader:
    """Read a rosbag2 bag with clear errors; use as a context manager.

    Args:
        path: Bag directory (or a single `.mcap` / `.db3` file).

    Raises:
        BagError: On entering, when the bag is missing, corrupt or in an unknown format.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._reader: Reader | None = None

    def __enter__(self) -> BagReader:
        if not self.path.exists():
            raise BagError(f'bag {self.path} does not exist')
        try:
            self._reader = Reader(self.path)
            self._reader.open()
        except Exception as exc:  # noqa: BLE001 - every storage failure gets one clear message
            self._reader = None
            raise BagError(f'cannot open bag {self.path}: {exc}') from exc
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._reader is not None and self._reader.is_open:
            self._reader.close()

    @property
    def reader(self) -> Reader:
        """The open `rosbags` reader."""
        if self._reader is None:
            raise BagError(f'bag {self.path} is not open')
        return self._reader

    def info(self) -> BagInfo:
        """Describe topics, time range and layout."""
        reader = self.reader
        topics = {name: (info.msgtype or '?', info.msgcount)
                  for name, info in reader.topics.items()}
        custom = getattr(getattr(reader.storage, 'metadata', None), 'custom', None) or {}
        try:
            layout = json.loads(custom.get(LAYOUT_KEY, '{}'))
        except json.JSONDecodeError as exc:
            raise BagError(f'bag {self.path}: unreadable {LAYOUT_KEY} metadata: {exc}') from exc
        return BagInfo(self.path, topics, reader.start_time, reader.end_time, layout)

    def records(self, topics: Iterable[str] | None = None,
                start_ns: int | None = None) -> Iterator[BagRecord]:
        """Yield the stored messages in log-time order.

        Args:
            topics: Only these topics (all when None).
            start_ns: Only messages logged at or after this time.

        Raises:
            BagError: The storage is corrupt (also raised mid-iteration).
        """
        reader = self.reader
        wanted = None if topics is None else set(topics)
        connections = [c for c in reader.connections if wanted is None or c.topic in wanted]
        if not connections:
            return
        try:
            for connection, time_ns, raw in reader.messages(connections, start=start_ns):
                yield BagRecord(connection.topic, connection.msgtype, time_ns, bytes(raw))
        except (sqlite3.Error, OSError, ValueError, KeyError, IndexError, EOFError) as exc:
            raise BagError(f'bag {self.path} is corrupt: {exc}') from exc
        except Exception as exc:  # noqa: BLE001 - storage plugins raise their own error types
            if type(exc).__module__.startswith(('rosbags', 'mcap', 'zstandard', 'lz4')):
                raise BagError(f'bag {self.path} is corrupt: {exc}') from exc
            raise


def read_records(path: str | Path, topics: Iterable[str] | None = None) -> list[BagRecord]:
    """Read a whole bag (or some topics of it) into memory, in log-time order."""
    with BagReader(path) as bag:
        return list(bag.records(topics))
