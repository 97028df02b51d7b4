"""Datasets (Touch and Go, Feeling of Success, ObjectFolder Real), synthetic world, transforms.

Every dataset yields `Sample`s and declares ``heads``, ``num_tactile``, ``visual_len``
and ``tactile_len``; `build_dataset` creates one by name.
"""

from convitac_ros.data.feeling_of_success import FeelingOfSuccess
from convitac_ros.data.objectfolder import ObjectFolderReal
from convitac_ros.data.registry import build_dataset, DATASETS
from convitac_ros.data.sample import (
    GRASP_CLASSES,
    HARDNESS_CLASSES,
    MISSING_LABEL,
    ROUGHNESS_CLASSES,
    Sample,
)
from convitac_ros.data.touch_and_go import TouchAndGo

__all__ = [
    'DATASETS', 'GRASP_CLASSES', 'HARDNESS_CLASSES', 'MISSING_LABEL', 'ROUGHNESS_CLASSES',
    'FeelingOfSuccess', 'ObjectFolderReal', 'Sample', 'TouchAndGo', 'build_dataset',
]
