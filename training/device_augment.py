"""Training augmentation as batched torch ops on the training device (with `data.frame_cache`).

`FrameAugmentation` (convitac_ros.data.transforms) augments one frame stream at a time on the
CPU, in the DataLoader workers. Here the collate only draws the same random numbers, in the same
order, from the batch's seed and stacks the uint8 frames at the model's side S; the batch then
goes to the device as uint8 and is cropped, flipped, resized and colour-jittered there for all
streams at once: a crop-and-resize is one batched matrix product per axis (OpenCV's INTER_LINEAR
weights of each stream's crop, the flip folded into them), the colour changes are per-stream
scalars. It equals `FrameAugmentation` applied to the same S-sized frames within one uint8 level
before the colour changes (OpenCV's fixed-point weights; `test/test_device_augment.py`).
"""

from __future__ import annotations

from collections.abc import Sequence
import dataclasses
from typing import Any

import numpy as np
import torch

from convitac_ros.data.transforms import _stack_labels, FrameAugmentation
from convitac_ros.preprocess import normalize_frames, resize_frame

_LUMA = (0.299, 0.587, 0.114)


@dataclasses.dataclass
class StreamDraws:
    """What `FrameAugmentation` draws for each of N streams (one crop, flip, colour per stream).

    Attributes:
        crops: float64 `(N, 4)` (top, left, height, width) as fractions of the frame.
        flips, grays: bool `(N,)`.
        brightness, contrast, saturation: float64 `(N,)` factors.
    """

    crops: np.ndarray
    flips: np.ndarray
    brightness: np.ndarray
    contrast: np.ndarray
    saturation: np.ndarray
    grays: np.ndarray


def draw_streams(augment: FrameAugmentation, count: int, rng: np.random.Generator
                 ) -> StreamDraws:
    """Draw `count` streams' parameters in `FrameAugmentation.__call__`'s order."""
    rows = []
    for _ in range(count):
        crop = augment.sample_crop(rng)
        flip = rng.random() < augment.hflip
        brightness = rng.uniform(1 - augment.brightness, 1 + augment.brightness)
        contrast = rng.uniform(1 - augment.contrast, 1 + augment.contrast)
        saturation = rng.uniform(1 - augment.saturation, 1 + augment.saturation)
        gray = rng.random() < augment.grayscale
        rows.append((crop, flip, brightness, contrast, saturation, gray))
    crops, flips, brightness, contrast, saturation, grays = zip(*rows)
    return StreamDraws(np.array(crops, dtype=np.float64), np.array(flips, dtype=bool),
                       np.array(brightness), np.array(contrast), np.array(saturation),
                       np.array(grays, dtype=bool))


def crop_weights(starts: torch.Tensor, lengths: torch.Tensor, size: int,
                 flips: torch.Tensor | None = None) -> torch.Tensor:
    """INTER_LINEAR weights from each stream's crop `[start, start + length)` to S pixels.

    Args:
        starts: int64 `(N,)` first pixel of each crop on an axis of S pixels.
        lengths: int64 `(N,)` its length.
        size: S.
        flips: bool `(N,)`: reverse the output order (a horizontal flip).

    Returns:
        float32 `(N, S, S)`: output pixel x source pixel.
    """
    out = torch.arange(size, device=starts.device, dtype=torch.float32)
    scale = lengths.float()[:, None] / size
    position = ((out + 0.5) * scale - 0.5).clamp(min=0.0)
    position = torch.minimum(position, (lengths - 1).float()[:, None]) + starts.float()[:, None]
    weights = (1.0 - (position[..., None] - out).abs()).clamp(min=0.0)  # (N, S, S)
    if flips is not None:
        weights = torch.where(flips[:, None, None], weights.flip(1), weights)
    return weights


def augment_frames(frames: torch.Tensor, streams: torch.Tensor, draws: StreamDraws,
                   mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """Augment uint8 frames of several streams at once, on their device.

    Args:
        frames: uint8 `(M, S, S, 3)`, every frame at the model's side S.
        streams: int64 `(M,)`: the stream of each frame (index into `draws`).
        draws: the streams' parameters.
        mean: RGB mean.
        std: RGB std.

    Returns:
        float32 `(M, 3, S, S)`, normalised (channels-last memory layout).
    """
    device, size = frames.device, frames.shape[1]
    crops = torch.as_tensor(draws.crops, device=device)
    top, left = (crops[:, 0] * size).long(), (crops[:, 1] * size).long()
    height = torch.minimum(torch.round(crops[:, 2] * size).long().clamp(min=1), size - top)
    width = torch.minimum(torch.round(crops[:, 3] * size).long().clamp(min=1), size - left)
    flips = torch.as_tensor(draws.flips, device=device)
    rows = crop_weights(top, height, size)[streams]  # (M, S, S)
    columns = crop_weights(left, width, size, flips)[streams]
    pixels = torch.matmul(rows, frames.float().reshape(len(frames), size, size * 3))
    pixels = torch.matmul(columns[:, None], pixels.reshape(len(frames), size, size, 3))
    x = pixels.round_().clamp_(0.0, 255.0) / 255.0  # (M, S, S, 3), as the uint8 resize
    per_frame = {name: torch.as_tensor(getattr(draws, name), dtype=torch.float32,
                                       device=device)[streams][:, None, None, None]
                 for name in ('brightness', 'contrast', 'saturation')}
    luma = torch.tensor(_LUMA, device=device)
    x = x * per_frame['brightness']
    gray = (x * luma).sum(dim=-1, keepdim=True)  # (M, S, S, 1)
    count = len(draws.crops)
    sums = torch.zeros(count, device=device).index_add_(0, streams, gray.mean(dim=(1, 2, 3)))
    frames_per_stream = torch.bincount(streams, minlength=count).clamp(min=1)
    stream_mean = (sums / frames_per_stream)[streams][:, None, None, None]
    x = torch.lerp(stream_mean.expand_as(x), x, per_frame['contrast'])
    x = torch.lerp(gray.expand_as(x), x, per_frame['saturation'])
    grays = torch.as_tensor(draws.grays, device=device)[streams][:, None, None, None]
    x = torch.where(grays, (x * luma).sum(dim=-1, keepdim=True).expand_as(x), x)
    return normalize_frames(x.clamp(0.0, 1.0), mean, std)


@dataclasses.dataclass
class DeviceBatch:
    """A collated batch whose augmentation runs where it is sent (`on_device`).

    Attributes:
        frames: uint8 `(M, S, S, 3)`, in the order the batch is assembled.
        streams: int64 `(M,)`, the stream of each frame.
        draws: the streams' augmentation parameters.
        mean, std: RGB normalisation.
        layout: 'sequences' `(B, T_v + S_t*T_t)` frames per sample, or 'pairs' (B visual then
            B tactile frames).
        samples: B.
        visual_len: T_v (sequences).
        labels: {head: `(B,)` long} (sequences).
    """

    frames: torch.Tensor
    streams: torch.Tensor
    draws: StreamDraws
    mean: tuple[float, ...]
    std: tuple[float, ...]
    layout: str
    samples: int
    visual_len: int = 0
    labels: dict[str, torch.Tensor] = dataclasses.field(default_factory=dict)

    def pin_memory(self) -> DeviceBatch:
        """Pinned frames for a non-blocking copy (the DataLoader's `pin_memory`)."""
        return dataclasses.replace(self, frames=self.frames.pin_memory())

    def on_device(self, device: torch.device) -> tuple[torch.Tensor, ...]:
        """Send the uint8 frames, augment there; the batch `collate_samples` would give."""
        frames = self.frames.to(device, non_blocking=True)
        pixels = augment_frames(frames, self.streams.to(device), self.draws, self.mean, self.std)
        if self.layout == 'pairs':
            return tuple(pixels.chunk(2))
        pixels = pixels.unflatten(0, (self.samples, -1))  # (B, T_v + S_t*T_t, 3, S, S)
        labels = {head: value.to(device) for head, value in self.labels.items()}
        return pixels[:, :self.visual_len], pixels[:, self.visual_len:], labels


def collate_for_device(samples: Sequence[Any], image_size: int, mean: Sequence[float],
                       std: Sequence[float], augment: FrameAugmentation,
                       rng: np.random.Generator, pairs: bool = False) -> DeviceBatch:
    """Collate samples for augmentation on the device, drawing as the CPU collates would.

    Frames not yet at S are resized to S first (the frame cache holds them so already).
    """
    if pairs:  # collate_contrastive_pairs: one sensor per sample, then each image alone
        sensors = [int(rng.integers(len(sample.tactile))) for sample in samples]
        frames = [sample.visual[-1] for sample in samples] + [
            sample.tactile[sensor][-1] for sample, sensor in zip(samples, sensors)]
        streams = np.arange(len(frames))
        labels: dict[str, torch.Tensor] = {}
        visual_len = 0
    else:  # collate_samples: the visual stream, then each sensor's stream, per sample
        frames, stream_of = [], []
        for sample in samples:
            for stream in (sample.visual, *sample.tactile):
                stream_of += [stream_of[-1] + 1 if stream_of else 0] * len(stream)
                frames += list(stream)
        streams = np.asarray(stream_of)
        labels = _stack_labels(samples)
        visual_len = len(samples[0].visual)
    draws = draw_streams(augment, int(streams.max()) + 1, rng)
    stacked = np.stack([resize_frame(frame, image_size) for frame in frames])
    return DeviceBatch(torch.from_numpy(stacked), torch.from_numpy(streams.astype(np.int64)),
                       draws, tuple(mean), tuple(std), 'pairs' if pairs else 'sequences',
                       len(samples), visual_len, labels)
