r"""Label-efficiency curve: test accuracy against labelled samples per class, +- stage 1.

Held-out accuracy with and without stage 1 on the unlabelled training frames. For every world
and seed the script trains stage 1 once (``training.pretrain.run_pretraining`` on every
contact frame of the training sessions, labelled or not) and writes a second,
untrained E^c of the same seed (``stage1.epochs=0``: the encoder as initialised). Then, for
every label budget k (1, 5, 20 samples per class of ``--head``, and all), stage 2
(``training.train.run_supervised``) trains twice on the same k-per-class subset with the same
seed: once on the pretrained E^c, once on the random one, both frozen. The two arms differ in
E^c's weights only (same architecture, parameters, subset, stage-2 initialisation and batch
order), so the gap is what stage 1 on unlabelled frames is worth. Every stage-2 run takes the
same number of optimizer steps (``--stage2-steps``; the large budgets at least ``--min-epochs``
epochs, so that every point passes over its data several times) and is evaluated at its end
(``last.safetensors``) on the held-out test sessions (``training.evaluate.evaluate``): no model
selection on labelled validation data, which would spend more labels than the budget.

Subsets are nested and seeded: per seed and class one permutation of the class's samples, the
first k of it (a class with fewer than k samples gives all it has). Finished points are cached
(``record.json`` per run), so an interrupted study continues, and ``--no-train`` re-renders the
table and the figure from the cache.

Usage::

    python training/label_efficiency.py --world tacto_a=data/tacto_a \
        --world tacto_b=data/tacto_b --seeds 0 1 2 \
        --stage1-set stage1.patience=10 --stage1-set stage1.max_minutes=5.5

The table, JSON and figure go to ``--output`` (default: the work folder, so that a study never
writes over the committed one in ``docs/results/label_efficiency`` unless asked to).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
import sys
import time
from typing import Any

import numpy as np
from torch.utils.data import Subset

from convitac_ros.data import MISSING_LABEL
from convitac_ros.fileio import atomic_write_text
from training.ablate import stage1_val
from training.command import run_command
from training.data import targets, train_and_val, with_info
from training.distributed import DistContext, init_distributed, shutdown_distributed
from training.engine import STATE_FILE
from training.evaluate import evaluate
from training.label_efficiency_report import write_outputs
from training.pretrain import ENCODER_FILE, run_pretraining
from training.runs import build_model_config, sequence_overrides
from training.train import run_supervised
from training.train_config import load_config, TrainConfig

ARMS = ('pretrained', 'random')  # E^c after stage 1 / E^c as initialised, both frozen
ALL = 0  # budget value meaning every labelled training sample
RECORD = 'record.json'


def per_class_subset(labels: np.ndarray, k: int, seed: int) -> list[int]:
    """Indices of k samples per class (all labelled samples when k is ALL), seeded and nested.

    Args:
        labels: ``(N,)`` class of every sample, MISSING_LABEL for unlabelled ones (never drawn).
        k: Samples per class; a class with fewer gives all it has. ALL (0) = every labelled one.
        seed: Seed of the per-class permutations: the same seed gives the same subset, and the
            subset for k is a prefix, per class, of the one for any larger k.

    Returns:
        Sorted sample indices.
    """
    if k < 0:
        raise ValueError(f'samples per class must be >= 0 (0 = all), got {k}')
    labelled = np.flatnonzero(labels != MISSING_LABEL)
    if k == ALL:
        return labelled.tolist()
    chosen = []
    for index, cls in enumerate(np.unique(labels[labelled])):
        members = labelled[labels[labelled] == cls]
        order = np.random.default_rng([seed, index]).permutation(len(members))
        chosen.extend(members[order[:k]].tolist())
    return sorted(chosen)


def budget_name(k: int) -> str:
    """'k1', 'k5', ... and 'all' for ALL."""
    return 'all' if k == ALL else f'k{k}'


def stage2_settings(samples: int, steps: int, batch_size: int, min_epochs: int) -> list[str]:
    """Overrides for one stage-2 run: at least `steps` optimizer steps and `min_epochs` epochs.

    Small subsets get the same number of steps (many epochs), large ones enough epochs to pass
    over their data several times. The batch is at most the subset; validation only at the end
    (it selects nothing).
    """
    batch = max(1, min(batch_size, samples))
    per_epoch = samples // batch
    epochs = max(min_epochs, math.ceil(steps / per_epoch))
    return [f'stage2.batch_size={batch}', f'stage2.epochs={epochs}',
            f'stage2.max_steps={max(steps, min_epochs * per_epoch)}',
            f'runtime.eval_every_epochs={epochs}']


class Study:
    """One label-efficiency study: its settings, where its runs go, how a point is trained."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.work = Path(args.work_dir)

    def config(self, root: str, seed: int, extra: list[str]) -> TrainConfig:
        """The base config with the world's root, the seed and `extra` overrides."""
        overrides = [f'data.root={root}', *self.args.set, *extra, f'runtime.seed={seed}',
                     'runtime.progress=false']
        return load_config(self.args.config, overrides)

    def encoder(self, world: str, root: str, seed: int, arm: str, context: DistContext
                ) -> tuple[Path, dict[str, Any]]:
        """Stage 1 of one world and seed (arm 'pretrained'), or the untrained E^c ('random')."""
        folder = self.work / world / f'seed{seed}' / f'stage1_{arm}'
        extra = list(self.args.stage1_set) if arm == 'pretrained' else ['stage1.epochs=0']
        config = self.config(root, seed, extra)
        path = folder / ENCODER_FILE
        timing = folder / 'seconds.json'
        if not timing.is_file():
            train_set, val_set = train_and_val(config.data, seed, **sequence_overrides(config))
            start = time.perf_counter()
            path = run_pretraining(config, folder, train_set, val_set,
                                   build_model_config(config, train_set), context, resume=True)
            atomic_write_text(timing, json.dumps({'seconds': time.perf_counter() - start}))
        return path, {'seconds': json.loads(timing.read_text())['seconds'],
                      'val': stage1_val(path)}

    def point(self, world: str, root: str, seed: int, k: int, arm: str,
              encoder: tuple[Path, dict[str, Any]], context: DistContext) -> dict[str, Any]:
        """Trains and evaluates stage 2 for one (world, seed, budget, arm); cached."""
        run_dir = self.work / world / f'seed{seed}' / arm / budget_name(k)
        if (run_dir / RECORD).is_file():
            return json.loads((run_dir / RECORD).read_text())
        base = self.config(root, seed, [])
        train_set, val_set = train_and_val(base.data, seed, **sequence_overrides(base))
        chosen = per_class_subset(targets(train_set, self.args.head), k, seed)
        config = self.config(root, seed, stage2_settings(
            len(chosen), self.args.stage2_steps, base.stage2.batch_size, self.args.min_epochs))
        subset = with_info(Subset(train_set, chosen), train_set)
        start = time.perf_counter()
        summary = run_supervised(config, run_dir, subset, val_set,
                                 build_model_config(config, train_set), context, encoder[0],
                                 resume=True)
        seconds = time.perf_counter() - start
        report = evaluate(run_dir / 'last.safetensors', run_dir / 'eval', config.data.dataset,
                          config.data.root, config.data.test_split, config.data.train_split,
                          config.data.options, context.device.type, 64,
                          config.data.num_workers)
        labels = targets(subset, self.args.head)
        counts = np.bincount(labels[labels != MISSING_LABEL])
        record = {
            'world': world, 'seed': seed, 'k': k, 'arm': arm, 'labelled': len(chosen),
            'per_class': counts.tolist(), 'test_samples': report['samples'],
            'accuracy': {h: v['accuracy'] for h, v in report['heads'].items()},
            'balanced_accuracy': {h: v['balanced_accuracy'] for h, v in report['heads'].items()},
            'chance_uniform': {h: v['chance_uniform'] for h, v in report['heads'].items()},
            'chance_majority': {h: v['chance_majority'] for h, v in report['heads'].items()},
            'stage2_seconds': seconds, 'stage2_steps': summary['steps'],
            'stage2_epochs': summary['epochs'],
            'stage1_seconds': encoder[1]['seconds'], 'stage1_val': encoder[1]['val'],
        }
        atomic_write_text(run_dir / RECORD, json.dumps(record, indent=2))
        (run_dir / STATE_FILE).unlink(missing_ok=True)  # cached by its record from now on
        return record

    def run(self) -> list[dict[str, Any]]:
        """Every point of the study (trained or read from the cache), in a fixed order."""
        records = []
        context = init_distributed(self.args.device)
        try:
            for seed in self.args.seeds:  # seed-major: a cut-short study has whole seeds
                for world, root in self.args.world:
                    for arm in ARMS:
                        encoder = self.encoder(world, root, seed, arm, context)
                        for k in self.args.budgets:
                            record = self.point(world, root, seed, k, arm, encoder, context)
                            print(f'[label_efficiency] {world} seed {seed} {arm} '
                                  f'{budget_name(k)}: {self.args.head} '
                                  f'{record["accuracy"][self.args.head]:.3f} '
                                  f'({record["stage2_seconds"]:.0f} s)', flush=True)
                            records.append(record)
        finally:
            shutdown_distributed(context)
        return records

    def cached(self) -> list[dict[str, Any]]:
        """The records already in the work folder (``--no-train``)."""
        return [json.loads(path.read_text())
                for path in sorted(self.work.glob(f'*/seed*/*/*/{RECORD}'))]


def _parse_world(text: str) -> tuple[str, str]:
    name, sep, root = text.partition('=')
    if not sep or not name or not root:
        raise argparse.ArgumentTypeError(f'expected NAME=ROOT, got {text!r}')
    return name, root


def _parse_budget(text: str) -> int:
    if text == 'all':
        return ALL
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f'a budget is a count >= 1 or "all", got {text!r}')
    return value


def build_parser() -> argparse.ArgumentParser:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0].replace('\n', ' '))
    parser.add_argument('--world', type=_parse_world, action='append', required=True,
                        metavar='NAME=ROOT', help='a Touch and Go layout dataset (repeatable)')
    parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    parser.add_argument('--budgets', type=_parse_budget, nargs='+', default=[1, 5, 20, ALL],
                        metavar='K', help='labelled samples per class: counts and "all"')
    parser.add_argument('--head', default='material', help='the head whose classes are counted')
    parser.add_argument('--config', nargs='+', default=['demo'], metavar='NAME')
    parser.add_argument('--set', action='append', default=[], metavar='KEY=VALUE',
                        help='override for every run (repeatable)')
    parser.add_argument('--stage1-set', action='append', default=[], metavar='KEY=VALUE',
                        help='override for stage 1 only (repeatable)')
    parser.add_argument('--stage2-steps', type=int, default=50,
                        help='optimizer steps of every stage-2 run (at least)')
    parser.add_argument('--min-epochs', type=int, default=5,
                        help='epochs of every stage-2 run (at least: the large budgets)')
    parser.add_argument('--device', default='cpu', choices=('auto', 'cpu', 'cuda'))
    parser.add_argument('--work-dir', default='runs/label_efficiency')
    parser.add_argument('--output', type=Path, default=None,
                        help='folder of the table, JSON and figure (default: the work dir; '
                             'the committed study is docs/results/label_efficiency)')
    parser.add_argument('--no-train', action='store_true',
                        help='only render the table and figure from the cached runs')
    return parser


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Runs (or reads) the study and writes the table and the figure; returns the summary."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.stage2_steps < 1 or args.min_epochs < 1:
        parser.error('--stage2-steps and --min-epochs must be >= 1')
    study = Study(args)
    records = study.cached() if args.no_train else study.run()
    if not records:
        parser.error(f'no finished runs in {args.work_dir}')
    output = args.output if args.output is not None else Path(args.work_dir)
    return write_outputs(records, output, args.head, ' '.join(['python',
                         'training/label_efficiency.py', *(argv or sys.argv[1:])]))


if __name__ == '__main__':
    sys.exit(run_command('label_efficiency.py', main))
