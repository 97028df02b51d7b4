"""What both world designs share: the material record, the gel grid and small image helpers."""

from dataclasses import dataclass

import cv2
import numpy as np

GEL_ROWS, GEL_COLS = 160, 106  # deformation map: 30 mm (gel height) x 20 mm (gel width)
GEL_MM_PER_PX = 30.0 / GEL_ROWS
CAMERA_ROWS, CAMERA_COLS = 120, 160


@dataclass(frozen=True)
class Material:
    """A material class of a world.

    The name is a Touch and Go class, so the dataset's hard/soft rule (by name) gives `soft`;
    `rough` is what the rough lists say (1 = rough).
    """

    name: str
    soft: bool
    rough: bool
    description: str


def smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma_px: float) -> np.ndarray:
    """Gaussian-filtered white noise scaled to unit standard deviation: float32 `shape`."""
    noise = cv2.GaussianBlur(rng.standard_normal(shape).astype(np.float32), (0, 0), sigma_px)
    return noise / (noise.std() + 1e-6)


def rotated_grid(shape: tuple[int, int], mm_per_px: float, angle: float,
                 centre: tuple[float, float] = (0.0, 0.0)) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates (u, v) in mm of every pixel, rotated by `angle` (radians) about `centre`.

    Returns:
        u, v: float32 `shape`; u runs along the direction `angle` from the column axis.
    """
    rows, cols = np.mgrid[0:shape[0], 0:shape[1]].astype(np.float32)
    x = (cols - centre[1]) * mm_per_px
    y = (rows - centre[0]) * mm_per_px
    cos, sin = np.cos(angle), np.sin(angle)
    return x * cos + y * sin, -x * sin + y * cos


def jitter_colour(rng: np.random.Generator, colour: tuple[float, float, float],
                  spread: float) -> np.ndarray:
    """`colour` (RGB 0..1) with a random brightness and a per-channel shift."""
    rgb = np.array(colour, np.float32) * rng.uniform(1 - spread, 1 + spread)
    return np.clip(rgb + rng.normal(0.0, spread / 3, 3), 0.0, 1.0).astype(np.float32)


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Float RGB in 0..1 -> uint8."""
    return (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
