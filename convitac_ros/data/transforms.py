"""Training augmentations and collation of samples into batches.

Without augmentation, collation is the deterministic preprocessing of
:mod:`convitac_ros.preprocess` (the Predictor's), so validation sees the node's numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
import dataclasses
from typing import Any

import numpy as np
import torch

from convitac_ros.data.sample import MISSING_LABEL
from convitac_ros.preprocess import normalize_frames, preprocess_frames, resize_frame

# (RGB) luma weights for contrast, saturation and grayscale augmentation.
_LUMA = (0.299, 0.587, 0.114)


@dataclasses.dataclass(frozen=True)
class FrameAugmentation:
    """Cheap random augmentation of a frame sequence, drawn once per sequence.

    All frames of a sequence get the same crop, flip and colour change, so the motion between
    them is kept.
    The crop is taken from the full-resolution uint8 frame and resized once; colour jitter
    works on [0, 1] tensors before normalisation.

    Attributes:
        crop_scale: range of the crop area as a fraction of the frame.
        crop_ratio: range of the crop aspect ratio (width / height).
        hflip: probability of a horizontal flip.
        brightness / contrast / saturation: jitter strength (factor in [1 - x, 1 + x]).
        grayscale: probability of converting to grayscale.
    """

    crop_scale: tuple[float, float] = (0.2, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    hflip: float = 0.5
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.4
    grayscale: float = 0.2

    @classmethod
    def simclr(cls, crop_min: float = 0.7, jitter: float = 0.15) -> FrameAugmentation:
        """Build the stage-1 augmentation for visual-tactile (cross-modal) SimCLR.

        Unlike image-only SimCLR, the positive is the other modality, so the augmentation must
        keep what links the two: a crop of at least 70 % of the area (every side >= 0.8 of the
        frame) always contains the central fifth of the frame, where the camera sees the
        contact and the gel shows the imprint, and the colour changes are mild, with no
        grayscale, because the material colour is the camera's cue to the touch. The
        image-only defaults (crop down to 0.2, strong jitter) keep the loss at log(2B - 1).
        No flips and nearly square crops: the two images are augmented independently, and a
        flip (or a strong stretch) of one of them would change the orientation of the texture
        that the camera and the gel share.

        Args:
            crop_min: smallest crop area (``stage1.crop_min``; 0.7 keeps the central fifth).
            jitter: brightness, contrast and saturation strength (``stage1.jitter``).
        """
        return cls(crop_scale=(crop_min, 1.0), crop_ratio=(0.9, 1.1), hflip=0.0,
                   brightness=jitter, contrast=jitter, saturation=jitter, grayscale=0.0)

    @classmethod
    def light(cls) -> FrameAugmentation:
        """Build the stage-2 augmentation: mild crop and colour changes, no flip.

        The frozen E^c computes the condition from the latest frame of each augmented stream,
        so stage 2 draws only transforms that stage 1 trained E^c on (:meth:`covers`): a crop
        of at least 80 % of the area and weaker colour changes than :meth:`simclr`, and no
        flip (stage 1 never flips).
        """
        return cls(crop_scale=(0.8, 1.0), crop_ratio=(0.9, 1.1), hflip=0.0, brightness=0.1,
                   contrast=0.1, saturation=0.1, grayscale=0.0)

    def covers(self, other: FrameAugmentation) -> bool:
        """Whether every transform `other` draws can also be drawn by this augmentation."""
        def within(inner: tuple[float, float], outer: tuple[float, float]) -> bool:
            return outer[0] <= inner[0] and inner[1] <= outer[1]

        return (within(other.crop_scale, self.crop_scale)
                and within(other.crop_ratio, self.crop_ratio)
                and (other.hflip == 0 or self.hflip > 0)
                and (other.grayscale == 0 or self.grayscale > 0)
                and all(getattr(other, name) <= getattr(self, name)
                        for name in ('brightness', 'contrast', 'saturation')))

    def sample_crop(self, rng: np.random.Generator) -> tuple[float, float, float, float]:
        """Draw a crop (top, left, height, width) in fractions of the frame."""
        area = rng.uniform(*self.crop_scale)
        ratio = np.exp(rng.uniform(np.log(self.crop_ratio[0]), np.log(self.crop_ratio[1])))
        width = min(1.0, float(np.sqrt(area * ratio)))
        height = min(1.0, float(np.sqrt(area / ratio)))
        return rng.uniform(0, 1 - height), rng.uniform(0, 1 - width), height, width

    def __call__(self, frames: Sequence[np.ndarray], image_size: int, mean: Sequence[float],
                 std: Sequence[float], rng: np.random.Generator) -> torch.Tensor:
        """Augment a frame sequence.

        Args:
            frames: T uint8 `(H, W, 3)` RGB arrays.
            image_size: S.
            mean: per-channel RGB mean.
            std: per-channel RGB std.
            rng: the random source.

        Returns:
            float32 `(T, 3, S, S)`, normalised.
        """
        crop = self.sample_crop(rng)
        out = np.empty((len(frames), image_size, image_size, 3), dtype=np.uint8)
        for index, frame in enumerate(frames):
            resize_frame(frame, image_size, out=out[index], crop=crop)
        if rng.random() < self.hflip:
            out = out[:, :, ::-1]
        x = torch.from_numpy(np.ascontiguousarray(out)).float() / 255.0  # (T, S, S, 3)
        luma = torch.tensor(_LUMA)
        x = x * rng.uniform(1 - self.brightness, 1 + self.brightness)
        gray = (x * luma).sum(dim=-1, keepdim=True)  # (T, S, S, 1)
        x = torch.lerp(gray.mean(), x, rng.uniform(1 - self.contrast, 1 + self.contrast))
        x = torch.lerp(gray, x, rng.uniform(1 - self.saturation, 1 + self.saturation))
        if rng.random() < self.grayscale:
            x = (x * luma).sum(dim=-1, keepdim=True).expand_as(x)
        return normalize_frames(x.clamp(0.0, 1.0), mean, std)


def default_rng() -> np.random.Generator:
    """Return a numpy generator seeded from torch's RNG.

    So `torch.manual_seed` and DataLoader worker seeding make augmentation reproducible.
    """
    return np.random.default_rng(int(torch.randint(0, 2 ** 62, ()).item()))


def _stack_labels(samples: Sequence[Any]) -> dict[str, torch.Tensor]:
    heads: dict[str, None] = {}
    for sample in samples:
        heads.update(dict.fromkeys(sample.labels))
    return {head: torch.tensor([int(s.labels.get(head, MISSING_LABEL)) for s in samples],
                               dtype=torch.long) for head in heads}


def _check_lengths(samples: Sequence[Any]) -> tuple[int, int, int]:
    first = samples[0]
    shape = (len(first.visual), len(first.tactile), len(first.tactile[0]) if first.tactile else 0)
    for index, sample in enumerate(samples):
        lengths = {len(sensor) for sensor in sample.tactile}
        found = (len(sample.visual), len(sample.tactile), min(lengths) if lengths else 0)
        if found != shape or len(lengths) > 1:
            raise ValueError(f'sample {index} has (T_v, S, T_t) = {found} (tactile lengths '
                             f'{sorted(lengths)}), but the batch starts with {shape}')
    return shape


def collate_samples(samples: Sequence[Any], image_size: int, mean: Sequence[float],
                    std: Sequence[float], augment: FrameAugmentation | None = None,
                    rng: np.random.Generator | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """Batch `Sample`s for the model.

    Without `augment` this is exactly the eval transform (`preprocess_frames`).

    Args:
        samples: B samples with equal sequence lengths and sensor counts.
        image_size: S.
        mean: per-channel RGB mean.
        std: per-channel RGB std.
        augment: optional training augmentation, drawn once per stream of each sample.
        rng: random source for `augment` (default: seeded from torch's RNG).

    Returns:
        visual `(B, T_v, 3, S, S)`, tactile `(B, S_t*T_t, 3, S, S)` (sensor-major) and labels
        {head: `(B,)` long}, `MISSING_LABEL` (-1) where a sample lacks the head.
    """
    if not samples:
        raise ValueError('collate_samples needs at least one sample')
    visual_len, num_tactile, tactile_len = _check_lengths(samples)
    streams = [stream for s in samples for stream in (s.visual, *s.tactile)]
    if augment is None:
        frames = [frame for stream in streams for frame in stream]
        pixels = preprocess_frames(frames, image_size, mean, std)  # (B*(T_v+S*T_t), 3, S, S)
    else:
        rng = rng or default_rng()
        pixels = torch.cat([augment(stream, image_size, mean, std, rng) for stream in streams])
    pixels = pixels.reshape(len(samples), visual_len + num_tactile * tactile_len,
                            *pixels.shape[1:])
    return pixels[:, :visual_len], pixels[:, visual_len:], _stack_labels(samples)


def collate_contrastive_pairs(samples: Sequence[Any], image_size: int, mean: Sequence[float],
                              std: Sequence[float], augment: FrameAugmentation | None = None,
                              rng: np.random.Generator | None = None
                              ) -> tuple[torch.Tensor, torch.Tensor]:
    """Batch single synchronous visual-tactile image pairs for stage 1 (SimCLR, paper eq. 1-2).

    Every sample contributes its own (latest) frames: the labelled frame, never the older
    context frames of its sequence, which may be an approach frame (blank gel) that shares
    nothing with the camera. With `augment`, the tactile frame is that of a random sensor and
    each image is augmented independently; without it, sensor 0 and the eval transform.

    Returns:
        visual `(B, 3, S, S)` and tactile `(B, 3, S, S)`; row i of both is a positive pair.
    """
    if not samples:
        raise ValueError('collate_contrastive_pairs needs at least one sample')
    rng = rng or (default_rng() if augment is not None else None)
    visual, tactile = [], []
    for sample in samples:
        sensor = 0 if rng is None else int(rng.integers(len(sample.tactile)))
        visual.append(sample.visual[-1])
        tactile.append(sample.tactile[sensor][-1])
    if augment is None:
        return (preprocess_frames(visual, image_size, mean, std),
                preprocess_frames(tactile, image_size, mean, std))
    return tuple(torch.cat([augment([frame], image_size, mean, std, rng) for frame in frames])
                 for frames in (visual, tactile))
