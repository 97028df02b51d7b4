"""ObjectFolder Real (Gao et al., CVPR 2023), the benchmark's processed material release."""

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from convitac_ros.data.files import read_image, read_json, require_root, require_split
from convitac_ros.data.sample import HARDNESS_CLASSES, MISSING_LABEL, ROUGHNESS_CLASSES, Sample

SPLITS = ('train', 'val', 'test')
_IMAGE_SUFFIXES = ('.png', '.jpg', '.jpeg')


class ObjectFolderReal(Dataset):
    """ObjectFolder Real instances as `Sample`s with the head material (and optional attributes).

    Layout (``root`` = ``DATA_real``): ``vision/<obj>/<inst>.png`` (camera crop),
    ``touch/<obj>/<inst>.png`` (GelSight), ``label.json`` (``{"<obj>": <material int>}``),
    ``split.json`` (``{"train": [[obj, inst], ...], "val": [...], "test": [...]}``, split by
    object). The release does not document which name each material integer stands for, so the
    classes are ``material_<i>`` unless `class_names` gives them; the head has as many classes as
    the largest label in ``label.json`` + 1 (the same for every split).

    Hard/soft and rough/smooth labels exist in no public release. When ``attributes.json``
    (``{"<obj>": {"hardness": 0|1, "roughness": 0|1}}``, a file of this project's own format)
    is present, the heads hardness and roughness are added; objects it does not list get
    MISSING_LABEL.

    The release has one frame per modality and instance; with `visual_len` or `tactile_len` > 1
    that frame is repeated, so that sequence models can run on it.

    Args:
        root: The ``DATA_real`` directory.
        split: 'train', 'val' or 'test'.
        visual_len: Camera frames per sample (T_v).
        tactile_len: GelSight frames per sample (T_t).
        class_names: Material names in label order, when known.
    """

    num_tactile = 1

    def __init__(self, root: str | Path, split: str = 'train', visual_len: int = 1,
                 tactile_len: int = 1, class_names: Sequence[str] | None = None) -> None:
        self.root = require_root(root, 'ObjectFolder Real')
        require_split(split, SPLITS, 'ObjectFolder Real')
        if min(visual_len, tactile_len) < 1:
            raise ValueError('visual_len and tactile_len must be >= 1')
        self.split, self.visual_len, self.tactile_len = split, visual_len, tactile_len
        label_path, split_path = self.root / 'label.json', self.root / 'split.json'
        materials = {str(obj): int(label) for obj, label in read_json(label_path).items()}
        if not materials or min(materials.values()) < 0:
            raise ValueError(f'{label_path}: expected non-negative material labels per object')
        count = max(materials.values()) + 1
        if class_names is not None and len(class_names) < count:
            raise ValueError(f'{len(class_names)} class names for labels 0..{count - 1} '
                             f'in {label_path}')
        names = list(class_names) if class_names is not None else [
            f'material_{i}' for i in range(count)]
        self.heads = {'material': names}
        attributes_path = self.root / 'attributes.json'
        self._attributes: dict[str, dict[str, int]] = {}
        if attributes_path.is_file():
            self.heads.update(hardness=list(HARDNESS_CLASSES), roughness=list(ROUGHNESS_CLASSES))
            self._attributes = {str(obj): {k: int(v) for k, v in values.items()}
                                for obj, values in read_json(attributes_path).items()}
        splits = read_json(split_path)
        if split not in splits:
            raise ValueError(f'split {split!r} not found in {split_path}; it has {list(splits)}')
        self._items: list[tuple[str, str]] = []
        for entry in splits[split]:
            obj, inst = (str(part) for part in entry)
            if obj not in materials:
                raise ValueError(f'object {obj} of {split_path} has no label in {label_path}')
            self._items.append((obj, inst))
        self._materials = materials

    def __len__(self) -> int:
        """Number of (object, instance) samples."""
        return len(self._items)

    def _labels(self, obj: str) -> dict[str, int]:
        labels = {'material': self._materials[obj]}
        for head in ('hardness', 'roughness'):
            if head in self.heads:
                labels[head] = self._attributes.get(obj, {}).get(head, MISSING_LABEL)
        return labels

    def target_array(self, head: str) -> np.ndarray:
        """Labels of every sample for one head, without reading images: int64 (N,)."""
        return np.array([self._labels(obj)[head] for obj, _ in self._items], dtype=np.int64)

    def _image_path(self, modality: str, obj: str, inst: str) -> Path:
        has_suffix = inst.lower().endswith(_IMAGE_SUFFIXES)
        return self.root / modality / obj / (inst if has_suffix else f'{inst}.png')

    def __getitem__(self, index: int) -> Sample:
        """Read sample `index`: the vision and touch image of one instance (repeated to T)."""
        obj, inst = self._items[index]
        visual = read_image(self._image_path('vision', obj, inst))
        tactile = read_image(self._image_path('touch', obj, inst))
        return Sample(visual=[visual] * self.visual_len, tactile=[[tactile] * self.tactile_len],
                      labels=self._labels(obj),
                      meta={'dataset': 'objectfolder_real', 'split': self.split, 'object': obj,
                            'instance': inst})
