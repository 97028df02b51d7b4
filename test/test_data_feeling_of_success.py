"""FeelingOfSuccess reads deepdish-layout HDF5 with h5py (fixture from test/fixtures_data.py)."""

from pathlib import Path

from fixtures_data import (
    FOS_LABELS,
    FOS_OBJECTS,
    fos_pixel,
    FOS_SIZES,
    FOS_TEST_OBJECTS,
    write_feeling_of_success,
)
import h5py
import numpy as np
import pytest

from convitac_ros.data import build_dataset, FeelingOfSuccess
from convitac_ros.data.feeling_of_success import is_test_object


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return write_feeling_of_success(tmp_path / 'fos')


def test_all_split_reads_every_trial_with_labels_from_attributes(root: Path):
    dataset = FeelingOfSuccess(root, 'all')
    assert len(dataset) == 6
    assert dataset.heads == {'grasp_success': ['failure', 'success']}
    assert list(dataset.target_array('grasp_success')) == FOS_LABELS
    assert [dataset[i].meta['object'] for i in range(6)] == FOS_OBJECTS
    assert [dataset[i].labels['grasp_success'] for i in range(6)] == FOS_LABELS


def test_split_is_object_disjoint_and_deterministic(root: Path):
    train, test = FeelingOfSuccess(root, 'train'), FeelingOfSuccess(root, 'test')
    assert train.objects['test'] == FOS_TEST_OBJECTS == sorted(
        n for n in set(FOS_OBJECTS) if is_test_object(n))
    assert {test[i].meta['object'] for i in range(len(test))} == set(FOS_TEST_OBJECTS)
    assert not {train[i].meta['object'] for i in range(len(train))} & set(FOS_TEST_OBJECTS)
    assert (len(train), len(test)) == (4, 2)


def test_explicit_test_objects_override_the_hash_rule(root: Path):
    test = FeelingOfSuccess(root, 'test', test_objects=['mug'])
    assert [test[i].meta['trial'] for i in range(len(test))] == ['i2', 'i1']
    assert test.objects == {'train': ['plastic_duck', 'soda_can', 'spoon'], 'test': ['mug']}


def test_sequences_are_before_then_during_and_never_after(root: Path):
    sample = FeelingOfSuccess(root, 'all')[2]
    assert len(sample.visual) == 2 and [len(s) for s in sample.tactile] == [2, 2]
    assert tuple(sample.visual[0][0, 0]) == fos_pixel(2, 'kinectA_rgb', 'before')
    assert tuple(sample.visual[1][0, 0]) == fos_pixel(2, 'kinectA_rgb', 'during')
    assert tuple(sample.tactile[0][1][0, 0]) == fos_pixel(2, 'gelsightA', 'during')
    assert tuple(sample.tactile[1][0][0, 0]) == fos_pixel(2, 'gelsightB', 'before')
    for frame in [*sample.visual, *sample.tactile[0], *sample.tactile[1]]:
        assert frame[0, 0, 0] != fos_pixel(2, 'kinectA_rgb', 'after')[0]


def test_length_one_uses_the_during_frames_with_their_own_sizes(root: Path):
    sample = build_dataset('feeling_of_success', root, 'all', visual_len=1, tactile_len=1)[0]
    assert tuple(sample.visual[0][0, 0]) == fos_pixel(0, 'kinectA_rgb', 'during')
    assert sample.visual[0].shape == (*FOS_SIZES['kinectA_rgb'], 3)
    assert [s[0].shape for s in sample.tactile] == [
        (*FOS_SIZES['gelsightA'], 3), (*FOS_SIZES['gelsightB'], 3)]
    assert all(f.dtype == np.uint8 for f in [*sample.visual, *sample.tactile[1]])


def test_dataset_declares_two_sensors(root: Path):
    dataset = FeelingOfSuccess(root, 'train', tactile_len=1)
    assert (dataset.num_tactile, dataset.visual_len, dataset.tactile_len) == (2, 2, 1)


def test_explicit_files_restrict_the_trials(root: Path):
    dataset = FeelingOfSuccess(root, 'all', files=['calandra_corl2017_001.h5'])
    assert [dataset[i].meta['object'] for i in range(len(dataset))] == ['spoon', 'mug']


def test_missing_root_file_and_unknown_split_are_clear(root: Path, tmp_path: Path):
    with pytest.raises(FileNotFoundError, match='nowhere'):
        FeelingOfSuccess(tmp_path / 'nowhere')
    with pytest.raises(FileNotFoundError, match='calandra_corl2017'):
        FeelingOfSuccess(tmp_path)
    with pytest.raises(FileNotFoundError, match='missing.h5'):
        FeelingOfSuccess(root, files=['missing.h5'])
    with pytest.raises(ValueError, match="'val'"):
        FeelingOfSuccess(root, 'val')


def test_corrupt_file_names_it(root: Path):
    bad = root / 'calandra_corl2017_002.h5'
    bad.write_bytes(b'not hdf5')
    with pytest.raises(ValueError, match='calandra_corl2017_002.h5'):
        FeelingOfSuccess(root, 'all')


def test_missing_attribute_and_missing_image_name_the_trial(root: Path):
    path = root / 'calandra_corl2017_001.h5'
    with h5py.File(path, 'a') as handle:
        del handle['data/i0/gelsightB_during']
    sample_loader = FeelingOfSuccess(root, 'all')
    with pytest.raises(KeyError, match='i0/gelsightB_during'):
        sample_loader[4]
    with h5py.File(path, 'a') as handle:
        del handle['data/i1'].attrs['is_gripping']
    with pytest.raises(ValueError, match='calandra_corl2017_001.h5:/data/i1'):
        FeelingOfSuccess(root, 'all')
