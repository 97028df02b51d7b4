"""ObjectFolderReal reads the processed benchmark release (fixture: test/fixtures_data.py)."""

from pathlib import Path

from fixtures_data import of_pixel, OF_SIZES, write_objectfolder_real
import numpy as np
import pytest

from convitac_ros.data import build_dataset, MISSING_LABEL, ObjectFolderReal


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return write_objectfolder_real(tmp_path / 'DATA_real')


def test_train_split_labels_and_attributes(root: Path):
    dataset = ObjectFolderReal(root, 'train')
    assert dataset.heads == {'material': [f'material_{i}' for i in range(7)],
                             'hardness': ['hard', 'soft'], 'roughness': ['smooth', 'rough']}
    assert [dataset[i].labels for i in range(len(dataset))] == [
        {'material': 0, 'hardness': 0, 'roughness': 1},
        {'material': 0, 'hardness': 0, 'roughness': 1},
        {'material': 3, 'hardness': 1, 'roughness': 0},
        {'material': 6, 'hardness': MISSING_LABEL, 'roughness': MISSING_LABEL},
    ]
    assert list(dataset.target_array('material')) == [0, 0, 3, 6]


def test_val_and_test_splits_hold_their_instances(root: Path):
    val, test = ObjectFolderReal(root, 'val'), build_dataset('objectfolder_real', root, 'test')
    assert (val[0].meta['object'], val[0].meta['instance']) == ('12', '0')
    assert (test[0].meta['object'], test[0].meta['instance']) == ('12', '1')
    assert len(val) == len(test) == 1


def test_images_come_from_vision_and_touch_with_their_sizes(root: Path):
    sample = ObjectFolderReal(root, 'train')[1]
    assert sample.visual[0].shape == (*OF_SIZES['vision'], 3)
    assert sample.tactile[0][0].shape == (*OF_SIZES['touch'], 3)
    assert tuple(sample.visual[0][0, 0]) == of_pixel('1', '1', 'vision')
    assert tuple(sample.tactile[0][0][0, 0]) == of_pixel('1', '1', 'touch')
    assert sample.visual[0].dtype == np.uint8


def test_without_attributes_only_the_material_head(tmp_path: Path):
    root = write_objectfolder_real(tmp_path / 'DATA_real', attributes=False)
    dataset = ObjectFolderReal(root, 'train')
    assert list(dataset.heads) == ['material']
    assert dataset[0].labels == {'material': 0}


def test_longer_sequences_repeat_the_single_frame(root: Path):
    dataset = ObjectFolderReal(root, 'train', visual_len=2, tactile_len=3)
    sample = dataset[0]
    assert len(sample.visual) == 2 and len(sample.tactile[0]) == 3
    assert (dataset.num_tactile, dataset.visual_len, dataset.tactile_len) == (1, 2, 3)


def test_class_names_are_used_when_given(root: Path):
    names = ['Ceramic', 'Glass', 'Wood', 'Plastic', 'Iron', 'Polycarbonate', 'Steel']
    assert ObjectFolderReal(root, 'train', class_names=names).heads['material'] == names
    with pytest.raises(ValueError, match='label.json'):
        ObjectFolderReal(root, 'train', class_names=names[:3])


def test_errors_name_the_root_split_and_files(root: Path, tmp_path: Path):
    with pytest.raises(FileNotFoundError, match='nowhere'):
        ObjectFolderReal(tmp_path / 'nowhere')
    with pytest.raises(ValueError, match="'validation'"):
        ObjectFolderReal(root, 'validation')
    missing = root / 'touch' / '7' / '2.png'
    missing.unlink()
    with pytest.raises(FileNotFoundError, match=str(missing)):
        ObjectFolderReal(root, 'train')[3]
    corrupt = root / 'vision' / '1' / '0.png'
    corrupt.write_bytes(b'garbage')
    with pytest.raises(ValueError, match=str(corrupt)):
        ObjectFolderReal(root, 'train')[0]
    (root / 'split.json').write_text('{"train": [')
    with pytest.raises(ValueError, match='split.json'):
        ObjectFolderReal(root, 'train')
