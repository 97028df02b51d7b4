"""Build a dataset by name: the one entry point of the training scripts and the bag tools."""

from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from convitac_ros.data.feeling_of_success import FeelingOfSuccess
from convitac_ros.data.mixed import Mixed
from convitac_ros.data.objectfolder import ObjectFolderReal
from convitac_ros.data.touch_and_go import TouchAndGo

DATASETS: dict[str, type[Dataset]] = {
    'touch_and_go': TouchAndGo,
    'feeling_of_success': FeelingOfSuccess,
    'objectfolder_real': ObjectFolderReal,
    'mixed': Mixed,
}


def build_dataset(name: str, root: str | Path, split: str, **kwargs: Any) -> Dataset:
    """Create a dataset of `Sample`s.

    Args:
        name: 'touch_and_go', 'feeling_of_success', 'objectfolder_real' or 'mixed' (several
            of these read as one, see `Mixed`).
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
    if name not in DATASETS:
        raise ValueError(f'unknown dataset {name!r}; expected one of {", ".join(DATASETS)}')
    return DATASETS[name](root, split=split, **kwargs)
