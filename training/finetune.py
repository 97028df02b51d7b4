"""Fine-tuning: stage 2 started from an existing ``convitac`` checkpoint (``--init-from``).

The new model has the checkpoint's architecture and the new dataset's heads. Everything but the
heads is loaded (E^c, which stage 2 keeps frozen, the fusion encoders and the CEC blocks). A
head is loaded when the checkpoint has a head of that name with the same set of class names
(its rows are reordered to the dataset's class order); a head whose class list differs, or
that the checkpoint lacks, starts fresh. E^c comes from the checkpoint, or from a stage 1
continued from it on the new recordings (``train.py --init-from CKPT --stage1``).

What the checkpoint knew is kept unless the new data says otherwise (the ``finetune`` config
section): loaded weights learn at ``loaded_lr_scale`` times the stage-2 rate, parts can be
frozen (``freeze``), ``stage2.patience`` stops the run when validation stops improving, and
the starting model is validated first: when the fine-tuned model never beats it,
``best.safetensors`` is the starting model and the run says so (``keep_start``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
import json
from pathlib import Path
from typing import Any

from torch import nn
from torch.utils.data import Dataset

from convitac_ros.checkpoint import load_checkpoint, LoadedCheckpoint
from convitac_ros.model import ConViTac, ModelConfig
from training.train_config import ConfigError

INIT_FILE = 'init_from.json'
HEAD_PREFIX = 'heads.classifiers.'
# finetune.freeze -> the ConViTac modules it freezes (E^c is frozen in stage 2 anyway).
FREEZE_PARTS = {'none': (), 'encoders': ('visual_encoder', 'tactile_encoder'),
                'fusion': ('visual_encoder', 'tactile_encoder', 'fusion', 'condition_gate')}


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


def remember_init(run_dir: Path, path: Path, stage1: bool = False) -> None:
    """Note the checkpoint a run starts from, so that ``--resume`` builds the same model."""
    (Path(run_dir) / INIT_FILE).write_text(json.dumps({'init_from': str(path),
                                                       'stage1': stage1}))


def remembered_init(run_dir: Path) -> tuple[Path | None, bool]:
    """The checkpoint a run was started from (or None) and whether it continued stage 1."""
    path = Path(run_dir) / INIT_FILE
    if not path.is_file():
        return None, False
    record = json.loads(path.read_text())
    return Path(record['init_from']), bool(record.get('stage1', False))


def freeze_parts(model: ConViTac, part: str) -> tuple[str, ...]:
    """Freeze the modules ``finetune.freeze`` names (no gradients); returns their names.

    Raises:
        ConfigError: An unknown part.
    """
    if part not in FREEZE_PARTS:
        raise ConfigError(f'finetune.freeze must be one of {", ".join(FREEZE_PARTS)}, got '
                          f'{part!r}')
    names = tuple(name for name in FREEZE_PARTS[part] if getattr(model, name) is not None)
    for name in names:
        getattr(model, name).requires_grad_(False)
    return names


def set_frozen_eval(model: nn.Module, frozen: tuple[str, ...]) -> None:
    """Put frozen modules back in eval mode after ``model.train()`` (dropout, norms)."""
    for name in frozen:
        getattr(model, name).eval()


def loaded_lr_scale(record: dict[str, Any], scale: float) -> Callable[[str], float]:
    """Learning-rate multiplier by parameter name: ``scale`` for weights the checkpoint gave.

    Args:
        record: What :func:`initialise_from` returned (which heads were loaded).
        scale: ``finetune.loaded_lr_scale`` (1 = no difference, > 0).

    Raises:
        ConfigError: A scale that is not positive.
    """
    if not scale > 0:
        raise ConfigError(f'finetune.loaded_lr_scale must be > 0, got {scale}')
    loaded_heads = set(record['loaded_heads'])

    def lr_scale(name: str) -> float:
        if name.startswith(HEAD_PREFIX):
            return scale if name[len(HEAD_PREFIX):].split('.', 1)[0] in loaded_heads else 1.0
        return scale

    return lr_scale


def start_wins(start: float, best: float | None) -> bool:
    """Whether the starting model validates at least as well as the best fine-tuned one."""
    return best is None or best != best or start >= best
