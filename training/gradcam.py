"""Grad-CAM maps of the visual and tactile inputs with and without CEC (the paper's Fig. 2).

The maps come from ``pytorch_grad_cam`` (the ``grad-cam`` package). ConViTac takes two inputs
and returns a dict of logits, so :class:`OneInputModel` presents it as a one-input classifier of
one modality (the other input held fixed), and :func:`feature_layer` picks the last spatial
layer of that modality's fusion encoder (a ViT's final norm, whose patch tokens are reshaped to
a grid, or a CNN's last stage). Each map explains the logit of the *true* class of the chosen
head, so that the models are compared on the same evidence.

On the synthetic world (Touch and Go layout) every touch starts with an approach frame without
contact (label -1), so the ground-truth contact region of a full-press frame is where the
press-in changed the image: camera (plus a small surround, as the sensor hides the touched
surface) and GelSight alike (:func:`change_mask`). The figure draws its outline on every panel,
and :func:`contact_scores` measures how much of each map's mass falls inside it, relative to its
area (1 = no preference, higher = attends to the contact).
The figure and the command line are in ``training/attention_figure.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
import contextlib
from dataclasses import dataclass
import functools
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
import torch
from torch import nn

from convitac_ros.checkpoint import LoadedCheckpoint
from convitac_ros.data import build_dataset, Sample
from convitac_ros.data.touch_and_go import parse_frame_list
from convitac_ros.model.contrastive import ContrastiveEncoder
from convitac_ros.model.encoders import FusionEncoder
from convitac_ros.preprocess import preprocess_frames

SIDES = ('visual', 'tactile')
APPROACH_LABEL = -1
# The sensor hides the touched surface in the camera image, so the camera's contact area is the
# region the sensor tip moved into plus a surround of this share of the image side.
CAMERA_SURROUND = 0.08


class OneInputModel(nn.Module):
    """ConViTac seen as a classifier of one modality's frames, for ``pytorch_grad_cam``.

    Args:
        model: A ConViTac model.
        head: The head whose logits are explained.
        side: 'visual' or 'tactile': the input that varies.
        other: The other modality's batch, held fixed: `(B, F', 3, S, S)` (None if unused).
        batch: B.
    """

    def __init__(self, model: nn.Module, head: str, side: str, other: torch.Tensor | None,
                 batch: int) -> None:
        super().__init__()
        self.model, self.head, self.side, self.other = model, head, side, other
        self.batch = batch

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """Args: frames `(B*F, 3, S, S)` (a 4-D batch, as Grad-CAM expects). Returns `(B, C)`."""
        frames = frames.reshape(self.batch, -1, *frames.shape[1:])  # (B, F, 3, S, S)
        pair = (frames, self.other) if self.side == 'visual' else (self.other, frames)
        return self.model(*pair)[self.head]


def _tokens_to_map(backbone: nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """Turns ViT tokens `(N, prefix + h*w, C)` -> channels-first map `(N, C, h, w)`."""
    patches = tokens[:, getattr(backbone, 'num_prefix_tokens', 0):]
    side = int(round(patches.shape[1] ** 0.5))
    return patches.transpose(1, 2).reshape(patches.shape[0], patches.shape[2], side, side)


def feature_layer(encoder: FusionEncoder | ContrastiveEncoder
                  ) -> tuple[nn.Module, Callable | None]:
    """The last spatial layer of an encoder's backbone and Grad-CAM's reshape transform.

    For a fusion encoder or E^c, a ViT (its last norm, tokens reshaped to the patch grid) or a
    CNN (its last stage).

    Raises:
        ValueError: For a backbone with neither ViT tokens nor a known CNN stage layout.
    """
    backbone = encoder.tokenizer.backbone
    if hasattr(backbone, 'patch_embed') and hasattr(backbone, 'norm'):
        return backbone.norm, functools.partial(_tokens_to_map, backbone)
    for name in ('layer4', 'stages', 'features'):
        layer = getattr(backbone, name, None)
        if layer is not None:
            return (layer[-1] if isinstance(layer, nn.Sequential) else layer), None
    raise ValueError(f'no Grad-CAM layer known for backbone {type(backbone).__name__}')


@contextlib.contextmanager
def _gradients_through(module: nn.Module) -> Iterator[None]:
    """Lets gradients flow through a frozen module (E^c) for a while; nothing is updated."""
    frozen = [p for p in module.parameters() if not p.requires_grad]
    for parameter in frozen:
        parameter.requires_grad_(True)
    try:
        yield
    finally:
        for parameter in frozen:
            parameter.requires_grad_(False)
            parameter.grad = None


def grad_cam(model: nn.Module, visual: torch.Tensor | None, tactile: torch.Tensor | None,
             head: str, classes: list[int], path: str = 'fusion') -> dict[str, np.ndarray]:
    """Grad-CAM of the latest frame of every stream that the model uses.

    With ``path='fusion'`` the maps are taken at the last spatial layer of each modality's
    fusion encoder; with ``path='condition'`` at the last layer of the frozen E^c, which reads
    the latest frame of every stream and yields the condition (gradients are let through it
    for the map only). A model without E^c has no condition maps (``{}``).

    Args:
        model: A ConViTac model (eval mode).
        visual: `(B, T_v, 3, S, S)` normalised frames (None for a touch-only model).
        tactile: `(B, num_tactile*T_t, 3, S, S)` normalised frames (None for vision only).
        head: Head to explain.
        classes: The class to explain, per sample.
        path: 'fusion' (the fusion encoders) or 'condition' (E^c).

    Returns:
        ``{'visual': (B, S, S), 'tactile': (B, num_tactile, S, S)}`` in [0, 1], only for the
        modalities the model uses.
    """
    if path not in ('fusion', 'condition'):
        raise ValueError(f"path must be 'fusion' or 'condition', got {path!r}")
    if path == 'condition':
        return _condition_cam(model, visual, tactile, head, classes)
    config = model.config
    maps = {}
    targets = [ClassifierOutputTarget(int(c)) for c in classes]
    for side, frames, other in (('visual', visual, tactile), ('tactile', tactile, visual)):
        encoder = getattr(model, f'{side}_encoder')
        if encoder is None:
            continue
        layer, reshape = feature_layer(encoder)
        wrapper = OneInputModel(model, head, side, other, frames.shape[0])
        with GradCAM(wrapper, [layer], reshape_transform=reshape) as cam:
            values = cam(frames.flatten(0, 1), targets)  # (B*F, S, S)
        batch, size = frames.shape[0], config.image_size
        if side == 'visual':
            maps[side] = values.reshape(batch, config.visual_len, size, size)[:, -1]
        else:
            maps[side] = values.reshape(batch, config.num_tactile, config.tactile_len,
                                        size, size)[:, :, -1]
    return maps


def _condition_cam(model: nn.Module, visual: torch.Tensor | None,
                   tactile: torch.Tensor | None, head: str, classes: list[int]
                   ) -> dict[str, np.ndarray]:
    """Grad-CAM at E^c's last layer, per stream (see :func:`grad_cam`)."""
    encoder = model.contrastive_encoder
    if encoder is None:
        return {}
    config = model.config
    layer, reshape = feature_layer(encoder)
    targets = [ClassifierOutputTarget(int(c)) for c in classes]
    # E^c embeds the latest frame of every stream in one batch, rows (sample, stream): the
    # camera's first when the model sees it, then one per tactile sensor.
    streams = int(model.use_visual) + (config.num_tactile if model.use_tactile else 0)
    maps = {}
    with _gradients_through(encoder):
        for side, frames, other in (('visual', visual, tactile), ('tactile', tactile, visual)):
            if frames is None or getattr(model, f'{side}_encoder') is None:
                continue
            wrapper = OneInputModel(model, head, side, other, frames.shape[0])
            with GradCAM(wrapper, [layer], reshape_transform=reshape) as cam:
                values = cam(frames.flatten(0, 1), targets)  # (B*streams, S, S)
            batch, size = frames.shape[0], config.image_size
            values = values.reshape(batch, streams, size, size)
            maps[side] = (values[:, 0] if side == 'visual'
                          else values[:, streams - config.num_tactile:])
    return maps


def change_mask(before: np.ndarray, after: np.ndarray, size: int, sigma: float = 1.5,
                share: float = 0.35, grow: float = 0.0) -> np.ndarray:
    """Where an image changed between two frames: bool `(size, size)`.

    Both uint8 RGB frames are resized to ``size``; the per-pixel change (mean absolute RGB
    difference) is smoothed with a Gaussian of ``sigma`` pixels, thresholded at ``share`` of
    its maximum, and grown by ``grow * size`` pixels in every direction.
    """
    frames = [cv2.resize(f, (size, size), interpolation=cv2.INTER_AREA).astype(np.float32)
              for f in (before, after)]
    change = cv2.GaussianBlur(np.abs(frames[1] - frames[0]).mean(axis=2), (0, 0), sigma)
    mask = change >= share * max(float(change.max()), 1e-6)
    radius = int(round(grow * size))
    if radius > 0:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
        mask = cv2.dilate(mask.astype(np.uint8), kernel) > 0
    return mask


@dataclass
class PressSample:
    """A full-press test sample with its approach frames and its ground-truth contact masks."""

    index: int
    sample: Sample  # the model's input window (the newest frames)
    contact: dict[str, np.ndarray]  # side -> bool (S, S) mask on the latest frame


def approach_frames(root: Path) -> set[tuple[str, str]]:
    """``(session, frame)`` of the frames without contact (label -1 in ``label.txt``)."""
    return {(session, frame) for session, frame, label in parse_frame_list(root / 'label.txt')
            if label == APPROACH_LABEL}


def press_samples(dataset_name: str, root: str, split: str, options: dict[str, Any],
                  loaded: LoadedCheckpoint, press_len: int = 4) -> list[PressSample]:
    """Test samples at full press, whose window of ``press_len`` frames starts at the approach.

    Only Touch-and-Go-layout data with approach frames (the synthetic world) has them; other
    data gives an empty list.
    """
    approach = approach_frames(Path(root)) if (Path(root) / 'label.txt').is_file() else set()
    if not approach:
        return []
    lengths = {'visual_len': press_len, 'tactile_len': press_len}
    long = build_dataset(dataset_name, root, split, **{**options, **lengths})
    visual_len, tactile_len = loaded.preprocess['visual_len'], loaded.preprocess['tactile_len']
    size = loaded.preprocess['image_size']
    found = []
    for index in range(len(long)):
        sample = long[index]
        session, frames = sample.meta['session'], sample.meta['visual_frames']
        pressed = [(session, frame) in approach for frame in frames]
        if not pressed[0] or any(pressed[1:]):
            continue
        window = Sample(visual=sample.visual[-visual_len:],
                        tactile=[sensor[-tactile_len:] for sensor in sample.tactile],
                        labels=sample.labels, meta=sample.meta)
        contact = {'visual': change_mask(sample.visual[0], sample.visual[-1], size,
                                         grow=CAMERA_SURROUND),
                   'tactile': change_mask(sample.tactile[0][0], sample.tactile[0][-1], size)}
        found.append(PressSample(index, window, contact))
    return found


def model_inputs(samples: list[Sample], preprocess: dict[str, Any]
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Eval preprocessing of samples: visual `(B, T_v, 3, S, S)`, tactile `(B, n*T_t, 3, S, S)`."""
    args = (preprocess['image_size'], preprocess['mean'], preprocess['std'])
    visual = torch.stack([preprocess_frames(s.visual, *args) for s in samples])
    tactile = torch.stack([torch.cat([preprocess_frames(sensor, *args) for sensor in s.tactile])
                           for s in samples])
    return visual, tactile


def contact_scores(maps: np.ndarray, masks: np.ndarray) -> dict[str, float]:
    """How strongly maps concentrate on the contact masks.

    Args:
        maps: `(N, S, S)` non-negative maps.
        masks: `(N, S, S)` bool contact regions.

    Returns:
        ``mass_inside`` (mean share of map mass inside the mask), ``area`` (mean share of the
        image the mask covers) and ``enrichment`` (mean of mass share / area share per sample;
        1 = no preference for the contact).
    """
    mass = maps.reshape(len(maps), -1)
    inside = (mass * masks.reshape(len(masks), -1)).sum(axis=1)
    inside = inside / np.maximum(mass.sum(axis=1), 1e-12)
    area = masks.reshape(len(masks), -1).mean(axis=1)
    return {'mass_inside': float(inside.mean()), 'area': float(area.mean()),
            'enrichment': float((inside / np.maximum(area, 1e-12)).mean()), 'samples': len(maps)}
