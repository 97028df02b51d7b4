"""What the training scripts share: the command line, run folders, model configs, provenance."""

from __future__ import annotations

import argparse
from dataclasses import replace
import datetime
from pathlib import Path
import shutil
import subprocess
from typing import Any

from torch.utils.data import Dataset

from convitac_ros.model import ModelConfig
from convitac_ros.output_paths import check_writable_folder, OutputPathError
from training.distributed import launched_as_main
from training.train_config import (
    apply_overrides,
    ConfigError,
    load_config,
    read_yaml,
    save_config,
    TrainConfig,
)

CONFIG_FILE = 'config.yaml'
# Keys that may change when a run is resumed: they do not change what is learned.
RESUMABLE_OVERRIDES = ('runtime.device', 'runtime.amp', 'runtime.progress', 'data.num_workers',
                       'runtime.stop_after_steps', 'runtime.checkpoint_every_steps',
                       'data.root')
PRESETS = ('tiny', 'tiny_resnet', 'paper')  # ModelConfig class methods


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds the options every training script takes."""
    parser.add_argument('--config', nargs='+', default=['demo'], metavar='NAME',
                        help='YAML files or names in training/configs/, merged left to right '
                        '(default: demo)')
    parser.add_argument('--set', dest='overrides', action='append', default=[],
                        metavar='KEY=VALUE', help='dotted override, e.g. stage2.lr=3e-4 '
                        '(repeatable; values parsed as YAML)')
    parser.add_argument('--run-dir', type=Path, help='output folder (default: runs/<name>)')
    parser.add_argument('--resume', type=Path, metavar='RUN_DIR',
                        help='continue the run in RUN_DIR exactly where it stopped')
    parser.add_argument('--data-root', help='dataset root (same as --set data.root=...)')
    parser.add_argument('--device', choices=('auto', 'cpu', 'cuda'),
                        help='same as --set runtime.device=...')
    parser.add_argument('--seed', type=int, help='same as --set runtime.seed=...')
    parser.add_argument('--num-workers', type=int, help='same as --set data.num_workers=...')
    parser.add_argument('--checkpoint-every-steps', type=int,
                        help='also save the resume state every N optimizer steps')
    parser.add_argument('--stop-after-steps', type=int,
                        help='stop abruptly after N steps of a stage, as if killed (testing)')
    parser.add_argument('--dino-weights', type=Path,
                        help='initialise E^c from a local DINO ViT weight file before stage 1')
    parser.add_argument('--no-progress', action='store_true', help='hide the progress bars')


def flag_overrides(args: argparse.Namespace) -> list[str]:
    """Turns the explicit flags into ``--set`` style overrides (flags win over ``--set``)."""
    flags = {'data.root': args.data_root, 'runtime.device': args.device,
             'runtime.seed': args.seed, 'data.num_workers': args.num_workers,
             'runtime.checkpoint_every_steps': args.checkpoint_every_steps,
             'runtime.stop_after_steps': args.stop_after_steps,
             'runtime.progress': False if args.no_progress else None}
    return [f'{key}={value}' for key, value in flags.items() if value is not None]


_NEW_RUN: list[Path] = []  # the run folder this process created (see discard_new_run)


def discard_new_run() -> Path | None:
    """Removes the run folder this process created when nothing was trained into it yet.

    Called on a user error (bad data found before training), so that no half-written run
    folder is left behind (one that ``--resume`` would then refuse). A folder that holds a
    resume state (``state.safetensors`` anywhere in it) is kept. Returns the removed folder.
    """
    if not _NEW_RUN:
        return None
    run_dir = _NEW_RUN.pop()
    if not run_dir.is_dir() or any(run_dir.rglob('state.safetensors')):
        return None
    shutil.rmtree(run_dir, ignore_errors=True)
    return run_dir


def prepare_run(args: argparse.Namespace) -> tuple[TrainConfig, Path, bool]:
    """Resolves the config and run folder; saves ``config.yaml`` for a new run.

    A resumed run reads its saved config; only :data:`RESUMABLE_OVERRIDES` may change.

    Returns:
        (config, run folder, whether to resume).

    Raises:
        ConfigError: For a bad config, a forbidden override on resume, or a new run into a
            folder that already holds one.
    """
    overrides = list(args.overrides) + flag_overrides(args)
    if args.resume is not None:
        run_dir = args.resume
        saved = run_dir / CONFIG_FILE
        if not saved.is_file():
            raise ConfigError(f'{run_dir}: no {CONFIG_FILE}, nothing to resume')
        for text in overrides:
            if text.partition('=')[0].strip() not in RESUMABLE_OVERRIDES:
                raise ConfigError(f'cannot change {text!r} when resuming; allowed: '
                                  f'{", ".join(RESUMABLE_OVERRIDES)}')
        # A simulated kill applies to one invocation only.
        overrides = ['runtime.stop_after_steps=0', *overrides]
        config = TrainConfig.from_dict(apply_overrides(read_yaml(saved), overrides))
        return config, run_dir, True
    config = load_config(args.config, overrides)
    run_dir = args.run_dir or Path('runs') / config.name
    if not launched_as_main():  # torchrun: rank 0 alone checks and writes the folder
        return config, run_dir, False
    if (run_dir / CONFIG_FILE).exists():
        raise ConfigError(f'{run_dir} already holds a run; use --resume {run_dir} or another '
                          '--run-dir')
    try:
        check_writable_folder(run_dir, '--run-dir')
    except OutputPathError as error:
        raise ConfigError(str(error)) from None
    if not run_dir.exists():
        _NEW_RUN[:] = [run_dir]
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(config, run_dir / CONFIG_FILE)
    return config, run_dir, False


def sequence_overrides(config: TrainConfig) -> dict[str, int]:
    """Sequence lengths fixed by the model section (passed to the dataset when given)."""
    return {key: config.model.overrides[key] for key in ('visual_len', 'tactile_len')
            if key in config.model.overrides}


def build_model_config(config: TrainConfig, dataset: Dataset) -> ModelConfig:
    """The ``ModelConfig``: preset + dataset facts (heads, lengths, sensors) + overrides.

    Raises:
        ConfigError: For an unknown preset or a model override that contradicts the dataset.
    """
    if config.model.preset not in PRESETS:
        raise ConfigError(f'model.preset must be one of {PRESETS}, got {config.model.preset!r}')
    from_data = {
        'visual_len': dataset.visual_len, 'tactile_len': dataset.tactile_len,
        'num_tactile': dataset.num_tactile,
        'heads': tuple((head, len(classes)) for head, classes in dataset.heads.items()),
    }
    overrides = dict(config.model.overrides)
    for key in ('num_tactile', 'heads'):
        if key in overrides:
            raise ConfigError(f'model.overrides.{key} comes from the dataset; remove it')
    try:
        return getattr(ModelConfig, config.model.preset)(**{**from_data, **overrides})
    except (TypeError, ValueError) as error:
        raise ConfigError(f'model section: {error}') from error


def frame_cache_size(config: TrainConfig, init_preprocess: dict[str, Any] | None = None
                     ) -> int | None:
    """The side S the frame cache keeps (None when ``data.frame_cache`` is off).

    The model's S: a fine-tuned checkpoint's own, else the preset's unless overridden.
    """
    if not config.data.frame_cache:
        return None
    if init_preprocess is not None:
        return int(init_preprocess['image_size'])
    if config.model.preset not in PRESETS:
        raise ConfigError(f'model.preset must be one of {PRESETS}, got {config.model.preset!r}')
    overrides = dict(config.model.overrides)
    return int(overrides.get('image_size', getattr(ModelConfig, config.model.preset)().image_size))


def git_commit() -> str | None:
    """The repository's HEAD commit, or None outside a git checkout or before a commit."""
    try:
        result = subprocess.run(['git', 'rev-parse', 'HEAD'], capture_output=True, text=True,
                                cwd=Path(__file__).resolve().parent, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() or None if result.returncode == 0 else None


def provenance(config: TrainConfig, stage: str, summary: dict[str, Any],
               init_from: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ``training`` metadata written into checkpoints.

    Args:
        config: The run's config.
        stage: ``stage1`` or ``stage2``.
        summary: The trainer's summary.
        init_from: For a fine-tuning run, what was taken from which checkpoint.
    """
    record = {
        'stage': stage, 'config_name': config.name, 'dataset': config.data.dataset,
        'data_root': config.data.root, 'train_split': config.data.train_split,
        'val_split': config.data.val_split, 'seed': config.runtime.seed,
        'epochs': summary.get('epochs'), 'steps': summary.get('steps'),
        'val': summary.get('val'), 'git_commit': git_commit(),
        'date': datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'),
        'config': config.to_dict(),
    }
    if init_from is not None:
        record['init_from'] = init_from
    return record


def with_runtime(config: TrainConfig, **changes: Any) -> TrainConfig:
    """A copy of the config with some runtime fields changed."""
    return replace(config, runtime=replace(config.runtime, **changes))
