"""Several datasets read as one: e.g. material touches and grasps for one checkpoint.

A robot that both feels materials and grasps can run one model with all its heads; its data
comes from recordings (or public sets) that each label some heads. `Mixed` concatenates datasets
built by name, each from its own root, and gives every sample every head, with `MISSING_LABEL`
for the heads its part does not label: the stage-2 loss masks those out (``training/train.py``).
"""

from bisect import bisect_right
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from convitac_ros.data.files import require_root
from convitac_ros.data.sample import MISSING_LABEL, Sample

_DECLARED = ('num_tactile', 'visual_len', 'tactile_len')


class Mixed(Dataset):
    """The samples of several datasets, one after the other, with the union of their heads.

    Every part must take the same inputs (tactile sensors, camera and tactile sequence lengths)
    and a head shared by two parts must have the same class list. Validation holdouts take whole
    groups of a part (``group_array``: its sessions or objects, prefixed by the part's index).

    Args:
        root: Folder that relative part roots are resolved against.
        split: Split name passed to every part ('train', 'test').
        parts: One mapping per part: ``dataset`` (a `build_dataset` name other than 'mixed'),
            ``root`` and optionally ``options`` (that part's own keywords).
        **common: Keywords for every part (e.g. ``visual_len``, ``tactile_len``).

    Raises:
        ValueError: For no parts, a nested 'mixed', a part without dataset/root, parts that take
            different inputs or disagree on a head's classes.
    """

    def __init__(self, root: str | Path, split: str = 'train',
                 parts: Sequence[Mapping[str, Any]] = (), **common: Any) -> None:
        from convitac_ros.data.registry import build_dataset

        self.root = require_root(root, 'mixed dataset')
        if not parts:
            raise ValueError('a mixed dataset needs parts: [{dataset: NAME, root: DIR}, ...]')
        self.split = split
        self.parts: list[Dataset] = []
        for index, part in enumerate(parts):
            if not isinstance(part, Mapping) or 'dataset' not in part or 'root' not in part:
                raise ValueError(f'mixed dataset part {index}: expected a mapping with dataset '
                                 f'and root, got {part!r}')
            if part['dataset'] == 'mixed':
                raise ValueError(f'mixed dataset part {index}: parts cannot be mixed themselves')
            options = {**common, **dict(part.get('options') or {})}
            self.parts.append(build_dataset(part['dataset'], self.root / part['root'], split,
                                            **options))
        first = self.parts[0]
        for index, part in enumerate(self.parts[1:], start=1):
            for name in _DECLARED:
                if getattr(part, name) != getattr(first, name):
                    raise ValueError(f'mixed dataset part {index} ({parts[index]["root"]}) has '
                                     f'{name} {getattr(part, name)}, part 0 has '
                                     f'{getattr(first, name)}: every part must take the same '
                                     'inputs')
        self.num_tactile, self.visual_len, self.tactile_len = (getattr(first, n)
                                                               for n in _DECLARED)
        self.heads: dict[str, list[str]] = {}
        for index, part in enumerate(self.parts):
            for head, classes in part.heads.items():
                if self.heads.setdefault(head, list(classes)) != list(classes):
                    raise ValueError(f'mixed dataset part {index}: head {head!r} has classes '
                                     f'{list(classes)}, an earlier part {self.heads[head]}')
        self._starts = np.cumsum([0] + [len(part) for part in self.parts]).tolist()

    def __len__(self) -> int:
        """Number of samples of all parts."""
        return self._starts[-1]

    def _locate(self, index: int) -> tuple[int, int]:
        if not 0 <= index < len(self):
            raise IndexError(f'index {index} out of range for {len(self)} samples')
        part = bisect_right(self._starts, index) - 1
        return part, index - self._starts[part]

    def target_array(self, head: str) -> np.ndarray:
        """Labels of every sample for one head, MISSING where a part lacks it: int64 (N,)."""
        if head not in self.heads:
            raise KeyError(f'unknown head {head!r}; this dataset has {list(self.heads)}')
        arrays = []
        for part in self.parts:
            if head not in part.heads:
                arrays.append(np.full(len(part), MISSING_LABEL, dtype=np.int64))
            elif hasattr(part, 'target_array'):
                arrays.append(part.target_array(head))
            else:
                arrays.append(np.array([part[i].labels[head] for i in range(len(part))],
                                       dtype=np.int64))
        return np.concatenate(arrays)

    def group_array(self) -> np.ndarray:
        """The group (session, object; else the sample) of every sample, per part: (N,)."""
        groups = []
        for index, part in enumerate(self.parts):
            names = (part.group_array() if hasattr(part, 'group_array')
                     else np.arange(len(part)))
            groups.append(np.array([f'{index}:{name}' for name in names]))
        return np.concatenate(groups) if groups else np.array([])

    def __getitem__(self, index: int) -> Sample:
        """The part's sample with every head of the mix (MISSING for the part's absent ones)."""
        part, local = self._locate(index)
        sample = self.parts[part][local]
        sample.labels = {head: sample.labels.get(head, MISSING_LABEL) for head in self.heads}
        sample.meta = {**sample.meta, 'part': part}
        return sample
