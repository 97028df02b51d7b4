"""The load side of the node benchmark: a client that publishes image sets at a fixed rate.

The client publishes camera/tactile sets with a shared stamp at a fixed rate and matches each
``~/result`` (whose JSON carries the input stamp) to the moment its set was published. It is a
:class:`convitac_ros.ros.node_client.NodeClient`, which takes the results on a thread waiting on
that subscription alone, so the instrument adds as little as it can to what it measures.
"""

from __future__ import annotations

from collections.abc import Callable
import dataclasses
import time
from typing import Any

import numpy as np

from convitac_ros.ros.image_messages import compressed_message, image_message
from convitac_ros.ros.node_client import NodeClient
from convitac_ros.ros.topics import NODE_NAME


@dataclasses.dataclass
class Sent:
    """One published set: its stamp and when its last message was published (monotonic ns).

    The node cannot start before the set is complete, so the clock starts right before the
    publication of the last message of the set.
    """

    stamp_ns: int
    sent_ns: int


class Client(NodeClient):
    """Publishes image sets into the node at a rate and collects its results and diagnostics.

    Args:
        frame_sizes: (height, width) of the images of each input topic.
        reliable: publish with RELIABLE QoS (the node must subscribe reliably too to benefit)
            instead of BEST_EFFORT.
        node_name: name of the node under test.
        compressed: publish JPEG sensor_msgs/CompressedImage on ``<topic>/compressed`` (of a
            smooth synthetic scene, so the JPEG has a realistic size).
    """

    def __init__(self, frame_sizes: list[tuple[int, int]], reliable: bool = False,
                 node_name: str = NODE_NAME, compressed: bool = False) -> None:
        super().__init__(f'/{node_name}', inputs=len(frame_sizes), compressed=compressed,
                         reliable=reliable, depth=5, name='convitac_benchmark')
        if compressed:
            self._messages = [compressed_message(smooth_scene(h, w, seed),
                                                 frame_id=f'bench_{seed}')
                              for seed, (h, w) in enumerate(frame_sizes)]
        else:  # random pixels: the content does not change the timing of raw images
            self._messages = [image_message(np.random.default_rng(seed).integers(
                0, 256, (h, w, 3), dtype=np.uint8), frame_id=f'bench_{seed}')
                for seed, (h, w) in enumerate(frame_sizes)]
        self.message_bytes = [len(message.data) for message in self._messages]

    @property
    def diagnostics(self) -> dict[str, str]:
        """The node's newest /diagnostics values (empty before the first)."""
        return self.newest_values() or {}

    def wait_result(self, stamp_ns: int, deadline: float) -> bool:
        """Wait until the result for ``stamp_ns`` is in, or ``deadline`` (perf_counter s)."""
        return self.wait_for(stamp_ns, deadline - time.perf_counter()) is not None

    def publish_pair(self) -> Sent:
        """Publish one camera/tactile set with a shared stamp (the current wall time)."""
        stamp_ns = time.time_ns()
        for message in self._messages:
            message.header.stamp.sec, message.header.stamp.nanosec = divmod(stamp_ns, 10**9)
        for publisher, message in zip(self.publishers[:-1], self._messages):
            publisher.publish(message)
        sent_ns = time.monotonic_ns()
        self.publishers[-1].publish(self._messages[-1])
        return Sent(stamp_ns, sent_ns)

    def run_rate(self, rate_hz: float, duration_s: float,
                 between: Callable[[Sent, float], None] | None = None) -> list[Sent]:
        """Publish sets at ``rate_hz`` for ``duration_s``; never bursts to catch up.

        Args:
            rate_hz: target sets per second.
            duration_s: how long to publish.
            between: called after each set with the set and the time (perf_counter s) of the
                next publication, to do measured work in the idle gap.

        Returns:
            Every set sent, in order.
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
        """The sets that got a result: (set, receive time in monotonic ns, result payload)."""
        with self._lock:
            return [(item, round(self.answers[item.stamp_ns].received * 1e9),
                     self.answers[item.stamp_ns].payload)
                    for item in sent if item.stamp_ns in self.answers]

    @staticmethod
    def settle(seconds: float) -> None:
        """Wait for late results (publishing nothing)."""
        time.sleep(seconds)


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
