"""Writers of tiny datasets in the *published* layouts, with the edge cases of the real files.

Each writer returns what a correct loader must find. Pixel values encode where a frame came
from (session, frame index, modality), so tests can check that the right file was read.
"""

import json
from pathlib import Path

import cv2
import h5py
import numpy as np

# -- Touch and Go ------------------------------------------------------------------------------
TAG_SESSIONS = ('20220410_031604', '20220411_120000')
# Camera and GelSight sizes differ per session: no loader may assume an image size.
TAG_SIZES = {TAG_SESSIONS[0]: ((40, 56), (30, 40)), TAG_SESSIONS[1]: ((24, 32), (36, 20))}
# Every extracted frame, as in label.txt: (session index, frame index, label); -1 = Inconclusive.
TAG_LABELS = [(0, 1, -1), (0, 2, 7), (0, 3, 7), (0, 4, 0), (0, 5, -1), (0, 6, 13),
              (1, 1, 3), (1, 2, 3), (1, 3, 10), (1, 4, -1)]
TAG_TRAIN = [(0, 2, 7), (0, 3, 7), (0, 4, 0), (0, 5, -1), (1, 1, 3)]
TAG_TEST = [(0, 6, 13), (1, 2, 3), (1, 4, -1)]  # class 10 (Rubber) is absent from test
TAG_TRAIN_ROUGH = [(0, 2, 0), (0, 4, 1), (1, 3, 1)]  # (1, 3) is not in train.txt
TAG_TEST_ROUGH = [(0, 6, 1)]
# category_reference.txt with the punctuation variants a lenient parser must accept.
TAG_REFERENCE = [
    'Inconclusive: -1', 'Concrete: 0', "'Plastic' : 1", '"Glass":2', 'Wood :3', '  Metal: 4  ',
    'Brick: 5', 'Tile: 6', 'Leather: 7', 'Synthetic Fabric: 8', 'Natural Fabric: 9', '',
    'Rubber: 10', 'Paper: 11', 'Tree: 12', 'Grass: 13', 'Soil: 14', 'Rock: 15', 'Gravel: 16',
    'Sand: 17', 'Plants: 18', 'Others: 19',
]


def frame_name(index: int) -> str:
    """Touch and Go frame file name: 10-digit zero-padded index."""
    return f'{index:010d}.jpg'


def tag_pixel(session: int, frame: int, tactile: bool) -> tuple[int, int, int]:
    """RGB value of every pixel of a fixture frame (a JPEG of one flat colour decodes exactly)."""
    return (0, 100 + 60 * session, 10 * frame) if tactile else (10 * frame, 100 + 60 * session, 0)


def _lines(entries: list[tuple[int, int, int]]) -> str:
    # The official list files end without a newline.
    return '\n'.join(f'{TAG_SESSIONS[s]}/{frame_name(f)},{label}' for s, f, label in entries)


def write_touch_and_go(root: Path, label_txt: bool = True, reference: bool = True) -> Path:
    """Write a two-session Touch and Go tree; returns `root`.

    Args:
        root: Directory to create.
        label_txt: Also write label.txt (the sequence context of every frame).
        reference: Also write category_reference.txt.
    """
    for s, session in enumerate(TAG_SESSIONS):
        for folder, size, tactile in (('video_frame', TAG_SIZES[session][0], False),
                                      ('gelsight_frame', TAG_SIZES[session][1], True)):
            (root / session / folder).mkdir(parents=True, exist_ok=True)
            for _, frame, _ in (e for e in TAG_LABELS if e[0] == s):
                rgb = np.full((*size, 3), tag_pixel(s, frame, tactile), np.uint8)
                cv2.imwrite(str(root / session / folder / frame_name(frame)),
                            cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    files = {'train.txt': TAG_TRAIN, 'test.txt': TAG_TEST, 'train_rough.txt': TAG_TRAIN_ROUGH,
             'test_rough.txt': TAG_TEST_ROUGH}
    if label_txt:
        files['label.txt'] = TAG_LABELS
    for name, entries in files.items():
        (root / name).write_text(_lines(entries), encoding='utf-8')
    if reference:
        (root / 'category_reference.txt').write_text('\n'.join(TAG_REFERENCE), encoding='utf-8')
    return root


# -- The Feeling of Success --------------------------------------------------------------------
# (object name, is_gripping attribute as stored) per trial and file; attribute types vary as they
# may in files written by different tools. The hash rule makes 'soda_can', 'spoon' test objects.
FOS_FILES = {
    'calandra_corl2017_000.h5': [
        (b'plastic_duck', np.bool_(True)), (b'soda_can', np.bool_(False)), ('mug', True),
        (np.bytes_(b'plastic_duck'), np.int64(0))],
    'calandra_corl2017_001.h5': [(b'spoon', b'True'), (b'mug', np.array([False]))],
}
FOS_LABELS = [1, 0, 1, 0, 1, 0]
FOS_OBJECTS = ['plastic_duck', 'soda_can', 'mug', 'plastic_duck', 'spoon', 'mug']
FOS_TEST_OBJECTS = ['soda_can', 'spoon']
FOS_PHASE_VALUE = {'before': 40, 'during': 80, 'after': 250}  # 'after' must never be read
FOS_STREAM_VALUE = {'kinectA_rgb': 1, 'gelsightA': 2, 'gelsightB': 3}
FOS_SIZES = {'kinectA_rgb': (48, 64), 'gelsightA': (30, 40), 'gelsightB': (32, 24)}


def fos_pixel(trial: int, stream: str, phase: str) -> tuple[int, int, int]:
    """RGB value of a fixture image: (phase, stream, global trial number)."""
    return FOS_PHASE_VALUE[phase], FOS_STREAM_VALUE[stream], trial


def write_feeling_of_success(root: Path) -> Path:
    """Write two deepdish-like HDF5 files (``/data/i<k>`` groups with attributes); returns root."""
    root.mkdir(parents=True, exist_ok=True)
    trial = 0
    for name, trials in FOS_FILES.items():
        with h5py.File(root / name, 'w') as handle:
            data = handle.create_group('data')
            for k, (object_name, gripping) in enumerate(trials):
                group = data.create_group(f'i{k}')
                group.attrs['object_name'] = object_name
                group.attrs['is_gripping'] = gripping
                for stream, size in FOS_SIZES.items():
                    for phase in FOS_PHASE_VALUE:
                        group.create_dataset(f'{stream}_{phase}', data=np.full(
                            (*size, 3), fos_pixel(trial, stream, phase), np.uint8))
                trial += 1
    return root


# -- ObjectFolder Real -------------------------------------------------------------------------
OF_LABELS = {'1': 0, '2': 3, '7': 6, '12': 3}
OF_SPLIT = {'train': [[1, 0], [1, 1], ['2', '0'], [7, 2]], 'val': [[12, 0]], 'test': [[12, 1]]}
OF_ATTRIBUTES = {'1': {'hardness': 0, 'roughness': 1}, '2': {'hardness': 1, 'roughness': 0}}
OF_SIZES = {'vision': (50, 40), 'touch': (36, 48)}


def of_pixel(obj: str, inst: str, modality: str) -> tuple[int, int, int]:
    """RGB value of an ObjectFolder fixture image."""
    return int(obj) * 10, int(inst) * 10, 200 if modality == 'touch' else 100


def write_objectfolder_real(root: Path, attributes: bool = True) -> Path:
    """Write a ``DATA_real`` tree (PNG crops, label.json, split.json, attributes.json)."""
    for entries in OF_SPLIT.values():
        for obj, inst in entries:
            for modality, size in OF_SIZES.items():
                folder = root / modality / str(obj)
                folder.mkdir(parents=True, exist_ok=True)
                rgb = np.full((*size, 3), of_pixel(str(obj), str(inst), modality), np.uint8)
                cv2.imwrite(str(folder / f'{inst}.png'), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    (root / 'label.json').write_text(json.dumps(OF_LABELS), encoding='utf-8')
    (root / 'split.json').write_text(json.dumps(OF_SPLIT), encoding='utf-8')
    if attributes:
        (root / 'attributes.json').write_text(json.dumps(OF_ATTRIBUTES), encoding='utf-8')
    return root
