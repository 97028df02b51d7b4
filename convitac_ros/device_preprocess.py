"""The training preprocessing as torch ops, for frames that reach the device at received size.

`convitac_ros.preprocess.resize_frame` resizes with OpenCV: INTER_AREA when the frame is at least
the model's size on both sides (each output pixel is the area-weighted mean of the source pixels
it covers), INTER_LINEAR otherwise (half-pixel centres, edge pixels repeated). Both are separable
linear maps, so here each axis is one `(S, H)` weight matrix, built once per received size, and
a resize is two matrix products on the device (inside a captured CUDA graph where shapes are
fixed). The result is rounded to whole uint8 levels, as OpenCV's uint8 output is, before the
same `normalize_frames` runs.

Agreement with OpenCV (`test/test_device_preprocess.py`): at most 1 uint8 level per pixel (OpenCV
rounds its INTER_LINEAR weights to 11-bit fixed point and its INTER_AREA sums in float32), i.e.
at most 1/255/std ~= 0.0175 after normalisation with the ImageNet std.
"""

from __future__ import annotations

from collections.abc import Sequence
import math

import numpy as np
import torch

from convitac_ros.preprocess import normalize_frames
from convitac_ros.staging import InputSpec, SizeGroup

TOLERANCE_LEVELS = 1  # largest |device - OpenCV| in uint8 levels (see the module docstring)


def area_weights(source: int, target: int) -> np.ndarray:
    """INTER_AREA weights of one axis shrunk from `source` to `target` pixels.

    Output pixel i covers the source interval `[i * r, (i + 1) * r)` with `r = source / target`;
    each source pixel weighs the length of its overlap with it, divided by `r`.

    Returns:
        float64 `(target, source)`; each row sums to 1.
    """
    if source < target:
        raise ValueError(f'area weights shrink only: {source} -> {target}')
    ratio = source / target
    weights = np.zeros((target, source))
    for row in range(target):
        start, end = row * ratio, (row + 1) * ratio
        for column in range(int(math.floor(start)), min(source, int(math.ceil(end)))):
            weights[row, column] = (min(end, column + 1) - max(start, column)) / ratio
    return weights


def linear_weights(source: int, target: int) -> np.ndarray:
    """INTER_LINEAR weights of one axis resized from `source` to `target` pixels.

    Output pixel i samples the source at `(i + 0.5) * source / target - 0.5` between its two
    neighbours; positions before the first or after the last pixel take that pixel.

    Returns:
        float64 `(target, source)`; each row sums to 1.
    """
    weights = np.zeros((target, source))
    scale = source / target
    for row in range(target):
        position = (row + 0.5) * scale - 0.5
        left = math.floor(position)
        fraction = position - left
        if left < 0:
            left, fraction = 0, 0.0
        if left >= source - 1:
            left, fraction = source - 1, 0.0
        weights[row, left] += 1.0 - fraction
        if fraction:
            weights[row, left + 1] += fraction
    return weights


def resize_weights(height: int, width: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The `(S, H)` and `(S, W)` weights of `resize_frame`'s choice for an `(H, W)` frame.

    INTER_AREA when both sides are at least S, else INTER_LINEAR on both axes (as OpenCV).
    """
    weights = area_weights if height >= size and width >= size else linear_weights
    return weights(height, size), weights(width, size)


class DeviceResize:
    """Resizes uint8 frame groups of any received sizes on one device, as the training does.

    The weight matrices of each received size are made once and kept (a few hundred kB per
    size; bounded by the caller's number of distinct sizes).

    Args:
        spec: the model's input spec (S, mean, std).
        device: where the frames and the weights live.
    """

    def __init__(self, spec: InputSpec, device: torch.device) -> None:
        self.spec = spec
        self.device = device
        self.mean = torch.tensor(spec.mean, dtype=torch.float32, device=device)
        self.std = torch.tensor(spec.std, dtype=torch.float32, device=device)
        self._weights: dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor]] = {}
        # Made before a CUDA graph captures them: a host-to-device copy cannot be captured.
        self._positions: dict[tuple[int, ...], torch.Tensor] = {}

    def weights(self, size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        """The float32 `(S, H)` and `(S, W)` weights for frames of `size` (H, W), cached."""
        if size not in self._weights:
            rows, columns = resize_weights(*size, self.spec.image_size)
            self._weights[size] = (
                torch.as_tensor(rows, dtype=torch.float32, device=self.device),
                torch.as_tensor(columns, dtype=torch.float32, device=self.device))
        return self._weights[size]

    def resize(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 `(G, H, W, 3)` on the device -> float32 `(G, S, S, 3)`, whole uint8 levels.

        A frame already at `(S, S)` is taken as it is (as `resize_frame` does).
        """
        height, width = frames.shape[1:3]
        size = self.spec.image_size
        if height == size and width == size:
            return frames.float()
        rows, columns = self.weights((height, width))
        pixels = frames.float()
        # Rows first: (S, H) @ (G, H, W*3) -> (G, S, W*3); then columns on each row's (W, 3).
        pixels = torch.matmul(rows, pixels.reshape(len(frames), height, width * 3))
        pixels = torch.matmul(columns, pixels.reshape(len(frames), size, width, 3))
        return pixels.round_().clamp_(0.0, 255.0)

    def staged(self, groups: Sequence[SizeGroup], inputs: Sequence[torch.Tensor], count: int
               ) -> torch.Tensor:
        """Resize every group and assemble the normalised batch.

        Args:
            groups: the staged size groups (positions in the flat staging order).
            inputs: each group's uint8 `(G, H, W, 3)` frames, already on the device.
            count: N * (T_v + S_t*T_t), the frames of the batch.

        Returns:
            float32 `(N * (T_v + S_t*T_t), 3, S, S)` normalised (channels-last memory layout).
        """
        size = self.spec.image_size
        out = torch.empty((count, size, size, 3), dtype=torch.float32, device=self.device)
        for group, frames in zip(groups, inputs):
            positions = self._positions.get(group.positions)
            if positions is None:
                positions = torch.as_tensor(group.positions, device=self.device)
                self._positions[group.positions] = positions
            out.index_copy_(0, positions, self.resize(frames))
        return normalize_frames(out / 255.0, self.mean, self.std)
