"""The synthetic world shares instance textures between camera and gel; the retrieval ceiling."""

import math

import numpy as np
import pytest

from convitac_ros.data import TouchAndGo
from convitac_ros.data.synthetic import make_synthetic
from convitac_ros.data.synthetic.ideal_observer import (
    analytic_ceiling,
    batch_ceiling,
    chance,
    impostor_probability,
    read_instances,
)
from convitac_ros.data.synthetic.materials import MATERIALS
from convitac_ros.data.synthetic.render import Weave, WEAVE_CODES, WEAVE_PERIODS
from convitac_ros.data.synthetic.touch_world import render_touch


def _orientation(image: np.ndarray) -> float:
    """Dominant grating orientation of an (H, W, 3) image (radians in [0, pi)), from its spectrum.

    The power of the three channels is summed: the gel's three coloured lights shade a grating
    in different channels depending on its direction.
    """
    centred = image - image.mean(axis=(0, 1))
    spectrum = np.abs(np.fft.fftshift(np.fft.fft2(centred, axes=(0, 1)), axes=(0, 1))).sum(2)
    rows, cols = image.shape[:2]
    spectrum[rows // 2 - 1:rows // 2 + 2, cols // 2 - 1:cols // 2 + 2] = 0.0
    y, x = np.unravel_index(spectrum.argmax(), spectrum.shape)
    return math.atan2((y - rows // 2) / rows, (x - cols // 2) / cols) % math.pi


def _angle_gap(a: float, b: float) -> float:
    gap = abs(a - b) % math.pi
    return min(gap, math.pi - gap)


@pytest.mark.parametrize('orientation', [0, 2, 5])
def test_changing_the_touched_instance_texture_changes_camera_and_gel_alike(orientation):
    # Same random draws, only the touched instance's texture differs: the difference of the
    # frames is that texture, seen by the camera and printed in the gel at the same angle.
    tint, gel = np.ones(3), np.array([0.42, 0.44, 0.50])
    material = 1  # Metal: hard smooth, so the gel prints textures crisply
    first, second = (render_touch(np.random.default_rng(1), material, tint, gel,
                                  Weave(orientation, 0, phase)) for phase in (0.0, np.pi))
    expected = math.pi * orientation / 8
    for modality in (0, 1):
        pressed = [frames[-1][modality].astype(float) for frames in (first, second)]
        change = pressed[0] - pressed[1]
        assert np.abs(change).mean() > 1.0
        assert _angle_gap(_orientation(change), expected) < math.radians(12)
    approach_change = first[0][1].astype(float) - second[0][1].astype(float)
    assert np.abs(approach_change).max() == 0  # the blank gel of the approach shows no texture


def test_instance_file_lists_every_contact_frame_with_a_material_independent_code(tmp_path):
    make_synthetic(tmp_path, 'touch_and_go', 1200, seed=3)
    table = read_instances(tmp_path)
    train, test = TouchAndGo(tmp_path, 'train'), TouchAndGo(tmp_path, 'test')
    labelled = {(s.meta['session'], s.meta['frame']): s.labels['material']
                for dataset in (train, test) for s in (dataset[i] for i in range(len(dataset)))}
    assert set(table) == set(labelled)
    assert all(table[key][0] == labelled[key] for key in table)
    codes = np.array([code for _, code in table.values()])
    materials = np.array([material for material, _ in table.values()])
    assert set(codes) == set(range(WEAVE_CODES))
    # Frames of a touch share the code; the code is independent of the material (chi-square).
    counts = np.zeros((len(MATERIALS), WEAVE_CODES))
    np.add.at(counts, (materials[::3], codes[::3]), 1)
    expected = counts.sum(1, keepdims=True) * counts.sum(0, keepdims=True) / counts.sum()
    chi2 = ((counts - expected) ** 2 / expected).sum()
    assert chi2 < 160  # 105 degrees of freedom: p ~ 0.0003 at 160


def test_analytic_ceiling_matches_simulated_batches_and_the_closed_form():
    rng = np.random.default_rng(0)
    batch = 32
    q = impostor_probability()
    assert q == pytest.approx(1 / 32)
    assert analytic_ceiling(batch) == pytest.approx((1 - (1 - q) ** batch) / (batch * q))
    for k in (1, 5):
        simulated = np.mean([batch_ceiling(rng.integers(8, size=batch),
                                           rng.integers(WEAVE_CODES, size=batch), k)
                             for _ in range(1500)])
        assert simulated == pytest.approx(analytic_ceiling(batch, k), abs=0.01)
    assert analytic_ceiling(32) == pytest.approx(0.638, abs=0.001)
    assert analytic_ceiling(32) > 20 * chance(32) and chance(32, 5) == 5 / 32


def test_batch_ceiling_counts_only_consistent_impostors():
    # A grey camera frame allows hard rough or hard smooth; a white one hard or soft smooth.
    metal, plastic, paper = 1, 2, 3  # grey hard smooth, white hard smooth, white soft smooth
    assert batch_ceiling([metal, plastic], [4, 4]) == 0.5  # each gel fits the other's look
    assert batch_ceiling([metal, paper], [4, 4]) == 0.75  # Paper's soft gel cannot be Metal's
    assert batch_ceiling([metal, plastic], [4, 5]) == 1.0  # another texture code


def test_ceiling_arguments_are_checked():
    with pytest.raises(ValueError, match='batch_size'):
        analytic_ceiling(1)
    with pytest.raises(FileNotFoundError, match='instances'):
        read_instances('/nonexistent')
    assert len(WEAVE_PERIODS) == 2
