"""The ``convitac/debug_image`` picture: camera and tactile frames side by side, predictions drawn.

Pure NumPy/OpenCV (no rclpy), so it is tested on plain arrays.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

PANEL_HEIGHT = 240
TEXT_LINE = 22
ATTENTION_ALPHA = 0.45


def _panel(frame: np.ndarray, attention: np.ndarray | None) -> np.ndarray:
    """Resize a frame to PANEL_HEIGHT, blending a [0, 1] attention map as a heat map."""
    height, width = frame.shape[:2]
    size = (max(1, round(width * PANEL_HEIGHT / height)), PANEL_HEIGHT)
    panel = cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
    if attention is not None:
        heat = cv2.resize((np.clip(attention, 0, 1) * 255).astype(np.uint8), size)
        heat = cv2.cvtColor(cv2.applyColorMap(heat, cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)
        panel = cv2.addWeighted(panel, 1 - ATTENTION_ALPHA, heat, ATTENTION_ALPHA, 0)
    return panel


def render_debug_image(frames: Sequence[np.ndarray], heads: dict[str, list[str]],
                       probabilities: dict[str, np.ndarray],
                       attention: Sequence[np.ndarray | None] | None = None) -> np.ndarray:
    """Compose the debug picture.

    Args:
        frames: The newest camera frame, then the newest frame of each tactile sensor; uint8
            (H, W, 3) RGB of any sizes.
        heads: head -> class names.
        probabilities: head -> (C,) probabilities.
        attention: Optional (H, W) maps in [0, 1], one per frame (None entries allowed).

    Returns:
        uint8 (PANEL_HEIGHT + text, W_total, 3) RGB: the frames in a row above one text line
        per head (``head: label p``).
    """
    attention = attention or [None] * len(frames)
    row = np.concatenate([_panel(f, a) for f, a in zip(frames, attention)], axis=1)
    text = np.zeros((TEXT_LINE * len(heads) + 8, row.shape[1], 3), np.uint8)
    for line, (head, classes) in enumerate(heads.items()):
        probs = probabilities[head]
        best = int(np.argmax(probs))
        cv2.putText(text, f'{head}: {classes[best]} {float(probs[best]):.2f}',
                    (6, TEXT_LINE * (line + 1)), cv2.FONT_HERSHEY_SIMPLEX, 0.6,
                    (255, 255, 255), 1, cv2.LINE_AA)
    return np.ascontiguousarray(np.concatenate([row, text], axis=0))
