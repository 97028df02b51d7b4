"""The training resize as torch ops: equal to OpenCV within one uint8 level, any frame size."""

import numpy as np
import pytest
import torch

from convitac_ros.device_preprocess import (
    area_weights,
    DeviceResize,
    linear_weights,
    TOLERANCE_LEVELS,
)
from convitac_ros.preprocess import IMAGENET_MEAN, IMAGENET_STD, preprocess_frames, resize_frame
from convitac_ros.staging import FrameStager, InputSpec

torch.set_num_threads(1)


def spec(size, visual_len=1, tactile_len=1, num_tactile=1):
    return InputSpec(size, IMAGENET_MEAN, IMAGENET_STD, visual_len, tactile_len, num_tactile)


def scene(height, width, seed=0):
    """A camera-like frame: smooth shading, edges and sensor noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    shade = 127 + 90 * np.sin(x / 17.0) * np.cos(y / 23.0)
    edges = 60.0 * ((x // 40 + y // 30) % 2)
    pixels = (shade + edges)[..., None] + rng.normal(0, 25, (height, width, 3))
    return np.clip(pixels, 0, 255).astype(np.uint8)


@pytest.mark.parametrize('size', [224, 64])
@pytest.mark.parametrize('frame_size', [(480, 640), (240, 320)])
def test_device_resize_equals_opencv_inter_area_within_one_level(size, frame_size):
    resize = DeviceResize(spec(size), torch.device('cpu'))
    for frame in (scene(*frame_size), np.random.default_rng(1).integers(
            0, 256, (*frame_size, 3), dtype=np.uint8)):
        expected = resize_frame(frame, size).astype(np.float32)
        actual = resize.resize(torch.from_numpy(frame)[None])[0].numpy()
        difference = np.abs(actual - expected)
        assert difference.max() <= TOLERANCE_LEVELS
        # INTER_AREA differs from it only by float rounding: almost every pixel is equal.
        assert (difference > 0).mean() < 0.005


@pytest.mark.parametrize('frame_size', [(50, 70), (100, 300), (1, 1), (300, 7), (64, 64)])
def test_device_resize_follows_opencv_for_enlarging_and_odd_sizes(frame_size):
    resize = DeviceResize(spec(64), torch.device('cpu'))
    frame = scene(*frame_size, seed=2)
    expected = resize_frame(frame, 64).astype(np.float32)
    actual = resize.resize(torch.from_numpy(frame)[None])[0].numpy()
    assert actual.shape == (64, 64, 3)
    assert np.abs(actual - expected).max() <= TOLERANCE_LEVELS


def test_weights_are_the_area_and_linear_definitions():
    np.testing.assert_allclose(area_weights(4, 2), [[0.5, 0.5, 0, 0], [0, 0, 0.5, 0.5]])
    np.testing.assert_allclose(area_weights(3, 2), [[2 / 3, 1 / 3, 0], [0, 1 / 3, 2 / 3]])
    np.testing.assert_allclose(linear_weights(2, 4), [[1, 0], [0.75, 0.25], [0.25, 0.75],
                                                      [0, 1]])
    for weights in (area_weights(640, 224), linear_weights(70, 224), linear_weights(640, 64)):
        np.testing.assert_allclose(weights.sum(axis=1), 1.0)
    with pytest.raises(ValueError, match='shrink'):
        area_weights(2, 4)


def test_staged_batch_equals_the_training_preprocessing_after_normalisation():
    model_spec = spec(64, visual_len=2, tactile_len=1, num_tactile=2)
    stager = FrameStager(model_spec)
    visual = [scene(480, 640, seed=3), scene(480, 640, seed=4)]
    tactile = [[scene(240, 320, seed=5)], [scene(200, 150, seed=6)]]
    key, groups = stager.received([(visual, tactile)])
    assert key == ((480, 640), (480, 640), (240, 320), (200, 150))
    assert [group.positions for group in groups] == [(0, 1), (2,), (3,)]
    resize = DeviceResize(model_spec, torch.device('cpu'))
    pixels = resize.staged(groups, [torch.from_numpy(g.buffer) for g in groups], len(key))
    expected = preprocess_frames([*visual, *tactile[0], *tactile[1]], 64, IMAGENET_MEAN,
                                 IMAGENET_STD)
    assert pixels.shape == expected.shape == (4, 3, 64, 64)
    largest = TOLERANCE_LEVELS / 255 / min(IMAGENET_STD)
    assert (pixels - expected).abs().max().item() <= largest + 1e-6
