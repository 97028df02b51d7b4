"""Build a dataset by name: the one entry point of the training scripts and the bag tools."""

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from convitac_ros.data.feeling_of_success import FeelingOfSuccess
from convitac_ros.data.files import require_root
from convitac_ros.data.mixed import Mixed
from convitac_ros.data.objectfolder import ObjectFolderReal
from convitac_ros.data.touch_and_go import TouchAndGo

DATASETS: dict[str, type[Dataset]] = {
    'touch_and_go': TouchAndGo,
    'feeling_of_success': FeelingOfSuccess,
    'objectfolder_real': ObjectFolderReal,
}
MIXED = 'mixed'


def build_dataset(name: str, root: str | Path, split: str, **kwargs: Any) -> Dataset:
    """Create a dataset of `Sample`s.

    Args:
        name: 'touch_and_go', 'feeling_of_success', 'objectfolder_real' or 'mixed' (several
            of these read as one, `Mixed`: keyword ``parts``, see `build_mixed`).
        root: Dataset root directory (the synthetic world writes the same layouts).
        split: Split name of that dataset ('train'/'test', FoS also 'all', OF Real also 'val').
        **kwargs: Passed to the dataset class, e.g. ``visual_len``, ``tactile_len``,
            ``task`` (Touch and Go).

    Returns:
        The dataset; it declares ``heads``, ``num_tactile``, ``visual_len``,
        ``tactile_len``.

    Raises:
        ValueError: for an unknown dataset name or split.
    """
    if name == MIXED:
        return build_mixed(root, split, **kwargs)
    if name not in DATASETS:
        raise ValueError(f'unknown dataset {name!r}; expected one of '
                         f'{", ".join([*DATASETS, MIXED])}')
    return DATASETS[name](root, split=split, **kwargs)


def build_mixed(root: str | Path, split: str, parts: Sequence[Mapping[str, Any]] = (),
                **common: Any) -> Mixed:
    """Several datasets read as one (`Mixed`), e.g. material touches and grasps.

    Args:
        root: Folder that relative part roots are resolved against.
        split: Split name passed to every part ('train', 'test').
        parts: One mapping per part: ``dataset`` (a name of `DATASETS`), ``root`` and
            optionally ``options`` (that part's own keywords).
        **common: Keywords for every part (e.g. ``visual_len``, ``tactile_len``).

    Raises:
        ValueError: For a part without dataset/root, a nested 'mixed', or parts that do not
            fit together (see `Mixed`).
    """
    folder = require_root(root, 'mixed dataset')
    built = []
    for index, part in enumerate(parts):
        if not isinstance(part, Mapping) or 'dataset' not in part or 'root' not in part:
            raise ValueError(f'mixed dataset part {index}: expected a mapping with dataset '
                             f'and root, got {part!r}')
        if part['dataset'] == MIXED:
            raise ValueError(f'mixed dataset part {index}: parts cannot be mixed themselves')
        options = {**common, **dict(part.get('options') or {})}
        built.append(build_dataset(part['dataset'], folder / part['root'], split, **options))
    return Mixed(built, [str(part['root']) for part in parts], split)
