"""The tactile high-pass (``ModelConfig.tactile_highpass``): what it keeps, what it drops, where.

A gel image is the sensor's own illumination pattern plus the relief of the contact. The
high-pass must drop the first (whatever the sensor) and keep the second, run inside every path
that reads gel frames (E^c's embedding, the condition, the tactile fusion encoder), leave
camera frames alone, and leave every checkpoint written before it exactly as it was.
"""

from __future__ import annotations

import math

import pytest
import torch

from convitac_ros.model import ContrastiveEncoder, ConViTac, ModelConfig
from convitac_ros.model.config import LEGACY_TACTILE_HIGHPASS
from convitac_ros.model.contrastive import TACTILE, VISUAL
from convitac_ros.model.encoders import TactileHighPass

SIZE = 64


def _relief(period: float = 5.0, angle: float = 0.6) -> torch.Tensor:
    """Fine ridges `(3, S, S)`: what a textured contact adds to a gel image."""
    ys, xs = torch.meshgrid(torch.arange(float(SIZE)), torch.arange(float(SIZE)),
                            indexing='ij')
    phase = (xs * math.cos(angle) + ys * math.sin(angle)) * 2 * math.pi / period
    return 0.3 * torch.sin(phase).expand(3, SIZE, SIZE)


def _illumination(seed: int) -> torch.Tensor:
    """A smooth per-channel pattern `(3, S, S)`, like a sensor's LEDs (another per seed)."""
    generator = torch.Generator().manual_seed(seed)
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, SIZE), torch.linspace(-1, 1, SIZE),
                            indexing='ij')
    slopes = torch.randn(3, 3, generator=generator)
    return (slopes[:, 0, None, None] * xs + slopes[:, 1, None, None] * ys
            + slopes[:, 2, None, None] * (xs ** 2 + ys ** 2))


def test_the_same_relief_under_two_sensors_illumination_looks_the_same_after_the_filter() -> None:
    flt = TactileHighPass(1 / 16, SIZE)
    relief = _relief()
    frames = torch.stack([relief + _illumination(0), relief + _illumination(1)])
    raw_gap = (frames[0] - frames[1]).abs().mean()
    filtered = flt(frames)
    inner = (slice(None), slice(8, -8), slice(8, -8))  # away from the reflected borders
    assert (filtered[0] - filtered[1])[inner].abs().mean() < 0.05 * raw_gap
    # The relief survives: what is left correlates with it.
    kept = filtered[0][inner].flatten()
    assert torch.corrcoef(torch.stack([kept, relief[inner].flatten()]))[0, 1] > 0.9


def test_zero_is_the_identity_and_shapes_are_kept() -> None:
    frames = torch.randn(2, 4, 3, SIZE, SIZE)
    assert torch.equal(TactileHighPass(0.0, SIZE)(frames), frames)
    assert TactileHighPass(1 / 16, SIZE)(frames).shape == frames.shape
    # A sigma wider than the frame is capped where reflect padding still works.
    assert TactileHighPass(0.5, 8)(torch.randn(1, 3, 8, 8)).shape == (1, 3, 8, 8)


def test_new_models_have_it_on_old_configs_load_it_off_and_bad_values_are_refused() -> None:
    assert ModelConfig.tiny().tactile_highpass == ModelConfig().tactile_highpass == 1 / 16
    saved = ModelConfig.tiny().to_dict()
    assert ModelConfig.from_dict(saved).tactile_highpass == 1 / 16
    del saved['tactile_highpass']
    assert ModelConfig.from_dict(saved).tactile_highpass == LEGACY_TACTILE_HIGHPASS == 0.0
    for bad in (-0.1, 0.7, float('nan'), True, '0.1'):
        with pytest.raises(ValueError, match='tactile_highpass'):
            ModelConfig.tiny(tactile_highpass=bad)


def test_the_contrastive_encoder_filters_gel_rows_only() -> None:
    encoder = ContrastiveEncoder(ModelConfig.tiny()).eval()
    images = torch.randn(4, 3, SIZE, SIZE)
    modality = torch.tensor([VISUAL, TACTILE, VISUAL, TACTILE])
    prepared = encoder.prepare(images, modality)
    assert torch.equal(prepared[0], images[0]) and torch.equal(prepared[2], images[2])
    assert torch.allclose(prepared[1], encoder.tactile_filter(images[1:2])[0])
    # A smooth pattern added to a gel frame barely moves its embedding; to a camera frame it does.
    shifted = images.clone()
    shifted[1] += _illumination(3)
    shifted[0] += _illumination(3)
    with torch.no_grad():
        before, after = encoder.projection_embed(images, modality), \
            encoder.projection_embed(shifted, modality)
    moved = (after - before).norm(dim=1)
    assert moved[1] < 0.2 * moved[0]


def test_the_fusion_model_reads_filtered_gel_frames_on_both_paths() -> None:
    torch.manual_seed(0)
    model = ConViTac(ModelConfig.tiny()).eval()
    visual = torch.randn(2, 2, 3, SIZE, SIZE)
    tactile = torch.randn(2, 2, 3, SIZE, SIZE)
    smooth = _illumination(5)
    with torch.no_grad():
        base = model(visual, tactile)
        lit = model(visual, tactile + smooth)
        off = ConViTac(ModelConfig.tiny(tactile_highpass=0.0)).eval()
        off.load_state_dict(model.state_dict())  # no weights of its own: same state dict
        off_base, off_lit = off(visual, tactile), off(visual, tactile + smooth)
    for head in base:
        gap_on = (lit[head] - base[head]).abs().max()
        gap_off = (off_lit[head] - off_base[head]).abs().max()
        assert gap_on < 0.2 * gap_off, head
