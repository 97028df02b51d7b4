"""Frame preprocessing: the eval transform, augmentations and batch collation."""

import cv2
import numpy as np
import pytest
import torch

from convitac_ros import preprocess as preprocess_module
from convitac_ros.data import transforms
from convitac_ros.data.sample import MISSING_LABEL, Sample
from convitac_ros.data.transforms import FrameAugmentation

SIZE = 16
MEAN, STD = preprocess_module.IMAGENET_MEAN, preprocess_module.IMAGENET_STD
preprocess = preprocess_module.preprocess_frames
collate = transforms.collate_samples


def solid(value, height=30, width=40):
    return np.full((height, width, 3), value, dtype=np.uint8)


def make_sample(offset, labels, visual_len=2, num_tactile=2, tactile_len=3):
    """Frames whose colour encodes (stream, time) so that order can be checked."""
    return Sample(visual=[solid(offset + t) for t in range(visual_len)],
                  tactile=[[solid(offset + 100 + 10 * s + t, 20, 25) for t in range(tactile_len)]
                           for s in range(num_tactile)],
                  labels=labels)


def pixel_value(frames_chw, channel=0):
    """Undo the normalisation of a uniform frame to its uint8 value."""
    return round(float(frames_chw[channel].mean() * STD[channel] + MEAN[channel]) * 255)


def test_preprocess_frames_normalises_to_the_expected_values():
    out = preprocess([solid(0), solid(255, 100, 7)], SIZE, MEAN, STD)
    assert out.shape == (2, 3, SIZE, SIZE) and out.dtype == torch.float32
    expected_black = -torch.tensor(MEAN) / torch.tensor(STD)
    torch.testing.assert_close(out[0].mean(dim=(1, 2)), expected_black)
    torch.testing.assert_close(out[1].mean(dim=(1, 2)),
                               (1 - torch.tensor(MEAN)) / torch.tensor(STD))


def test_preprocess_frames_keeps_rgb_channel_order():
    frame = np.zeros((8, 8, 3), dtype=np.uint8)
    frame[..., 0] = 255  # red
    out = preprocess([frame], SIZE, (0, 0, 0), (1, 1, 1))
    torch.testing.assert_close(out[0].mean(dim=(1, 2)), torch.tensor([1.0, 0.0, 0.0]))


def test_shrinking_uses_area_interpolation():
    frame = np.random.default_rng(0).integers(0, 256, (64, 48, 3), dtype=np.uint8)
    expected = cv2.resize(frame, (SIZE, SIZE), interpolation=cv2.INTER_AREA)
    np.testing.assert_array_equal(preprocess_module.resize_frames([frame], SIZE)[0], expected)


def test_resize_frames_writes_into_a_given_buffer():
    out = np.zeros((2, SIZE, SIZE, 3), dtype=np.uint8)
    result = preprocess_module.resize_frames([solid(7), solid(9, 5, 5)], SIZE, out=out)
    assert result is out and out[0].max() == 7 and out[1].min() == 9


@pytest.mark.parametrize('frame, message', [
    (np.zeros((8, 8, 3), dtype=np.float32), 'uint8'),
    (np.zeros((8, 8), dtype=np.uint8), r'\(H, W, 3\)'),
    (np.zeros((8, 8, 4), dtype=np.uint8), r'\(H, W, 3\)'),
    ([[0, 0, 0]], 'numpy array'),
])
def test_bad_frames_are_refused(frame, message):
    with pytest.raises(ValueError, match=message):
        preprocess([frame], SIZE, MEAN, STD)


def test_collate_samples_orders_streams_sensor_major_and_fills_missing_labels():
    samples = [make_sample(0, {'material': 3, 'hardness': 1}), make_sample(5, {'roughness': 0})]
    visual, tactile, labels = collate(samples, SIZE, MEAN, STD)
    assert visual.shape == (2, 2, 3, SIZE, SIZE) and tactile.shape == (2, 6, 3, SIZE, SIZE)
    assert [pixel_value(frame) for frame in visual[1]] == [5, 6]
    assert [pixel_value(frame) for frame in tactile[1]] == [105, 106, 107, 115, 116, 117]
    assert list(labels) == ['material', 'hardness', 'roughness']
    assert labels['material'].tolist() == [3, MISSING_LABEL]
    assert labels['roughness'].tolist() == [MISSING_LABEL, 0]
    assert labels['material'].dtype == torch.long


def test_collate_without_augmentation_is_the_eval_transform():
    sample = make_sample(0, {})
    visual, tactile, _ = collate([sample], SIZE, MEAN, STD)
    assert torch.equal(visual[0], preprocess(sample.visual, SIZE, MEAN, STD))
    assert torch.equal(tactile[0, 3:], preprocess(sample.tactile[1], SIZE, MEAN, STD))


def test_collate_refuses_samples_of_different_lengths():
    with pytest.raises(ValueError, match='sample 1'):
        collate([make_sample(0, {}), make_sample(0, {}, visual_len=3)], SIZE, MEAN, STD)


@pytest.mark.parametrize('augment', [FrameAugmentation.simclr(), FrameAugmentation.light()])
def test_augmentation_is_reproducible_and_changes_the_frames(augment):
    frame = np.random.default_rng(1).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    first = augment([frame, frame], SIZE, MEAN, STD, np.random.default_rng(7))
    again = augment([frame, frame], SIZE, MEAN, STD, np.random.default_rng(7))
    other = augment([frame, frame], SIZE, MEAN, STD, np.random.default_rng(8))
    assert first.shape == (2, 3, SIZE, SIZE) and torch.isfinite(first).all()
    assert torch.equal(first, again) and not torch.equal(first, other)
    # One draw per sequence: identical frames stay identical.
    assert torch.equal(first[0], first[1])


def test_augmented_collate_keeps_shapes_and_labels():
    samples = [make_sample(0, {'hardness': 1}), make_sample(5, {'hardness': 0})]
    visual, tactile, labels = collate(samples, SIZE, MEAN, STD, FrameAugmentation.light(),
                                      np.random.default_rng(0))
    assert visual.shape == (2, 2, 3, SIZE, SIZE) and tactile.shape == (2, 6, 3, SIZE, SIZE)
    assert labels['hardness'].tolist() == [1, 0]


def test_contrastive_pairs_take_synchronous_frames():
    samples = [make_sample(0, {}), make_sample(5, {})]
    visual, tactile = transforms.collate_contrastive_pairs(samples, SIZE, MEAN, STD)
    assert visual.shape == tactile.shape == (2, 3, SIZE, SIZE)
    assert [pixel_value(v) for v in visual] == [1, 6]  # latest camera frame
    assert [pixel_value(t) for t in tactile] == [102, 107]  # latest frame of sensor 0
    augmented = transforms.collate_contrastive_pairs(
        samples, SIZE, MEAN, STD, FrameAugmentation.simclr(), np.random.default_rng(0))
    assert [x.shape for x in augmented] == [(2, 3, SIZE, SIZE)] * 2
