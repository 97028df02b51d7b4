"""File access shared by the dataset loaders: images, JSON, and error messages that name files."""

from collections.abc import Sequence
import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np


class DataError(ValueError):
    """A dataset that cannot be used as it is on disk (the text names the file or folder)."""


def require_root(root: str | Path, dataset: str) -> Path:
    """Return `root` as a Path, or raise when it is not an existing directory.

    Raises:
        FileNotFoundError: naming the missing directory and the dataset expected there.
    """
    path = Path(root).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(f'{dataset} root directory not found: {path}')
    return path


def require_split(split: str, available: Sequence[str], dataset: str) -> None:
    """Raise a ValueError listing the valid splits when `split` is not one of them."""
    if split not in available:
        raise ValueError(
            f'unknown {dataset} split {split!r}; expected one of {", ".join(available)}')


def read_image(path: Path) -> np.ndarray:
    """Decode an image file into RGB uint8.

    Args:
        path: Image file (any format OpenCV reads; grayscale is expanded to 3 channels).

    Returns:
        uint8 array of shape (H, W, 3), RGB.

    Raises:
        FileNotFoundError: when the file does not exist.
        DataError: when the file cannot be decoded (corrupt or not an image).
    """
    if not path.is_file():
        raise FileNotFoundError(f'image file not found: {path}')
    data = np.fromfile(str(path), dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        raise DataError(f'cannot decode image (corrupt or not an image): {path}')
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def read_json(path: Path) -> Any:
    """Load a JSON file, raising errors that name it."""
    if not path.is_file():
        raise FileNotFoundError(f'file not found: {path}')
    try:
        return json.loads(path.read_text(encoding='utf-8'))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f'invalid JSON in {path}: {error}') from error


def as_rgb_frame(array: np.ndarray, where: str) -> np.ndarray:
    """Check that an array is an RGB uint8 frame (H, W, 3) and return it contiguous.

    Raises:
        ValueError: naming `where` (file and dataset path) when the shape or dtype is wrong.
    """
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(
            f'expected a uint8 (H, W, 3) image at {where}, got {array.dtype} {array.shape}')
    return np.ascontiguousarray(array)
