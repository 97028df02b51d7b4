"""TouchAndGo reads the published layout exactly (fixture written by test/fixtures_data.py)."""

from pathlib import Path

from fixtures_data import frame_name, tag_pixel, TAG_SESSIONS, TAG_SIZES, write_touch_and_go
import numpy as np
import pytest

from convitac_ros.data import build_dataset, MISSING_LABEL, TouchAndGo
from convitac_ros.data.touch_and_go import (
    OFFICIAL_CLASSES,
    parse_category_reference,
    parse_frame_list,
    soft_class_indices,
    SOFT_MATERIALS,
)

S0, S1 = TAG_SESSIONS
M = MISSING_LABEL


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return write_touch_and_go(tmp_path / 'tag')


def _keys(dataset: TouchAndGo) -> list[tuple[str, str, dict]]:
    return [(dataset[i].meta['session'], dataset[i].meta['frame'], dataset[i].labels)
            for i in range(len(dataset))]


def test_official_soft_names_are_indices_7_8_9_11_13():
    assert soft_class_indices(OFFICIAL_CLASSES, SOFT_MATERIALS) == {7, 8, 9, 11, 13}


def test_category_reference_parsing_is_lenient_and_skips_inconclusive(root: Path):
    assert parse_category_reference(root / 'category_reference.txt') == OFFICIAL_CLASSES


def test_category_reference_accepts_index_first_and_rejects_gaps(tmp_path: Path):
    path = tmp_path / 'category_reference.txt'
    path.write_text('0: Stone\n1 : "Moss"')
    assert parse_category_reference(path) == ['Stone', 'Moss']
    path.write_text('Stone: 0\nMoss: 2')
    with pytest.raises(ValueError, match='category_reference.txt'):
        parse_category_reference(path)


def test_list_without_trailing_newline_keeps_its_last_line(root: Path):
    assert (root / 'test.txt').read_text()[-1] != '\n'
    entries = parse_frame_list(root / 'test.txt')
    assert entries[-1] == (S1, frame_name(4), -1)
    assert len(entries) == 3


def test_material_train_split_excludes_inconclusive_and_derives_hardness(root: Path):
    dataset = TouchAndGo(root, 'train')
    assert dataset.heads == {'material': OFFICIAL_CLASSES, 'hardness': ['hard', 'soft'],
                             'roughness': ['smooth', 'rough']}
    assert _keys(dataset) == [
        (S0, frame_name(2), {'material': 7, 'hardness': 1, 'roughness': 0}),
        (S0, frame_name(3), {'material': 7, 'hardness': 1, 'roughness': M}),
        (S0, frame_name(4), {'material': 0, 'hardness': 0, 'roughness': 1}),
        (S1, frame_name(1), {'material': 3, 'hardness': 0, 'roughness': M}),
    ]


def test_material_test_split_counts_and_labels(root: Path):
    dataset = TouchAndGo(root, 'test')
    assert _keys(dataset) == [
        (S0, frame_name(6), {'material': 13, 'hardness': 1, 'roughness': 1}),
        (S1, frame_name(2), {'material': 3, 'hardness': 0, 'roughness': M}),
    ]
    assert 10 not in dataset.target_array('material')


def test_roughness_task_takes_material_only_from_the_same_split(root: Path):
    dataset = TouchAndGo(root, 'train', task='roughness')
    assert _keys(dataset) == [
        (S0, frame_name(2), {'material': 7, 'hardness': 1, 'roughness': 0}),
        (S0, frame_name(4), {'material': 0, 'hardness': 0, 'roughness': 1}),
        # Material 10 is in label.txt only, not in train.txt: unknown, not invented.
        (S1, frame_name(3), {'material': M, 'hardness': M, 'roughness': 1}),
    ]
    assert list(dataset.target_array('roughness')) == [0, 1, 1]


def test_sequences_use_preceding_frames_and_clamp_at_session_start(root: Path):
    dataset = TouchAndGo(root, 'train', visual_len=3, tactile_len=2)
    first, _, third, other = (dataset[i] for i in range(4))
    assert first.meta['visual_frames'] == [frame_name(i) for i in (1, 1, 2)]
    assert third.meta['visual_frames'] == [frame_name(i) for i in (2, 3, 4)]
    assert third.meta['tactile_frames'] == [frame_name(i) for i in (3, 4)]
    assert other.meta['visual_frames'] == [frame_name(1)] * 3
    np.testing.assert_allclose(third.visual[0][0, 0], tag_pixel(0, 2, False), atol=2)
    np.testing.assert_allclose(third.tactile[0][1][0, 0], tag_pixel(0, 4, True), atol=2)


def test_frame_stride_skips_frames(root: Path):
    dataset = TouchAndGo(root, 'test', visual_len=3, tactile_len=1, frame_stride=2)
    assert dataset[0].meta['visual_frames'] == [frame_name(i) for i in (2, 4, 6)]


def test_without_label_txt_context_comes_from_the_lists(tmp_path: Path):
    root = write_touch_and_go(tmp_path / 'tag', label_txt=False)
    dataset = TouchAndGo(root, 'train', visual_len=2, tactile_len=1)
    # Frame 1 of session 0 is named in no list, so frame 2 is the first known frame.
    assert dataset[0].meta['visual_frames'] == [frame_name(2), frame_name(2)]


def test_images_are_rgb_uint8_with_their_own_sizes(root: Path):
    sample = TouchAndGo(root, 'train', visual_len=1, tactile_len=1)[3]
    (camera,), ((tactile,),) = sample.visual, sample.tactile
    assert camera.dtype == np.uint8 and tactile.dtype == np.uint8
    assert camera.shape == (*TAG_SIZES[S1][0], 3)
    assert tactile.shape == (*TAG_SIZES[S1][1], 3)
    np.testing.assert_allclose(camera[5, 5], tag_pixel(1, 1, False), atol=2)
    np.testing.assert_allclose(tactile[5, 5], tag_pixel(1, 1, True), atol=2)


def test_dataset_declares_sensor_count_and_lengths(root: Path):
    dataset = build_dataset('touch_and_go', root, 'train', visual_len=3, tactile_len=1)
    assert isinstance(dataset, TouchAndGo)
    assert (dataset.num_tactile, dataset.visual_len, dataset.tactile_len) == (1, 3, 1)


def test_custom_category_reference_defines_classes_and_soft_by_name(root: Path):
    (root / 'category_reference.txt').write_text('Rock: 0\nPaper: 1\nGrass: 2\nMetal: 3')
    (root / 'train.txt').write_text(f'{S0}/{frame_name(2)},1\n{S0}/{frame_name(3)},3')
    dataset = TouchAndGo(root, 'train')
    assert dataset.heads['material'] == ['Rock', 'Paper', 'Grass', 'Metal']
    assert list(dataset.target_array('hardness')) == [1, 0]


def test_missing_reference_falls_back_to_official_names(tmp_path: Path):
    root = write_touch_and_go(tmp_path / 'tag', reference=False)
    assert TouchAndGo(root, 'train').heads['material'] == OFFICIAL_CLASSES


def test_missing_root_names_the_directory(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match='nowhere'):
        TouchAndGo(tmp_path / 'nowhere', 'train')


def test_unknown_split_and_task_are_refused(root: Path):
    with pytest.raises(ValueError, match="'val'"):
        TouchAndGo(root, 'val')
    with pytest.raises(ValueError, match="'grasp'"):
        TouchAndGo(root, 'train', task='grasp')


def test_missing_list_file_names_it(root: Path):
    (root / 'train_rough.txt').unlink()
    with pytest.raises(FileNotFoundError, match='train_rough.txt'):
        TouchAndGo(root, 'train', task='roughness')
    assert len(TouchAndGo(root, 'train')) == 4


def test_missing_frame_names_the_file(root: Path):
    missing = root / S0 / 'gelsight_frame' / frame_name(2)
    missing.unlink()
    with pytest.raises(FileNotFoundError, match=str(missing)):
        TouchAndGo(root, 'train', tactile_len=1)[0]


def test_corrupt_image_names_the_file(root: Path):
    corrupt = root / S0 / 'video_frame' / frame_name(4)
    corrupt.write_bytes(b'\xff\xd8 not really a jpeg')
    with pytest.raises(ValueError, match=str(corrupt)):
        TouchAndGo(root, 'train', visual_len=1)[2]


def test_malformed_line_and_out_of_range_label_name_the_file(root: Path):
    (root / 'test.txt').write_text(f'{S0}/{frame_name(6)},13\nno comma here')
    with pytest.raises(ValueError, match='test.txt:2'):
        TouchAndGo(root, 'test')
    (root / 'test.txt').write_text(f'{S0}/{frame_name(6)},20')
    with pytest.raises(ValueError, match='test.txt'):
        TouchAndGo(root, 'test')


# -- stage 1: every frame of the training data, labelled or not ----------------------------------
def _frames(dataset: TouchAndGo) -> list[tuple[str, str]]:
    return [(dataset[i].meta['session'], dataset[i].meta['frame']) for i in range(len(dataset))]


def test_frames_task_takes_unlabelled_frames_but_no_inconclusive_or_test_frame(root: Path):
    frames = TouchAndGo(root, 'train', task='frames', visual_len=1, tactile_len=1)
    # train.txt first, then what label.txt adds: (S1, 3) is labelled there but in no split;
    # (S0, 1), (S0, 5), (S1, 4) are -1 (approach / Inconclusive); (S0, 6), (S1, 2) are test.
    assert _frames(frames) == [(S0, frame_name(2)), (S0, frame_name(3)), (S0, frame_name(4)),
                               (S1, frame_name(1)), (S1, frame_name(3))]
    sample = frames[4]
    assert all(label == M for label in sample.labels.values())
    assert len(sample.visual) == 1 and len(sample.tactile[0]) == 1
    assert np.abs(sample.visual[0][0, 0] - np.array(tag_pixel(1, 3, False))).max() <= 2
    assert np.abs(sample.tactile[0][0][0, 0] - np.array(tag_pixel(1, 3, True))).max() <= 2


def test_frames_for_the_roughness_task_leave_out_the_rough_test_sessions(root: Path):
    # test_rough.txt is session-disjoint: a rough test session must stay unseen by stage 1.
    frames = TouchAndGo(root, 'train', task='frames', frames_task='roughness')
    assert _frames(frames) == [(S1, frame_name(1)), (S1, frame_name(3))]


def test_frames_from_disk_add_complete_pairs_that_no_list_names(root: Path):
    import cv2
    pixel = np.full((8, 8, 3), 90, np.uint8)
    for folder in ('video_frame', 'gelsight_frame'):
        cv2.imwrite(str(root / S1 / folder / frame_name(7)), pixel)
    cv2.imwrite(str(root / S1 / 'video_frame' / frame_name(8)), pixel)  # no GelSight frame
    (root / 'notes').mkdir()  # not a session
    listed = _frames(TouchAndGo(root, 'train', task='frames'))
    assert (S1, frame_name(7)) not in listed
    disk = _frames(TouchAndGo(root, 'train', task='frames', frames='disk'))
    assert disk == [*listed, (S1, frame_name(7))]


def test_frames_task_refuses_the_test_split_and_unknown_sources(root: Path):
    with pytest.raises(ValueError, match='reads the train split'):
        TouchAndGo(root, 'test', task='frames')
    with pytest.raises(ValueError, match='frames'):
        TouchAndGo(root, 'train', task='frames', frames='everything')


def test_frames_labelled_in_train_are_kept_when_label_txt_says_minus_one(root: Path):
    # convitac_make_dataset lists every frame of a bag in label.txt as -1 and its labelled frames
    # in train.txt: those must stay, the frames nobody labelled must go (they may be approaches).
    lines = (root / 'label.txt').read_text().splitlines()
    (root / 'label.txt').write_text('\n'.join(line.rsplit(',', 1)[0] + ',-1' for line in lines))
    frames = _frames(TouchAndGo(root, 'train', task='frames'))
    # (S1, 3) is labelled by train_rough.txt; (S0, 1), (S1, 4) and (S0, 5) by no training list.
    assert frames == [(S0, frame_name(2)), (S0, frame_name(3)), (S0, frame_name(4)),
                      (S1, frame_name(1)), (S1, frame_name(3))]
