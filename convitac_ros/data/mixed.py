"""Several datasets read as one: e.g. material touches and grasps for one checkpoint.

A robot that both feels materials and grasps can run one model with all its heads; its data
comes from recordings (or public sets) that each label some heads. `Mixed` concatenates datasets
(each built by name from its own root: `convitac_ros.data.registry.build_mixed`) and gives every
sample every head, with `MISSING_LABEL` for the heads its part does not label: the stage-2 loss
masks those out (``training/train.py``).
"""

from bisect import bisect_right
from collections.abc import Sequence

import numpy as np
from torch.utils.data import Dataset

from convitac_ros.data.sample import MISSING_LABEL, Sample

_DECLARED = ('num_tactile', 'visual_len', 'tactile_len')


class Mixed(Dataset):
    """The samples of several datasets, one after the other, with the union of their heads.

    Built by ``build_dataset('mixed', root, split, parts=[...])``: one mapping per part with
    ``dataset`` (a loader name other than 'mixed'), ``root`` (relative to ``root``) and
    optionally ``options`` (that part's own keywords); the other keywords go to every part.
    Every part must take the same inputs (tactile sensors, camera and tactile sequence lengths)
    and a head shared by two parts must have the same class list. Validation holdouts take whole
    groups of a part (``group_array``: its sessions or objects, prefixed by the part's index).

    Args:
        parts: The datasets, in order.
        names: A name per part for messages (its root).
        split: The split name the parts were built with.

    Raises:
        ValueError: For no parts, or parts that take different inputs or disagree on a head's
            classes.
    """

    def __init__(self, parts: Sequence[Dataset], names: Sequence[str], split: str) -> None:
        if not parts:
            raise ValueError('a mixed dataset needs parts: [{dataset: NAME, root: DIR}, ...]')
        self.parts, self.split = list(parts), split
        first = self.parts[0]
        for index, part in enumerate(self.parts[1:], start=1):
            for name in _DECLARED:
                if getattr(part, name) != getattr(first, name):
                    raise ValueError(f'mixed dataset part {index} ({names[index]}) has '
                                     f'{name} {getattr(part, name)}, part 0 has '
                                     f'{getattr(first, name)}: every part must take the same '
                                     'inputs')
        self.num_tactile, self.visual_len, self.tactile_len = (getattr(first, n)
                                                               for n in _DECLARED)
        self.heads: dict[str, list[str]] = {}
        for index, part in enumerate(self.parts):
            for head, classes in part.heads.items():
                if self.heads.setdefault(head, list(classes)) != list(classes):
                    raise ValueError(f'mixed dataset part {index} ({names[index]}): head '
                                     f'{head!r} has classes {list(classes)}, an earlier part '
                                     f'{self.heads[head]}')
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
