"""Touch and Go (Yang et al., NeurIPS 2022): material, hard/soft and rough/smooth.

Reads the layout left by the dataset's own frame extraction (see `TouchAndGo`). Only the list
files are parsed at construction; images are decoded lazily, one sample at a time.
"""

from collections.abc import Iterable
import os
from pathlib import Path
import re

import numpy as np
from torch.utils.data import Dataset

from convitac_ros.data.files import read_image, require_root, require_split
from convitac_ros.data.sample import HARDNESS_CLASSES, MISSING_LABEL, ROUGHNESS_CLASSES, Sample

OFFICIAL_CLASSES = [
    'Concrete', 'Plastic', 'Glass', 'Wood', 'Metal', 'Brick', 'Tile', 'Leather',
    'Synthetic Fabric', 'Natural Fabric', 'Rubber', 'Paper', 'Tree', 'Grass', 'Soil', 'Rock',
    'Gravel', 'Sand', 'Plants', 'Others',
]
# The dataset defines hard/soft from the material: indices {7, 8, 9, 11, 13} are soft. Stated by
# name so that a category_reference.txt with its own classes (the synthetic world) keeps the rule.
SOFT_MATERIALS = ('Leather', 'Synthetic Fabric', 'Natural Fabric', 'Paper', 'Grass')
SPLITS = ('train', 'test')
TASKS = ('material', 'roughness', 'frames')
FRAME_SOURCES = ('listed', 'disk')
# GelSight folders of a session, first sensor first: the second is the opposite finger of a
# two-finger gripper (the synthetic world's ``fingers=2``; not part of the official layout).
TACTILE_FOLDERS = ('gelsight_frame', 'gelsight_b_frame')
_INCONCLUSIVE = -1
# label.txt of a dataset written from bags: a frame set in contact that nobody labelled (stage 1
# learns from it, stage 2 does not); -1 there is a set out of contact.
UNLABELLED_CONTACT = -2
# `name: index` (what convitac_make_dataset writes; the name may hold separators itself, so the
# index is the number after the LAST one), else `index: name` (the official file).
_NAME_INDEX = re.compile(r'^(?P<name>.+)[:=,]\s*(?P<index>-?\d+)\s*,?$')
_INDEX_NAME = re.compile(r'^(?P<index>-?\d+)\s*[:=,]\s*(?P<name>.+?)\s*,?$')


def normalise_name(name: str) -> str:
    """Lower-case a name and keep letters and digits: 'Synthetic_Fabric' -> 'syntheticfabric'."""
    return ''.join(ch for ch in name.lower() if ch.isalnum())


def parse_reference_line(line: str) -> tuple[str, int] | None:
    """One ``category_reference.txt`` line as (name, index), or None when it holds no pair.

    ``Wood: 0`` and ``0: Wood`` both give ('Wood', 0); a name that itself holds a separator
    and a number (``0: Wood: 0``) keeps them, the index being the number after the last one.
    Quotes around the name are dropped.
    """
    line = line.strip()
    match = _NAME_INDEX.match(line) or _INDEX_NAME.match(line)
    if match is None:
        return None
    name = match.group('name').strip().strip('\'"').strip()
    return (name, int(match.group('index'))) if name else None


def parse_category_reference(path: Path) -> list[str]:
    """Read class names from lines such as ``Concrete: 0`` (lenient about quotes and separators).

    Lines may also be written ``0: Concrete``. The Inconclusive class (-1) is skipped.

    Returns:
        Class names ordered by index 0..K-1.

    Raises:
        ValueError: naming the file when a line cannot be parsed or the indices have gaps.
    """
    by_index: dict[int, str] = {}
    for number, line in enumerate(path.read_text(encoding='utf-8').splitlines(), start=1):
        if not line.strip():
            continue
        parsed = parse_reference_line(line)
        if parsed is None:
            raise ValueError(f'{path}:{number}: no class name and index in {line.strip()!r}')
        name, index = parsed
        if index >= 0:
            by_index[index] = name
    if sorted(by_index) != list(range(len(by_index))) or not by_index:
        raise ValueError(f'{path}: class indices must be 0..K-1, got {sorted(by_index)}')
    return [by_index[i] for i in range(len(by_index))]


def parse_frame_list(path: Path) -> list[tuple[str, str, int]]:
    """Read a Touch and Go list file of ``<session>/<frame>.jpg,<label>`` lines.

    The last line has no trailing newline in the official files; blank lines are ignored.

    Returns:
        (session, frame file name, label) per line, in file order.

    Raises:
        ValueError: naming the file and line when a line is malformed.
    """
    entries = []
    for number, line in enumerate(path.read_text(encoding='utf-8').splitlines(), start=1):
        line = line.strip()
        if not line:
            continue
        frame_path, sep, label = line.rpartition(',')
        session, slash, frame = frame_path.strip().partition('/')
        if not sep or not slash or not session or not frame or not re.fullmatch(
                r'\s*-?\d+\s*', label):
            raise ValueError(f'{path}:{number}: expected "<session>/<frame>,<label>": {line!r}')
        entries.append((session, frame, int(label)))
    return entries


def soft_class_indices(names: list[str], soft_materials: Iterable[str]) -> frozenset[int]:
    """Indices of the classes whose (normalised) name is one of `soft_materials`."""
    soft = {normalise_name(name) for name in soft_materials}
    return frozenset(i for i, name in enumerate(names) if normalise_name(name) in soft)


def _frame_order(name: str) -> tuple[int, str]:
    """Sort key that puts '9.jpg' before '10.jpg' and keeps zero-padded names in order."""
    stem = name.rsplit('.', 1)[0]
    return len(stem), stem


class TouchAndGo(Dataset):
    """Touch and Go frames as `Sample`s with heads material, hardness and roughness.

    Layout (``root``): ``label.txt`` (optional), ``category_reference.txt`` (optional; else the
    official 20 names), ``train.txt``/``test.txt`` (material lists), ``train_rough.txt``/
    ``test_rough.txt`` (rough lists, 1 = rough), and per session ``<session>/video_frame/<frame>``
    and ``<session>/gelsight_frame/<frame>`` (same name = synchronous pair).

    Labels:
        - ``task='material'`` yields the lines of ``<split>.txt`` whose label is not -1
          (Inconclusive). Hardness is derived from the material: soft when its name is one of
          `SOFT_MATERIALS` (= indices {7, 8, 9, 11, 13} of the official list). Roughness is the
          frame's label in ``<split>_rough.txt`` when it is listed there, else MISSING.
        - ``task='roughness'`` yields the lines of ``<split>_rough.txt``; material (and hardness)
          come from ``<split>.txt`` when the frame is listed there with a label other than -1,
          else MISSING.
        - ``task='frames'`` (stage 1, ``split='train'`` only): every frame of the training data,
          labelled or not, without its labels: the frames of ``train.txt`` first, then every
          other frame that ``label.txt`` or a list names (with ``frames='disk'`` also those
          found only on disk, pairs whose camera and GelSight files both exist). Left out:
          frames labelled -1 (Inconclusive: the approach, a blank gel that shares nothing with
          the camera) that no training list labels (``UNLABELLED_CONTACT``, -2, in a label.txt
          written from bags is a frame in contact without a label: it is kept), and every
          frame a test list names; with
          ``frames_task='roughness'`` also every frame of a session of ``test_rough.txt`` (that
          split is session-disjoint; the material split is frame-level).
        Labels are only ever taken from lists of the requested split: the official material split
        is frame-level while the rough split is session-disjoint, so borrowing a label from the
        other split would leak test frames into training.

    Sequences: the sample's frame is the newest; older frames are the preceding frames of the same
    session (in frame-name order, `frame_stride` apart) among those named in ``label.txt`` or any
    list file, clamped at the first frame of the session.

    Args:
        root: Dataset root directory.
        split: 'train' or 'test'.
        task: 'material' or 'roughness' (which list defines the samples).
        visual_len: Camera frames per sample (T_v).
        tactile_len: GelSight frames per sample (T_t).
        frame_stride: Step between the frames of a sequence, in frames.
        soft_materials: Names of the soft classes, see above.
        frames: With ``task='frames'``: 'listed' (frames named in a list file) or 'disk' (also
            the frames only found in the session folders).
        frames_task: With ``task='frames'``: the task whose test data must stay unseen,
            'material' or 'roughness'.
        num_tactile: 1, or 2 to also read the opposite finger from ``gelsight_b_frame``
            (`TACTILE_FOLDERS`; same frame names).
    """

    def __init__(self, root: str | Path, split: str = 'train', task: str = 'material',
                 visual_len: int = 2, tactile_len: int = 2, frame_stride: int = 1,
                 soft_materials: Iterable[str] = SOFT_MATERIALS, frames: str = 'listed',
                 frames_task: str = 'material', num_tactile: int = 1) -> None:
        self.root = require_root(root, 'Touch and Go')
        if num_tactile not in range(1, len(TACTILE_FOLDERS) + 1):
            raise ValueError(f'Touch and Go num_tactile must be 1 or 2, got {num_tactile}')
        self.num_tactile = num_tactile
        require_split(split, SPLITS, 'Touch and Go')
        require_split(task, TASKS, 'Touch and Go task')
        require_split(frames, FRAME_SOURCES, 'Touch and Go frames')
        if task == 'frames' and split != 'train':
            raise ValueError(f"Touch and Go task 'frames' reads the train split, not {split!r}")
        require_split(frames_task, ('material', 'roughness'), 'Touch and Go frames_task')
        self.frame_source, self.frames_task = frames, frames_task
        if min(visual_len, tactile_len, frame_stride) < 1:
            raise ValueError('visual_len, tactile_len and frame_stride must be >= 1')
        self.split, self.task = split, task
        self.visual_len, self.tactile_len = visual_len, tactile_len
        self.frame_stride = frame_stride
        reference = self.root / 'category_reference.txt'
        names = parse_category_reference(reference) if reference.is_file() else OFFICIAL_CLASSES
        self.heads = {'material': list(names), 'hardness': list(HARDNESS_CLASSES),
                      'roughness': list(ROUGHNESS_CLASSES)}
        self._soft = soft_class_indices(self.heads['material'], soft_materials)
        self._build_index()

    def _list(self, name: str, required: bool) -> list[tuple[str, str, int]]:
        path = self.root / name
        if not path.is_file():
            if required:
                raise FileNotFoundError(f'Touch and Go list file not found: {path}')
            return []
        return parse_frame_list(path)

    def _build_index(self) -> None:
        if self.task == 'frames':
            self._build_frame_index()
            return
        material_name, rough_name = f'{self.split}.txt', f'{self.split}_rough.txt'
        materials = self._list(material_name, self.task == 'material')
        roughs = self._list(rough_name, self.task == 'roughness')
        classes = len(self.heads['material'])
        for session, frame, label in materials:
            if not _INCONCLUSIVE <= label < classes:
                raise ValueError(f'{self.root / material_name}: label {label} of '
                                 f'{session}/{frame} is outside -1..{classes - 1}')
        for session, frame, label in roughs:
            if label not in (0, 1):
                raise ValueError(f'{self.root / rough_name}: rough label {label} of '
                                 f'{session}/{frame} is not 0 or 1')
        known: dict[str, set[str]] = {}
        context_lists = ['label.txt'] + [f'{s}{x}.txt' for s in SPLITS for x in ('', '_rough')]
        for name in context_lists:
            entries = {material_name: materials, rough_name: roughs}.get(name)
            for session, frame, _ in entries if entries is not None else self._list(name, False):
                known.setdefault(session, set()).add(frame)
        position = self._set_frames(known)
        material_of = {(s, f): label for s, f, label in materials if label != _INCONCLUSIVE}
        rough_of = {(s, f): label for s, f, label in roughs}
        source = materials if self.task == 'material' else roughs
        self._items = []
        for session, frame, _ in source:
            key = (session, frame)
            if self.task == 'material' and key not in material_of:
                continue
            material = material_of.get(key, MISSING_LABEL)
            self._items.append((*position[key], material, rough_of.get(key, MISSING_LABEL)))

    def _set_frames(self, known: dict[str, set[str]]) -> dict[tuple[str, str], tuple[int, int]]:
        """Keeps every session's frames in order; returns (session, frame) -> their indices."""
        self._sessions = sorted(known)
        self._frames = [sorted(known[s], key=_frame_order) for s in self._sessions]
        return {(s, f): (i, p) for i, s in enumerate(self._sessions)
                for p, f in enumerate(self._frames[i])}

    def _disk_frames(self, session: str) -> list[str]:
        """Frame names of ``session`` with both a camera and a GelSight file on disk."""
        folder = self.root / session
        try:
            camera = {entry.name for entry in os.scandir(folder / 'video_frame')}
            gel = {entry.name for entry in os.scandir(folder / 'gelsight_frame')}
        except OSError:
            return []
        return sorted(camera & gel, key=_frame_order)

    def _build_frame_index(self) -> None:
        """The samples of ``task='frames'`` (see the class docstring), in a fixed order."""
        lists = {name: self._list(name, False) for name in
                 ['train.txt', 'label.txt', 'train_rough.txt', 'test.txt', 'test_rough.txt']}
        if not lists['train.txt'] and not lists['label.txt']:
            raise FileNotFoundError(f'Touch and Go: neither {self.root / "train.txt"} nor '
                                    f'{self.root / "label.txt"} exists')
        excluded = {(s, f) for name in ('test.txt', 'test_rough.txt') for s, f, _ in lists[name]}
        # -1 anywhere marks a frame Inconclusive unless a training list labels it (the datasets
        # written from bags list every frame in label.txt as -1, their labels in train.txt).
        labelled = {(s, f) for name in ('train.txt', 'train_rough.txt')
                    for s, f, label in lists[name] if label != _INCONCLUSIVE}
        excluded |= {(s, f) for entries in lists.values() for s, f, label in entries
                     if label == _INCONCLUSIVE and (s, f) not in labelled}
        test_sessions = ({s for s, _, _ in lists['test_rough.txt']}
                         if self.frames_task == 'roughness' else set())
        order: dict[tuple[str, str], None] = {}
        for name in ('train.txt', 'label.txt', 'train_rough.txt'):
            order.update((((s, f), None) for s, f, _ in lists[name]))
        known: dict[str, set[str]] = {}
        for entries in lists.values():
            for session, frame, _ in entries:
                known.setdefault(session, set()).add(frame)
        if self.frame_source == 'disk':
            sessions = [entry.name for entry in os.scandir(self.root) if entry.is_dir()]
            for session in sorted(sessions):  # folders without the two frame folders add none
                frames = self._disk_frames(session)
                known.setdefault(session, set()).update(frames)
                order.update(((session, f), None) for f in frames)
        position = self._set_frames(known)
        self._items = [(*position[key], MISSING_LABEL, MISSING_LABEL) for key in order
                       if key not in excluded and key[0] not in test_sessions]

    def __len__(self) -> int:
        """Number of samples."""
        return len(self._items)

    def _labels(self, material: int, roughness: int) -> dict[str, int]:
        hardness = MISSING_LABEL if material == MISSING_LABEL else int(material in self._soft)
        return {'material': material, 'hardness': hardness, 'roughness': roughness}

    def target_array(self, head: str) -> np.ndarray:
        """Labels of every sample for one head, without reading images: int64 (N,)."""
        return np.array([self._labels(m, r)[head] for _, _, m, r in self._items], dtype=np.int64)

    def frame_keys(self) -> list[tuple[str, str]]:
        """(session, frame name) of every sample, without reading images."""
        return [(self._sessions[s], self._frames[s][p]) for s, p, _, _ in self._items]

    def group_array(self) -> np.ndarray:
        """The recording session of every sample (validation holds out whole sessions): (N,)."""
        return np.array([session for session, _ in self.frame_keys()])

    def _sequence(self, session: int, position: int, length: int) -> list[str]:
        frames = self._frames[session]
        steps = range(length - 1, -1, -1)
        return [frames[max(0, position - k * self.frame_stride)] for k in steps]

    def __getitem__(self, index: int) -> Sample:
        """Read sample `index`: T_v camera frames and S x T_t GelSight frames, oldest first."""
        session, position, material, roughness = self._items[index]
        folder = self.root / self._sessions[session]
        visual_names = self._sequence(session, position, self.visual_len)
        tactile_names = self._sequence(session, position, self.tactile_len)
        return Sample(
            visual=[read_image(folder / 'video_frame' / name) for name in visual_names],
            tactile=[[read_image(folder / sensor / name) for name in tactile_names]
                     for sensor in TACTILE_FOLDERS[:self.num_tactile]],
            labels=self._labels(material, roughness),
            meta={'dataset': 'touch_and_go', 'split': self.split, 'task': self.task,
                  'session': self._sessions[session], 'frame': self._frames[session][position],
                  'visual_frames': visual_names, 'tactile_frames': tactile_names})
