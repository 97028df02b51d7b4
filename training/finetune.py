"""Fine-tuning: stage 2 started from an existing ``convitac`` checkpoint (``--init-from``).

The new model has the checkpoint's architecture and the new dataset's heads. Everything but the
heads is loaded (E^c, which stage 2 keeps frozen, the fusion encoders and the CEC blocks). A
head is loaded when the checkpoint has a head of that name with the same set of class names
(its rows are reordered to the dataset's class order); a head whose class list differs, or
that the checkpoint lacks, starts fresh. Stage 1 is skipped: E^c comes from the checkpoint.
"""

from __future__ import annotations

from dataclasses import replace
import json
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from convitac_ros.checkpoint import load_checkpoint, LoadedCheckpoint
from convitac_ros.model import ConViTac, ModelConfig
from training.config import ConfigError

INIT_FILE = 'init_from.json'
HEAD_PREFIX = 'heads.classifiers.'


def read_init_checkpoint(path: Path) -> LoadedCheckpoint:
    """Load the checkpoint to fine-tune (a ``convitac`` one); errors name the file."""
    return load_checkpoint(path, kind='convitac')


def sequence_lengths(loaded: LoadedCheckpoint) -> dict[str, int]:
    """The sequence lengths the dataset must be read with (the checkpoint's)."""
    return {'visual_len': loaded.config.visual_len, 'tactile_len': loaded.config.tactile_len}


def finetune_model_config(loaded: LoadedCheckpoint, dataset: Dataset) -> ModelConfig:
    """The checkpoint's architecture with the dataset's heads.

    Raises:
        ConfigError: The dataset has another number of tactile sensors than the checkpoint.
    """
    if dataset.num_tactile != loaded.config.num_tactile:
        raise ConfigError(f'{loaded.path} takes {loaded.config.num_tactile} tactile sensor(s), '
                          f'the dataset has {dataset.num_tactile}')
    heads = tuple((head, len(classes)) for head, classes in dataset.heads.items())
    return replace(loaded.config, heads=heads)


def initialise_from(model: ConViTac, loaded: LoadedCheckpoint,
                    heads: dict[str, list[str]]) -> dict[str, Any]:
    """Copy the checkpoint's weights into `model` (built by `finetune_model_config`).

    Args:
        model: The new model.
        loaded: The checkpoint.
        heads: The new dataset's head -> ordered class names.

    Returns:
        What was done, for the new checkpoint's provenance: the source file, the heads loaded,
        the new heads, the checkpoint's heads left out, and the source's own training record.
    """
    shared = [h for h, classes in heads.items()
              if h in loaded.heads and sorted(loaded.heads[h]) == sorted(classes)]
    state = model.state_dict()
    for key, value in loaded.model.state_dict().items():
        if not key.startswith(HEAD_PREFIX):
            state[key] = value
            continue
        head = key[len(HEAD_PREFIX):].split('.', 1)[0]
        if head in shared:
            order = [loaded.heads[head].index(name) for name in heads[head]]
            state[key] = value[order]
    model.load_state_dict(state, strict=True)
    source = loaded.training or {}
    return {'checkpoint': str(loaded.path), 'loaded_heads': shared,
            'new_heads': [h for h in heads if h not in shared],
            'dropped_heads': [h for h in loaded.heads if h not in heads],
            'source_training': {key: source.get(key) for key in
                                ('config_name', 'dataset', 'data_root', 'git_commit', 'date')}}


def remember_init(run_dir: Path, path: Path) -> None:
    """Note the checkpoint a run starts from, so that ``--resume`` builds the same model."""
    (Path(run_dir) / INIT_FILE).write_text(json.dumps({'init_from': str(path)}))


def remembered_init(run_dir: Path) -> Path | None:
    """The checkpoint a run was started from, or None."""
    path = Path(run_dir) / INIT_FILE
    return Path(json.loads(path.read_text())['init_from']) if path.is_file() else None
