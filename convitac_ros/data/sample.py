"""The one sample structure that every dataset yields, and the standard head class names."""

from dataclasses import dataclass, field
from typing import Any

import numpy as np

MISSING_LABEL = -1
"""Label value of a head whose ground truth is unknown for a sample (masked out of the loss)."""

HARDNESS_CLASSES = ['hard', 'soft']
ROUGHNESS_CLASSES = ['smooth', 'rough']
GRASP_CLASSES = ['failure', 'success']


@dataclass
class Sample:
    """One visual-tactile example.

    Attributes:
        visual: T_v camera frames, oldest first, each uint8 RGB of shape (H, W, 3).
        tactile: S sensors x T_t frames, oldest first, each uint8 RGB of shape (H, W, 3).
            Sizes may differ between the camera and the sensors.
        labels: Head name -> class index, `MISSING_LABEL` when the ground truth is unknown.
        meta: Provenance (dataset, session/frame or file/trial, object name, ...).
    """

    visual: list[np.ndarray]
    tactile: list[list[np.ndarray]]
    labels: dict[str, int]
    meta: dict[str, Any] = field(default_factory=dict)
