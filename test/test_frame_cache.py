"""The training frame cache: batches equal to those without it, rebuilt when stale, said once."""

import os

import numpy as np
import pytest
import torch

from convitac_ros.data.sample import Sample
from convitac_ros.data.synthetic import make_synthetic
from convitac_ros.data.transforms import FrameAugmentation
from convitac_ros.preprocess import IMAGENET_MEAN, IMAGENET_STD, resize_frame
from training.data import BatchCollator, KeyedDataset, open_split, targets, train_and_val
from training.engine import to_device
from training.frame_cache import FrameCache, open_cached
from training.train_config import DataConfig

torch.set_num_threads(1)
SIZE = 32


@pytest.fixture(scope='module')
def root(tmp_path_factory):
    folder = tmp_path_factory.mktemp('data')
    make_synthetic(folder, 'touch_and_go', 60, seed=0)
    return folder


def data_config(root, cache='', **changes):
    return DataConfig(dataset='touch_and_go', root=str(root), val_fraction=0.25,
                      num_workers=0, frame_cache=str(cache), **changes)


class ResizedOnTheFly(torch.utils.data.Dataset):
    """The frames a cache holds, made at each access: decode, then the training resize to S."""

    def __init__(self, source):
        self.source = source

    def __len__(self):
        return len(self.source)

    def __getitem__(self, index):
        sample = self.source[index]
        return Sample(visual=[resize_frame(f, SIZE) for f in sample.visual],
                      tactile=[[resize_frame(f, SIZE) for f in sensor]
                               for sensor in sample.tactile], labels=sample.labels)


def batches(dataset, augment, seeds=(11, 12), on_device=False):
    collate = BatchCollator(SIZE, IMAGENET_MEAN, IMAGENET_STD, augment, on_device=on_device)
    keyed = KeyedDataset(dataset)
    return [to_device(collate([keyed[(index, seed)] for index in range(seed % 5, seed % 5 + 8)]),
                      torch.device('cpu')) for seed in seeds]


def assert_same_batches(first, second):
    for one, other in zip(first, second):
        assert torch.equal(one[0], other[0]) and torch.equal(one[1], other[1])
        assert one[2].keys() == other[2].keys()
        for head in one[2]:
            assert torch.equal(one[2][head], other[2][head])


def test_cache_never_changes_what_the_model_sees(root, tmp_path):
    source = open_split(data_config(root), 'train')
    cached = open_split(data_config(root, tmp_path / 'cache'), 'train', SIZE)
    assert isinstance(cached, FrameCache) and len(cached) == len(source)
    # The eval transform: the source decoded and resized at each access, bit for bit.
    assert_same_batches(batches(source, None), batches(cached, None))
    # Augmentation draws the same crops, flips and colours; the crop is of the S-sized frame.
    assert_same_batches(batches(ResizedOnTheFly(source), FrameAugmentation.light()),
                        batches(cached, FrameAugmentation.light()))
    # And with the augmentation on the device, as training runs it with the cache.
    light = FrameAugmentation.light()
    assert_same_batches(batches(ResizedOnTheFly(source), light, on_device=True),
                        batches(cached, light, on_device=True))
    assert cached.heads == source.heads and cached.visual_len == source.visual_len
    for head in source.heads:
        np.testing.assert_array_equal(targets(cached, head), targets(source, head))


def test_train_and_val_serve_both_sides_from_the_cache(root, tmp_path):
    train, val = train_and_val(data_config(root, tmp_path / 'cache'), seed=1, image_size=SIZE)
    plain_train, plain_val = train_and_val(data_config(root), seed=1)
    assert train.indices == plain_train.indices and val.indices == plain_val.indices
    assert train.frame_size == SIZE
    assert train[0].visual[0].shape == (SIZE, SIZE, 3)
    assert [p.name for p in (tmp_path / 'cache').iterdir()] == [
        p.name for p in (tmp_path / 'cache').iterdir() if p.name.startswith('touch_and_go-')]


def test_another_preprocessing_or_changed_data_rebuilds_once_and_says_so(root, tmp_path, capsys):
    source = open_split(data_config(root), 'train')
    identity = {'dataset': 'touch_and_go', 'split': 'train'}
    open_cached(source, tmp_path, root, identity, SIZE)
    assert 'rebuilding' not in capsys.readouterr().err  # the first build is not news
    cache = open_cached(source, tmp_path, root, identity, 48)
    said = [line for line in capsys.readouterr().err.splitlines() if 'rebuilding' in line]
    assert len(said) == 1 and 'another preprocessing (image_size 32, now 48)' in said[0]
    assert cache[0].visual[0].shape == (48, 48, 3)
    assert open_cached(source, tmp_path, root, identity, 48).rebuilt_because is None
    assert 'rebuilding' not in capsys.readouterr().err
    touched = sorted(root.rglob('*.jpg'))[0]
    stat = touched.stat()
    os.utime(touched, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    try:
        rebuilt = open_cached(source, tmp_path, root, identity, 48)
    finally:
        os.utime(touched, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert rebuilt.rebuilt_because == 'the data changed since it was made'
    assert capsys.readouterr().err.count('rebuilding') == 1


class Failing(torch.utils.data.Dataset):
    """A dataset whose disk fails at one sample."""

    def __init__(self, source, at):
        self.source, self.at = source, at

    def __len__(self):
        return len(self.source)

    def __getitem__(self, index):
        if index == self.at:
            raise OSError('disk gone')
        return self.source[index]


def test_a_failed_build_leaves_no_cache_behind(root, tmp_path):
    source = open_split(data_config(root), 'train')
    key = {'data': 'x'}
    with pytest.raises(OSError, match='disk gone'):
        FrameCache(Failing(source, at=5), tmp_path / 'split', SIZE, key)
    assert not (tmp_path / 'split').exists()
    assert len(FrameCache(source, tmp_path / 'split', SIZE, key)) == len(source)


def test_cache_frames_builds_a_configs_caches_and_refuses_bad_input_in_one_line(
        root, tmp_path, capsys):
    from training.cache_frames import main

    cache = tmp_path / 'cache'
    settings = ['--config', 'demo', '--set', f'data.root={root}']
    assert main([*settings, '--set', f'data.frame_cache={cache}']) == 0
    assert 'training and' in capsys.readouterr().out
    assert len(list(cache.iterdir())) == 1  # the holdout: one cache of the train split
    assert main(settings) == 2
    assert capsys.readouterr().err.strip() == (
        'cache_frames: error: data.frame_cache is empty; set it to a folder')
    assert main(['--config', 'demo', '--set', f'data.root={tmp_path}/none', '--set',
                 f'data.frame_cache={cache}']) == 1
    error = capsys.readouterr().err.strip()
    assert error.startswith('cache_frames: error: ') and '\n' not in error
