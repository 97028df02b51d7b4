"""Augmentation on the training device: the same draws as on the CPU, one uint8 level apart."""

import numpy as np
import pytest
import torch

from convitac_ros.data.sample import Sample
from convitac_ros.data.transforms import (
    collate_contrastive_pairs,
    collate_samples,
    FrameAugmentation,
)
from convitac_ros.preprocess import IMAGENET_MEAN, IMAGENET_STD
from training.data import BatchCollator
from training.device_augment import crop_weights, DeviceBatch
from training.engine import to_device

torch.set_num_threads(1)
SIZE = 32
# One uint8 level (OpenCV's fixed-point INTER_LINEAR weights) after the strongest colour jitter
# (brightness, contrast and saturation factors up to 1.4 each), in normalised units.
TOLERANCE = 1 / 255 / min(IMAGENET_STD) * 1.4 ** 3


def samples(count=5, seed=0):
    rng = np.random.default_rng(seed)

    def frame():
        return rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)

    return [Sample(visual=[frame(), frame()], tactile=[[frame(), frame()], [frame(), frame()]],
                   labels={'material': index % 3, 'hardness': -1})
            for index in range(count)]


@pytest.mark.parametrize('augment', [FrameAugmentation.light(), FrameAugmentation.simclr(),
                                     FrameAugmentation()])
def test_sequences_augmented_on_the_device_match_the_cpu(augment):
    batch = samples()
    expected = collate_samples(batch, SIZE, IMAGENET_MEAN, IMAGENET_STD, augment,
                               np.random.default_rng(7))
    collate = BatchCollator(SIZE, IMAGENET_MEAN, IMAGENET_STD, augment, on_device=True)
    device_batch = collate([(sample, 7) for sample in batch])
    assert isinstance(device_batch, DeviceBatch) and device_batch.frames.dtype == torch.uint8
    visual, tactile, labels = to_device(device_batch, torch.device('cpu'))
    assert visual.shape == expected[0].shape and tactile.shape == expected[1].shape
    assert (visual - expected[0]).abs().max().item() <= TOLERANCE
    assert (tactile - expected[1]).abs().max().item() <= TOLERANCE
    assert labels.keys() == expected[2].keys()
    for head in labels:
        assert torch.equal(labels[head], expected[2][head])


def test_pairs_augmented_on_the_device_match_the_cpu():
    batch = samples(6, seed=1)
    augment = FrameAugmentation.simclr()
    expected = collate_contrastive_pairs(batch, SIZE, IMAGENET_MEAN, IMAGENET_STD, augment,
                                         np.random.default_rng(3))
    collate = BatchCollator(SIZE, IMAGENET_MEAN, IMAGENET_STD, augment, pairs=True,
                            on_device=True)
    visual, tactile = to_device(collate([(sample, 3) for sample in batch]), torch.device('cpu'))
    assert visual.shape == expected[0].shape == (6, 3, SIZE, SIZE)
    assert (visual - expected[0]).abs().max().item() <= TOLERANCE
    assert (tactile - expected[1]).abs().max().item() <= TOLERANCE


def test_crop_weights_are_identity_for_the_whole_frame_and_flip_reverses():
    whole = crop_weights(torch.tensor([0]), torch.tensor([8]), 8)[0]
    torch.testing.assert_close(whole, torch.eye(8))
    flipped = crop_weights(torch.tensor([0]), torch.tensor([8]), 8, torch.tensor([True]))[0]
    torch.testing.assert_close(flipped, torch.eye(8).flip(0))
    half = crop_weights(torch.tensor([2]), torch.tensor([4]), 8)[0]
    torch.testing.assert_close(half.sum(dim=1), torch.ones(8))
    assert half[:, :2].abs().sum() == 0 and half[:, 6:].abs().sum() == 0
