"""The one deterministic preprocessing of frames: training validation, Predictor, node, ONNX.

Check every uint8 RGB frame, resize it with OpenCV (INTER_AREA when shrinking, which averages
instead of aliasing; INTER_LINEAR when enlarging; a frame already at the model's size is taken
as it is, so a frame is resized once however often it is passed on), stack into one uint8
array, convert to a tensor once, then scale to [0, 1] and normalise with the checkpoint's mean
and std. Training validation (`collate_samples` without augmentation), the Predictor and the
node all go through `resize_frames` + `normalize_frames`, so they see identical numbers; an
exported ONNX graph normalises inside the graph with the same formula.

No ROS here, and no torch at import: the onnxruntime backend uses the uint8 half alone, and
only `normalize_frames` / `preprocess_frames` need torch (imported when called).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TYPE_CHECKING

import cv2
import numpy as np

if TYPE_CHECKING:
    import torch

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
VisualFrames = Sequence[np.ndarray]
TactileFrames = Sequence[Sequence[np.ndarray]]


def check_frame(frame: Any, what: str = 'frame') -> None:
    """Raise ValueError unless `frame` is a uint8 `(H, W, 3)` numpy array with H, W >= 1."""
    if not isinstance(frame, np.ndarray):
        raise ValueError(f'{what} must be a numpy array, got {type(frame).__name__}')
    if frame.dtype != np.uint8:
        raise ValueError(f'{what} must be uint8, got {frame.dtype}')
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.shape[0] < 1 or frame.shape[1] < 1:
        raise ValueError(f'{what} must be (H, W, 3) RGB, got shape {frame.shape}')


def resize_frame(frame: np.ndarray, image_size: int, out: np.ndarray | None = None,
                 crop: tuple[float, float, float, float] | None = None) -> np.ndarray:
    """Resize (and optionally crop) one uint8 frame to `(S, S, 3)`.

    Args:
        frame: uint8 `(H, W, 3)`.
        image_size: S.
        out: optional contiguous uint8 `(S, S, 3)` destination (e.g. a pinned buffer view).
        crop: optional (top, left, height, width) as fractions of the frame.

    Returns:
        uint8 `(S, S, 3)` (`out` when given).
    """
    check_frame(frame)
    if crop is not None:
        height, width = frame.shape[:2]
        top, left = int(crop[0] * height), int(crop[1] * width)
        frame = frame[top:top + max(1, round(crop[2] * height)),
                      left:left + max(1, round(crop[3] * width))]
    if frame.shape[0] == image_size and frame.shape[1] == image_size:  # resized once already
        if out is None:
            return frame
        out[...] = frame
        return out
    shrinking = frame.shape[0] >= image_size and frame.shape[1] >= image_size
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    if out is None:
        return cv2.resize(frame, (image_size, image_size), interpolation=interpolation)
    cv2.resize(frame, (image_size, image_size), dst=out, interpolation=interpolation)
    return out


def resize_frames(frames: Sequence[np.ndarray], image_size: int,
                  out: np.ndarray | None = None) -> np.ndarray:
    """Resize frames of any sizes into one uint8 array `(T, S, S, 3)` (written into `out`)."""
    if out is None:
        out = np.empty((len(frames), image_size, image_size, 3), dtype=np.uint8)
    for index, frame in enumerate(frames):
        resize_frame(frame, image_size, out=out[index])
    return out


def sample_frames(visual: VisualFrames, tactile: TactileFrames, visual_len: int,
                  tactile_len: int, num_tactile: int, index: int = 0) -> list[np.ndarray]:
    """Check one sample's frames and list them in staging order (visual, then sensor-major).

    Args:
        visual: T_v uint8 `(H, W, 3)` RGB frames.
        tactile: S lists of T_t uint8 `(H, W, 3)` RGB frames.
        visual_len: T_v expected.
        tactile_len: T_t expected.
        num_tactile: S expected.
        index: the sample's position in a batch, named in errors when not 0.

    Returns:
        The T_v + S*T_t frames.

    Raises:
        ValueError: wrong number of frames or sensors, or a frame that is not uint8 RGB.
    """
    where = f'sample {index}: ' if index else ''
    if len(visual) != visual_len:
        raise ValueError(f'{where}expected {visual_len} visual frames, got {len(visual)}')
    if len(tactile) != num_tactile:
        raise ValueError(f'{where}expected {num_tactile} tactile sensor(s), got {len(tactile)}')
    for sensor, frames in enumerate(tactile):
        if len(frames) != tactile_len:
            raise ValueError(f'{where}expected {tactile_len} frames from tactile sensor '
                             f'{sensor}, got {len(frames)}')
    for position, frame in enumerate(visual):
        check_frame(frame, f'{where}visual frame {position}')
    for sensor, frames in enumerate(tactile):
        for position, frame in enumerate(frames):
            check_frame(frame, f'{where}tactile sensor {sensor} frame {position}')
    return [*visual, *(frame for frames in tactile for frame in frames)]


def warm_up(predictor: Any, iterations: int = 3, batch_size: int = 1) -> None:
    """Run a predictor on blank frames of its own size, so that its first real call is not slow.

    Args:
        predictor: A `Predictor` or `OnnxPredictor` (anything with their `predict`,
            `predict_batch`, `image_size`, `visual_len`, `tactile_len` and `num_tactile`).
        iterations: Dummy predictions.
        batch_size: Also run `predict_batch` at this size when above 1.
    """
    frame = np.zeros((predictor.image_size, predictor.image_size, 3), dtype=np.uint8)
    sample = ([frame] * predictor.visual_len,
              [[frame] * predictor.tactile_len] * predictor.num_tactile)
    for _ in range(iterations):
        predictor.predict(*sample)
        if batch_size > 1:
            predictor.predict_batch([sample] * batch_size)


def normalize_frames(frames: torch.Tensor, mean: Sequence[float] | torch.Tensor,
                     std: Sequence[float] | torch.Tensor) -> torch.Tensor:
    """Turn uint8 (or [0, 1] float) channels-last frames into normalised channels-first floats.

    Args:
        frames: `(..., S, S, 3)` uint8, or float already scaled to [0, 1].
        mean: per-channel RGB mean (in [0, 1] units).
        std: per-channel RGB std.

    Returns:
        float32 `(..., 3, S, S)` on the device of `frames`.
    """
    import torch

    scaled = frames.float() / 255.0 if frames.dtype == torch.uint8 else frames.float()
    # as_tensor is free for tensors already on the device (the Predictor passes those, which
    # also keeps this function capturable in a CUDA graph).
    mean_t = torch.as_tensor(mean, dtype=torch.float32, device=frames.device)
    std_t = torch.as_tensor(std, dtype=torch.float32, device=frames.device)
    # Non-negative dims: the ONNX exporter writes negative ones into Transpose's perm as is.
    return ((scaled - mean_t) / std_t).movedim(frames.ndim - 1, frames.ndim - 3)


def preprocess_frames(frames: Sequence[np.ndarray], image_size: int, mean: Sequence[float],
                      std: Sequence[float]) -> torch.Tensor:
    """Apply the deterministic eval transform to uint8 RGB frames of any sizes.

    Args:
        frames: T uint8 `(H, W, 3)` RGB arrays.
        image_size: S.
        mean: per-channel RGB mean.
        std: per-channel RGB std.

    Returns:
        float32 `(T, 3, S, S)`.
    """
    import torch

    return normalize_frames(torch.from_numpy(resize_frames(frames, image_size)), mean, std)
