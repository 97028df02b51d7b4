"""Contact state: whether the tactile frames differ from a no-contact reference.

A GelSight-type sensor's image is almost constant while nothing touches the gel and changes
where something presses into it. The reference is the first tactile frames the node sees after
activation (the gripper open), or the next ones after :meth:`ContactDetector.request_reference`
(the node's ``~/reset_contact_reference`` service). No rclpy import.

This is the project's one definition of contact: the node's ``convitac/contact`` and
``convitac_label``'s contact episodes (`convitac_ros.bags.contact_episodes`, which runs a
`ContactDetector` over a recording's frame sets as the node would see them) both come from
:meth:`ContactDetector.update_thumbnails`: a frame set is in contact when, for any sensor, the
95th percentile of the absolute grey-level differences of its 32x32 thumbnail from the
reference exceeds the threshold (the node's ``contact_threshold``). A contact changes a patch of
the gel, not all of it, so a high percentile separates a light or partial touch from sensor
noise better than the mean (on the synthetic touch world, light touches move the mean by less
than a grey level above the noise). The first set is the reference and is never in contact.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
import threading

import cv2
import numpy as np

THUMBNAIL = 32  # frames are compared as 32x32 grey thumbnails: size-independent, cheap
# The node's default contact_threshold (grey levels); convitac_make_dataset finds contact with it.
CONTACT_THRESHOLD = 6.0
PERCENTILE = 95  # of a thumbnail's absolute differences: a patch, not the whole gel, changes


@dataclass(frozen=True)
class ContactState:
    """The contact state of one result.

    Attributes:
        in_contact: True when any sensor's score exceeds the threshold; False while the
            reference is being taken.
        score: The largest per-sensor 95th percentile of the absolute differences from the
            reference (grey levels, 0-255).
        reference_taken: True for the result whose frames just became the reference.
    """

    in_contact: bool
    score: float
    reference_taken: bool = False


def thumbnail(frame: np.ndarray) -> np.ndarray:
    """Makes a uint8 (H, W, 3) RGB frame a float32 (32, 32) grey image, not rounded."""
    grey = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY).astype(np.float32)
    return cv2.resize(grey, (THUMBNAIL, THUMBNAIL), interpolation=cv2.INTER_AREA)


class ContactDetector:
    """Scores tactile frames against a no-contact reference (thread-safe)."""

    def __init__(self) -> None:
        """Start without a reference: the first frames scored become it."""
        self._lock = threading.Lock()
        self._reference: list[np.ndarray] | None = None

    def request_reference(self) -> None:
        """Make the next scored frames the new no-contact reference."""
        with self._lock:
            self._reference = None

    def update(self, tactile: Sequence[np.ndarray], threshold: float) -> ContactState:
        """Score the newest frame of every tactile sensor.

        Args:
            tactile: One uint8 (H, W, 3) RGB frame per sensor, any size.
            threshold: Contact when a score exceeds this (grey levels).

        Returns:
            The state; the frames become the reference when there is none (not in contact).
        """
        return self.update_thumbnails([thumbnail(frame) for frame in tactile], threshold)

    def update_thumbnails(self, thumbnails: Sequence[np.ndarray], threshold: float
                          ) -> ContactState:
        """:meth:`update` of frames already reduced by :func:`thumbnail` (one per sensor)."""
        with self._lock:
            reference = self._reference
            if reference is None or len(reference) != len(thumbnails):
                self._reference = list(thumbnails)
                return ContactState(in_contact=False, score=0.0, reference_taken=True)
        score = max(float(np.percentile(np.abs(t - r), PERCENTILE))
                    for t, r in zip(thumbnails, reference))
        return ContactState(in_contact=score > threshold, score=score)
