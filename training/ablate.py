r"""Ablation study: ConViTac against its fusion and single-modality ablations, over seeds.

For every dataset of a preset and every seed the script trains and evaluates each variant with
the project's own training functions (``training.pretrain.run_pretraining``,
``training.train.run_supervised``, ``training.evaluate.evaluate``), sharing one stage-1
contrastive encoder per dataset and seed among the variants that use it (the CEC variants), and
writes tables in the shape of the paper's Tables I and II (rows: methods, columns: tasks,
mean +- sample standard deviation over seeds, chance rows) as Markdown and JSON.

A preset (``training/configs/ablate_*.yaml``) names the seeds, the datasets (each one a list of
training configs plus ``--set`` style overrides, and for the synthetic world the generator
settings) and the variants (model overrides). Finished runs are cached in the work folder
(``ablation_run.json`` per run), so an interrupted study continues where it stopped and a table
can be re-rendered without training (``--no-train``). A finished stage-2 run keeps its
checkpoints but not its resume state; the disk space the study needs (checkpoints of every run,
stage-1 encoders with their resume states, one live stage-2 resume state) is printed and
checked against the free space before anything is trained.

Usage::

    python training/ablate.py --preset ablate_reduced --threads 2        # synthetic world, CPU
    python training/ablate.py --preset ablate_full --dataset touch_and_go --data-root /data/tag
    python training/ablate.py --preset ablate_full --dataset feeling_of_success \\
        --data-root /data/feeling_of_success --device cuda
    python training/ablate.py --preset ablate_reduced --jobs 5 --device cuda   # a seed a process

With ``--jobs N`` the seeds run in N processes at once (each one ``ablate.py --seeds S``, its
log in ``<work dir>/logs/seed<S>.log``; the synthetic worlds are generated first, once); the
tables are rendered from their cached runs when all have finished.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
import hashlib
import json
import os
from pathlib import Path
import shutil
import subprocess
import sys
import time
from typing import Any

import torch  # noqa: E402
import yaml  # noqa: E402

from convitac_ros.checkpoint import read_metadata  # noqa: E402
from convitac_ros.data import synthetic  # noqa: E402
from convitac_ros.fileio import atomic_write_text  # noqa: E402
from training.ablate_table import render_markdown, summarise  # noqa: E402
from training.command import run_command  # noqa: E402
from training.data import train_and_val  # noqa: E402
from training.distributed import DistContext, init_distributed, shutdown_distributed  # noqa
from training.engine import STATE_FILE  # noqa: E402
from training.evaluate import evaluate  # noqa: E402
from training.pretrain import run_pretraining  # noqa: E402
from training.runs import build_model_config, frame_cache_size, sequence_overrides  # noqa: E402
from training.train import run_supervised, STAGE1_DIR  # noqa: E402
from training.train_config import ConfigError, load_config, resolve_config_path, TrainConfig  # noqa

RUN_RECORD = 'ablation_run.json'
WORLD_RECORD = 'world.json'


@dataclass
class Variant:
    """One row of the table: a model configuration to train and evaluate."""

    key: str
    label: str
    model: dict[str, Any]
    # Training overrides of this row only; `model.fusion_from_stage1=true` makes the
    # equal-compute control: the fusion encoders (of E^c's size) start from the seed's stage-1
    # encoder and train, so the row gets stage 1's compute without the condition.
    train: list[str] = field(default_factory=list)

    @property
    def overrides(self) -> list[str]:
        """``--set`` style overrides: the model section, then the row's training overrides."""
        return [*(f'model.overrides.{name}={json.dumps(value)}'
                  for name, value in self.model.items()), *self.train]

    @property
    def stage1_overrides(self) -> list[str]:
        """The row's stage-1 overrides; rows without any share the seed's default encoder."""
        return [text for text in self.train if text.startswith('stage1.')]

    @property
    def stage1_dir(self) -> str:
        """Folder name (inside the seed folder) of the stage-1 encoder this row uses."""
        return f'{STAGE1_DIR}_{self.key}' if self.stage1_overrides else STAGE1_DIR

    @property
    def modalities(self) -> str:
        """'both', 'vision' or 'touch' (the model default is both)."""
        return self.model.get('modalities', 'both')


@dataclass
class DatasetEntry:
    """One table: a dataset, the training configs that train on it, optional generation."""

    name: str
    title: str
    config: list[str]
    overrides: list[str] = field(default_factory=list)
    synthetic: dict[str, Any] | None = None


@dataclass
class Preset:
    """A whole study: seeds, datasets, variants and where the outputs go."""

    name: str
    seeds: list[int]
    datasets: list[DatasetEntry]
    variants: list[Variant]
    work_dir: Path
    output: Path
    description: str = ''


def load_preset(name_or_path: str) -> Preset:
    """Reads and validates an ablation preset (a name in ``training/configs/`` or a path).

    Raises:
        ConfigError: For a missing file, an unknown or missing key, or duplicate names.
    """
    path = resolve_config_path(name_or_path)
    raw = yaml.safe_load(path.read_text()) or {}
    known = {'name', 'description', 'seeds', 'datasets', 'variants', 'work_dir', 'output'}
    unknown = sorted(set(raw) - known)
    missing = sorted({'name', 'seeds', 'datasets', 'variants'} - set(raw))
    if unknown or missing:
        raise ConfigError(f'{path}: unknown keys {unknown}, missing keys {missing}')
    try:
        datasets = [DatasetEntry(name=item['name'], title=item.get('title', item['name']),
                                 config=list(item['config']),
                                 overrides=list(item.get('set', [])),
                                 synthetic=item.get('synthetic'))
                    for item in raw['datasets']]
        # `fusion_from_stage1: true` (presets before 0.5.3) is the config key it became.
        variants = [Variant(key=item['key'], label=item['label'], model=dict(item['model']),
                            train=[*item.get('set', []),
                                   *(['model.fusion_from_stage1=true']
                                     if item.get('fusion_from_stage1') else [])])
                    for item in raw['variants']]
    except (KeyError, TypeError) as error:
        raise ConfigError(f'{path}: malformed dataset or variant entry: {error!r}') from error
    for kind, names in (('dataset', [d.name for d in datasets]),
                        ('variant', [v.key for v in variants])):
        if len(set(names)) != len(names) or not names:
            raise ConfigError(f'{path}: {kind} names must be unique and non-empty: {names}')
    return Preset(name=raw['name'], description=raw.get('description', ''),
                  seeds=[int(seed) for seed in raw['seeds']], datasets=datasets,
                  variants=variants, work_dir=Path(raw.get('work_dir', f'runs/{raw["name"]}')),
                  output=Path(raw.get('output', 'docs/results')))


def run_config(entry: DatasetEntry, seed: int, extra: list[str],
               variant: Variant | None = None) -> TrainConfig:
    """The training config of one run: the entry's configs + overrides + variant + seed."""
    overrides = [*entry.overrides, *(variant.overrides if variant else []), *extra,
                 f'runtime.seed={seed}']
    config = load_config(entry.config, overrides)
    config.name = f'{entry.name}-{variant.key if variant else STAGE1_DIR}-seed{seed}'
    return config


def generator_digest() -> str:
    """SHA-256 of the synthetic world's source files: which version of the world was used."""
    digest = hashlib.sha256()
    for path in sorted(Path(synthetic.__file__).parent.glob('*.py')):
        digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()


def ensure_synthetic(entry: DatasetEntry, root: Path) -> None:
    """Generates the entry's synthetic dataset into ``root`` unless it is already there.

    The settings and :func:`generator_digest` are recorded in ``root/WORLD_RECORD``.
    """
    if entry.synthetic is None or (root.is_dir() and any(root.iterdir())):
        return
    settings = {'fmt': 'touch_and_go', 'samples': 800, 'seed': 0, **entry.synthetic}
    print(f'[ablate] generating {entry.name} into {root}: {settings}', flush=True)
    counts = synthetic.make_synthetic(root, settings['fmt'], settings['samples'],
                                      settings['seed'])
    atomic_write_text(root / WORLD_RECORD, json.dumps(
        {**settings, **counts, 'generator_sha256': generator_digest()}, indent=2))


def world_record(root: Path) -> dict[str, Any] | None:
    """The generation record of a synthetic dataset (None for other data)."""
    path = root / WORLD_RECORD
    return json.loads(path.read_text()) if path.is_file() else None


def train_variant(entry: DatasetEntry, variant: Variant, seed: int, extra: list[str],
                  seed_dir: Path, context: DistContext, encoders: dict[str, dict[str, Any]]
                  ) -> dict[str, Any]:
    """Trains and evaluates one variant for one seed; returns (and caches) its record.

    Args:
        entry: The dataset entry of the preset.
        variant: The variant (table row) to train.
        seed: Training seed.
        extra: Overrides for every run (command line).
        seed_dir: Folder of this dataset and seed; the run goes to ``seed_dir/variant.key``.
        context: Device and process group.
        encoders: Per-seed cache ``{stage-1 folder name: {'path': Path, 'seconds': float}}``
            of the stage-1 encoders, each filled by the first variant that needs it.
    """
    run_dir = seed_dir / variant.key
    record_path = run_dir / RUN_RECORD
    if record_path.is_file():
        return json.loads(record_path.read_text())
    config = run_config(entry, seed, extra, variant)
    train_set, val_set = train_and_val(config.data, seed, frame_cache_size(config),
                                       **sequence_overrides(config))
    model_config = build_model_config(config, train_set)
    encoder = {'path': None, 'seconds': 0.0}
    from_stage1 = config.model.fusion_from_stage1
    if model_config.uses_condition or from_stage1:
        encoder = encoders.get(variant.stage1_dir, encoder)
        if encoder['path'] is None:
            base = run_config(entry, seed, [*extra, *variant.stage1_overrides])
            start = time.perf_counter()
            encoder['path'] = run_pretraining(
                base, seed_dir / variant.stage1_dir, train_set, val_set,
                build_model_config(base, train_set), context, resume=True)
            encoder['seconds'] = time.perf_counter() - start
            encoders[variant.stage1_dir] = encoder
    encoder_path = encoder['path']
    start = time.perf_counter()
    summary = run_supervised(
        config, run_dir, train_set, val_set, model_config, context,
        encoder_path if model_config.uses_condition else None, resume=True,
        fusion_from_encoder=encoder_path if from_stage1 else None)
    seconds = time.perf_counter() - start
    report = evaluate(run_dir / 'best.safetensors', run_dir / 'eval', config.data.dataset,
                      config.data.root, config.data.test_split, config.data.train_split,
                      config.data.options, context.device.type,
                      config.stage2.batch_size, config.data.num_workers)
    record = {
        'dataset': entry.name, 'variant': variant.key, 'seed': seed,
        'model': model_config.to_dict(), 'test_samples': report['samples'],
        'accuracy': {head: item['accuracy'] for head, item in report['heads'].items()},
        'balanced_accuracy': {head: item['balanced_accuracy']
                              for head, item in report['heads'].items()},
        'macro_f1': {head: item['macro_f1'] for head, item in report['heads'].items()},
        'chance_majority': {head: item['chance_majority']
                            for head, item in report['heads'].items()},
        'chance_uniform': {head: item['chance_uniform'] for head, item in report['heads'].items()},
        'val_best': summary.get('best'), 'stage2_seconds': seconds,
        'stage2_epochs': summary.get('epochs'), 'stage2_stop': summary.get('stop_reason'),
        'stage1_epochs': stage1_epochs(encoder_path),
        'stage1_seconds': encoder['seconds'],
        'stage1_val': stage1_val(encoder_path),
        'shared_encoder': None if encoder_path is None else str(encoder_path),
        'parameters': _count_parameters(model_config),
    }
    atomic_write_text(record_path, json.dumps(record, indent=2))
    (run_dir / STATE_FILE).unlink(missing_ok=True)  # cached by its record from now on
    return record


def stage1_epochs(encoder_path: Path | str | None) -> int | None:
    """Epochs the stage-1 encoder had trained when it was written (None without one)."""
    if encoder_path is None or not Path(encoder_path).is_file():
        return None
    return read_metadata(encoder_path).get('training', {}).get('epochs')


def stage1_val(encoder_path: Path | str | None) -> dict[str, float] | None:
    """The held-out retrieval stored in a stage-1 encoder's metadata (None without one)."""
    if encoder_path is None or not Path(encoder_path).is_file():
        return None
    return read_metadata(encoder_path).get('training', {}).get('val')


def disk_need(entry: DatasetEntry, variants: list[Variant], seeds: list[int],
              extra: list[str]) -> int:
    """Bytes the study of one dataset needs at most (float32 tensors, AdamW).

    Per seed: best and last checkpoints of every variant, and per stage-1 encoder its two
    checkpoints and resume state (weights and two moments); plus one stage-2 resume state of the
    largest variant, alive while it trains.
    """
    bytes_of = 4
    per_seed, largest, encoders = 0, 0, {}
    for variant in variants:
        config = run_config(entry, seeds[0], extra, variant)
        train_set, _ = train_and_val(config.data, seeds[0], frame_cache_size(config),
                                     **sequence_overrides(config))
        counts = _count_parameters(build_model_config(config, train_set))
        per_seed += 2 * bytes_of * counts['total']
        largest = max(largest, 3 * bytes_of * counts['trainable'] + bytes_of * counts['total'])
        if counts['total'] > counts['trainable']:  # a frozen E^c: its stage 1 is shared
            encoders[variant.stage1_dir] = counts['total'] - counts['trainable']
    per_seed += sum(5 * bytes_of * size for size in encoders.values())
    return per_seed * len(seeds) + largest


def check_disk(need: int, work_dir: Path) -> None:
    """Prints the need and the free space; refuses to start when the space is short.

    Raises:
        ConfigError: When the free space of the work folder's file system is below ``need``.
    """
    existing = next(p for p in [work_dir, *work_dir.resolve().parents] if p.exists())
    free = shutil.disk_usage(existing).free
    print(f'[ablate] disk: needs up to {need / 2**20:.0f} MiB, {free / 2**20:.0f} MiB free '
          f'at {existing}', flush=True)
    if free < need:
        raise ConfigError(f'not enough disk space for the study: it needs up to '
                          f'{need / 2**20:.0f} MiB, {existing} has {free / 2**20:.0f} MiB free')


def _count_parameters(model_config: Any) -> dict[str, int]:
    from convitac_ros.model import ConViTac  # local: only needed for the count

    model = ConViTac(model_config)
    return {'total': sum(p.numel() for p in model.parameters()),
            'trainable': sum(p.numel() for p in model.trainable_parameters())}


def shared_encoder(path: Path, work_dir: Path) -> Path:
    """A stage-1 encoder file from ``path``: itself, or the E^c of a ``convitac`` checkpoint.

    With it every CEC row of every seed uses the same frozen E^c; the seeds then vary stage 2
    only (initialisation, batch order, augmentation).
    """
    from convitac_ros.checkpoint import CheckpointError, load_checkpoint, save_checkpoint

    try:
        load_checkpoint(path, kind='contrastive_encoder')
        return path
    except CheckpointError:
        loaded = load_checkpoint(path, kind='convitac')
    target = work_dir / f'encoder_of_{path.stem}.safetensors'
    work_dir.mkdir(parents=True, exist_ok=True)
    return save_checkpoint(target, loaded.model.contrastive_encoder, kind='contrastive_encoder',
                           preprocess=loaded.preprocess,
                           training={'extracted_from': str(path)})


def run_dataset(preset: Preset, entry: DatasetEntry, extra: list[str], device: str,
                variants: list[Variant], train: bool, encoder: Path | None = None
                ) -> list[dict[str, Any]]:
    """All seeds and variants of one dataset; returns the run records found or made.

    With ``encoder`` (a stage-1 encoder file), the CEC rows with the preset's stage-1 settings
    use it instead of pretraining one per seed.
    """
    records = []
    root = Path(run_config(entry, preset.seeds[0], extra).data.root)
    if train:
        ensure_synthetic(entry, root)
        check_disk(disk_need(entry, variants, preset.seeds, extra), preset.work_dir)
    context = init_distributed(device) if train else None
    try:
        for seed in preset.seeds:
            seed_dir = preset.work_dir / entry.name / f'seed{seed}'
            encoders: dict[str, dict[str, Any]] = (
                {STAGE1_DIR: {'path': encoder, 'seconds': 0.0}} if encoder else {})
            for variant in variants:
                record_path = seed_dir / variant.key / RUN_RECORD
                if not train:
                    if record_path.is_file():
                        record = json.loads(record_path.read_text())
                        if 'stage1_val' not in record:  # records written before 0.2.1
                            record['stage1_val'] = stage1_val(record.get('shared_encoder'))
                        records.append(record)
                    continue
                print(f'[ablate] {entry.name} seed {seed}: {variant.key}', flush=True)
                record = train_variant(entry, variant, seed, extra, seed_dir, context, encoders)
                print(f'[ablate]   test accuracy {record["accuracy"]}', flush=True)
                records.append(record)
    finally:
        if context is not None:
            shutdown_distributed(context)
    return records


def select(items: list[Any], names: list[str] | None, attribute: str) -> list[Any]:
    """The items whose ``attribute`` is in ``names`` (all when ``names`` is None).

    Raises:
        ConfigError: When a name matches no item.
    """
    if not names:
        return items
    known = [getattr(item, attribute) for item in items]
    unknown = [name for name in names if name not in known]
    if unknown:
        raise ConfigError(f'unknown {attribute} {unknown}; the preset has {known}')
    return [item for item in items if getattr(item, attribute) in names]


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``ablate.py``."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--preset', default='ablate_reduced',
                        help='ablation preset: a name in training/configs/ or a path')
    parser.add_argument('--dataset', action='append', metavar='NAME',
                        help='only this dataset entry of the preset (repeatable)')
    parser.add_argument('--data-root', help='dataset root (with one --dataset)')
    parser.add_argument('--variant', action='append', metavar='KEY',
                        help='only this variant (repeatable)')
    parser.add_argument('--seeds', type=int, nargs='+', help='override the preset seeds')
    parser.add_argument('--set', dest='overrides', action='append', default=[],
                        metavar='KEY=VALUE', help='training config override for every run')
    parser.add_argument('--work-dir', type=Path, help='run folders (default: from the preset)')
    parser.add_argument('--output', type=Path, help='tables folder (default: from the preset)')
    parser.add_argument('--device', default='auto', choices=('auto', 'cpu', 'cuda'))
    parser.add_argument('--threads', type=int, help='torch CPU threads (default: torch; with '
                        '--jobs, the CPU cores shared among the jobs)')
    parser.add_argument('--jobs', type=int, default=1, metavar='N',
                        help='train N seeds at once, one process each (default 1)')
    parser.add_argument('--no-train', action='store_true',
                        help='only re-render the tables from the cached runs')
    parser.add_argument('--no-progress', action='store_true', help='hide the progress bars')
    parser.add_argument('--encoder', type=Path, metavar='CHECKPOINT',
                        help='one stage-1 encoder (or a convitac checkpoint whose E^c is taken) '
                        'for every CEC row and seed; the seeds then vary stage 2 only')
    return parser


def seed_jobs_argv(argv: list[str], seed: int, threads: int, output: Path) -> list[str]:
    """The command line of one seed's process.

    That is ``argv`` without ``--jobs``, ``--seeds``, ``--threads`` and ``--output`` (and their
    values), plus this seed, its thread count and a scratch output folder.
    """
    dropped = {'--jobs', '--seeds', '--threads', '--output'}
    kept, skipping = [], False
    for word in argv:
        name = word.split('=', 1)[0]
        if name in dropped:
            skipping = '=' not in word
            continue
        if skipping and not word.startswith('-'):
            continue
        skipping = False
        kept.append(word)
    return [*kept, '--seeds', str(seed), '--threads', str(threads), '--output', str(output)]


def run_seed_jobs(argv: list[str], preset: Preset, datasets: list[DatasetEntry],
                  extra: list[str], jobs: int, threads: int | None) -> None:
    """Trains every seed of the study in its own process, ``jobs`` at a time.

    Raises:
        RuntimeError: When a seed's process fails (its log is named).
    """
    for entry in datasets:  # once, before the processes could race to generate it
        ensure_synthetic(entry, Path(run_config(entry, preset.seeds[0], extra).data.root))
    logs = preset.work_dir / 'logs'
    logs.mkdir(parents=True, exist_ok=True)
    threads = threads or max(1, (os.cpu_count() or 1) // jobs)
    waiting, running, failed = list(preset.seeds), {}, []
    start = time.perf_counter()
    while waiting or running:
        while waiting and len(running) < jobs:
            seed = waiting.pop(0)
            command = [sys.executable, '-m', 'training.ablate',
                       *seed_jobs_argv(argv, seed, threads, logs / f'tables_seed{seed}')]
            log = (logs / f'seed{seed}.log').open('w')
            running[seed] = (subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT),
                             log)
            print(f'[ablate] seed {seed}: started ({threads} threads), log {log.name}',
                  flush=True)
        time.sleep(1.0)
        for seed, (process, log) in list(running.items()):
            if process.poll() is None:
                continue
            log.close()
            del running[seed]
            minutes = (time.perf_counter() - start) / 60
            state = 'done' if process.returncode == 0 else f'FAILED (exit {process.returncode})'
            print(f'[ablate] seed {seed}: {state} at {minutes:.1f} min; {len(running)} running, '
                  f'{len(waiting)} waiting', flush=True)
            if process.returncode:
                failed.append(seed)
    if failed:
        raise RuntimeError(f'seeds {failed} failed; see {logs}/seed<S>.log')


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Command-line entry point; returns the results written to ``<output>/<preset>.json``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    if args.jobs < 1:
        raise ConfigError(f'--jobs must be at least 1, got {args.jobs}')
    if args.threads:
        torch.set_num_threads(args.threads)
    preset = load_preset(args.preset)
    preset.seeds = args.seeds or preset.seeds
    preset.work_dir = args.work_dir or preset.work_dir
    preset.output = args.output or preset.output
    datasets = select(preset.datasets, args.dataset, 'name')
    variants = select(preset.variants, args.variant, 'key')
    if args.data_root and len(datasets) != 1:
        raise ConfigError('--data-root needs exactly one --dataset')
    extra = list(args.overrides)
    if args.data_root:
        extra.append(f'data.root={args.data_root}')
    if args.no_progress:
        extra.append('runtime.progress=false')
    start = time.perf_counter()
    train = not args.no_train
    if train and args.jobs > 1 and len(preset.seeds) > 1:
        run_seed_jobs(argv, preset, datasets, extra, args.jobs, args.threads)
        train = False  # every run is cached now: render the tables from them
    tables = {}
    encoder = shared_encoder(args.encoder, preset.work_dir) if args.encoder and train else None
    for entry in datasets:
        records = run_dataset(preset, entry, extra, args.device, variants, train, encoder)
        tables[entry.name] = summarise(entry.title, variants, records, preset.seeds)
        root = Path(run_config(entry, preset.seeds[0], extra).data.root)
        tables[entry.name]['world'] = world_record(root)
    results = {'preset': preset.name, 'description': preset.description,
               'command': ' '.join(['python training/ablate.py', *argv]),
               'seeds': preset.seeds, 'wall_seconds': round(time.perf_counter() - start, 1),
               'tables': tables}
    preset.output.mkdir(parents=True, exist_ok=True)
    atomic_write_text(preset.output / f'{preset.name}.json', json.dumps(results, indent=2))
    markdown = render_markdown(results)
    atomic_write_text(preset.output / f'{preset.name}.md', markdown)
    print(markdown)
    return results


if __name__ == '__main__':
    sys.exit(run_command('ablate.py', main))
