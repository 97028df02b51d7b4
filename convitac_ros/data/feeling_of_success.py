"""The Feeling of Success (Calandra et al., CoRL 2017): grasp success, camera and two GelSights.

The published files were written with deepdish (PyTables HDF5); they are read with h5py, which
needs no deepdish and works under NumPy 2. Files compressed with a filter that h5py lacks
(e.g. blosc) need the `hdf5plugin` package imported first.
"""

from collections.abc import Sequence
from pathlib import Path
import re
import zlib

import h5py
import numpy as np
from torch.utils.data import Dataset

from convitac_ros.data.files import as_rgb_frame, require_root, require_split
from convitac_ros.data.sample import GRASP_CLASSES, Sample

SPLITS = ('train', 'test', 'all')
FILE_PATTERN = 'calandra_corl2017_*.h5'
CAMERA = 'kinectA_rgb'
SENSORS = ('gelsightA', 'gelsightB')
PHASES = ('before', 'during')  # never 'after': it shows whether the object was lifted
_TRIAL = re.compile(r'^i(\d+)$')


def is_test_object(object_name: str, test_fraction: float = 0.2) -> bool:
    """Deterministic object-level split: CRC-32 of the name, bucketed into 1000 bins.

    The decision depends on the object's name only, so it is the same whichever files are loaded
    and every trial of one object lands on the same side.
    """
    return zlib.crc32(object_name.encode('utf-8')) % 1000 < round(test_fraction * 1000)


def _text(value: object) -> str:
    if isinstance(value, np.ndarray):
        value = value.item() if value.size == 1 else value.tobytes()
    if isinstance(value, (bytes, np.bytes_)):
        return bytes(value).decode('utf-8').rstrip('\x00')
    return str(value)


def _flag(value: object, where: str) -> int:
    """Interpret an `is_gripping` attribute (bool, int, bytes/str 'True'/'1') as 0/1."""
    if isinstance(value, np.ndarray) and value.size == 1:
        value = value.item()
    if isinstance(value, (bytes, np.bytes_, str)):
        text = _text(value).strip().lower()
        if text in ('true', '1'):
            return 1
        if text in ('false', '0'):
            return 0
        raise ValueError(f'cannot read is_gripping={value!r} at {where}')
    if isinstance(value, (bool, np.bool_, int, np.integer)) and int(value) in (0, 1):
        return int(value)
    raise ValueError(f'cannot read is_gripping={value!r} at {where}')


class FeelingOfSuccess(Dataset):
    """Grasp trials as `Sample`s with the head grasp_success (['failure', 'success']).

    Files ``calandra_corl2017_*.h5`` under ``root`` (or `files`) each hold a group ``/data`` with
    one group per trial (``i0``, ``i1``, ...). The label is the trial group's ``is_gripping``
    attribute (1 = lifted), the object its ``object_name`` attribute. Inputs are the datasets
    ``kinectA_rgb_<phase>`` (camera) and ``gelsightA_<phase>``, ``gelsightB_<phase>`` (two
    sensors, in that order) for the phases ``[before, during]``; with a sequence length of 1 only
    ``during`` is used. The ``after`` frames are never read. Image sizes are taken from the files.

    Split: there is no official one. ``test`` holds every trial of the objects for which
    `is_test_object` is true (CRC-32 of the object name, ~20% of objects), ``train`` the others,
    ``all`` everything; no object is on both sides. `test_objects` overrides the rule with an
    explicit list; `objects` tells which objects went where.

    Args:
        root: Directory with the HDF5 files (searched for ``calandra_corl2017_*.h5``).
        split: 'train', 'test' or 'all'.
        files: Explicit HDF5 files (relative to `root` or absolute) instead of the search.
        visual_len: 1 (during) or 2 (before, during).
        tactile_len: 1 (during) or 2 (before, during).
        test_fraction: Share of objects (by hash) put in the test split.
        test_objects: Object names of the test split; overrides the hash rule.
    """

    num_tactile = len(SENSORS)

    def __init__(self, root: str | Path, split: str = 'train',
                 files: Sequence[str | Path] | None = None, visual_len: int = 2,
                 tactile_len: int = 2, test_fraction: float = 0.2,
                 test_objects: Sequence[str] | None = None) -> None:
        self.root = require_root(root, 'Feeling of Success')
        require_split(split, SPLITS, 'Feeling of Success')
        for length in (visual_len, tactile_len):
            if length not in (1, 2):
                raise ValueError(f'sequence lengths must be 1 or 2 (before, during), not {length}')
        self.split, self.visual_len, self.tactile_len = split, visual_len, tactile_len
        self.heads = {'grasp_success': list(GRASP_CLASSES)}
        if files is None:
            self.files = sorted(self.root.glob(FILE_PATTERN))
            if not self.files:
                raise FileNotFoundError(f'no {FILE_PATTERN} files in {self.root}')
        else:
            self.files = [self.root / f for f in files]
        chosen = None if test_objects is None else set(test_objects)
        self._items: list[tuple[int, str, int, str]] = []
        self.objects: dict[str, list[str]] = {'train': [], 'test': []}
        for file_index, path in enumerate(self.files):
            for trial, label, name in self._scan(path):
                in_test = name in chosen if chosen is not None else is_test_object(
                    name, test_fraction)
                side = 'test' if in_test else 'train'
                if name not in self.objects[side]:
                    self.objects[side].append(name)
                if split in ('all', side):
                    self._items.append((file_index, trial, label, name))
        self.objects = {side: sorted(names) for side, names in self.objects.items()}

    @staticmethod
    def _scan(path: Path) -> list[tuple[str, int, str]]:
        """(trial group name, label, object name) of every trial in one file, in list order."""
        if not path.is_file():
            raise FileNotFoundError(f'Feeling of Success file not found: {path}')
        try:
            with h5py.File(path, 'r') as handle:
                if 'data' not in handle:
                    raise ValueError(f'no /data group in {path}')
                trials = sorted((n for n in handle['data'] if _TRIAL.match(n)),
                                key=lambda n: int(n[1:]))
                found = []
                for trial in trials:
                    attrs = handle['data'][trial].attrs
                    where = f'{path}:/data/{trial}'
                    if 'is_gripping' not in attrs or 'object_name' not in attrs:
                        raise ValueError(f'missing is_gripping/object_name attributes at {where}')
                    found.append((trial, _flag(attrs['is_gripping'], where),
                                  _text(attrs['object_name'])))
                return found
        except OSError as error:
            raise ValueError(f'cannot read HDF5 file {path}: {error}') from error

    def __len__(self) -> int:
        """Number of trials."""
        return len(self._items)

    def target_array(self, head: str) -> np.ndarray:
        """Labels of every sample for one head, without reading images: int64 (N,)."""
        if head not in self.heads:
            raise KeyError(f'unknown head {head!r}; this dataset has {list(self.heads)}')
        return np.array([label for _, _, label, _ in self._items], dtype=np.int64)

    def group_array(self) -> np.ndarray:
        """The object of every trial (validation holds out whole objects): (N,)."""
        return np.array([name for _, _, _, name in self._items])

    def __getitem__(self, index: int) -> Sample:
        """Read trial `index`: kinect frames and 2 GelSights x T_t frames, oldest first."""
        file_index, trial, label, name = self._items[index]
        path = self.files[file_index]

        def frames(stream: str, length: int) -> list[np.ndarray]:
            out = []
            for phase in PHASES[len(PHASES) - length:]:
                key = f'{stream}_{phase}'
                where = f'{path}:/data/{trial}/{key}'
                if key not in group:
                    raise KeyError(f'missing image dataset {where}')
                out.append(as_rgb_frame(group[key][()], where))
            return out

        try:
            with h5py.File(path, 'r') as handle:
                group = handle['data'][trial]
                visual = frames(CAMERA, self.visual_len)
                tactile = [frames(sensor, self.tactile_len) for sensor in SENSORS]
        except OSError as error:
            raise ValueError(f'cannot read {path}:/data/{trial}: {error}') from error
        return Sample(visual=visual, tactile=tactile, labels={'grasp_success': label},
                      meta={'dataset': 'feeling_of_success', 'split': self.split,
                            'file': path.name, 'trial': trial, 'object': name})
