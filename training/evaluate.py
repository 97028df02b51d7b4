"""Evaluate a ConViTac checkpoint on a dataset split: accuracy and calibration per head.

Writes ``report.json`` (per head the fields of `convitac_ros.evaluation.metrics.head_scores`,
the same as ``convitac_evaluate`` reports: accuracy, confusion, ROC AUC, Brier score and ECE;
plus chance levels, the temperature and the ECE without it) and one ``confusion_<head>.png`` and
``reliability_<head>.png`` per head. The dataset defaults to the one recorded in the checkpoint's
training metadata; frames go through the same eval preprocessing as training validation.

Usage::

    python training/evaluate.py --checkpoint runs/demo/best.safetensors
    python training/evaluate.py --checkpoint ckpt.safetensors --dataset touch_and_go
        --data-root DATA --split test --option task=roughness --output eval/rough
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
import sys
from typing import Any

import numpy as np  # noqa: E402
from torch.utils.data import Dataset  # noqa: E402

from convitac_ros.calibration import softmax, temperatures_of  # noqa: E402
from convitac_ros.checkpoint import load_checkpoint  # noqa: E402
from convitac_ros.data import build_dataset, MISSING_LABEL  # noqa: E402
from convitac_ros.evaluation.metrics import (  # noqa: E402
    calibration_scores,
    format_score,
    head_scores,
    plot_confusion,
    plot_reliability,
)
from convitac_ros.fileio import atomic_write_text  # noqa: E402
from training.command import run_command  # noqa: E402
from training.data import BatchCollator, targets  # noqa: E402
from training.distributed import pick_device  # noqa: E402
from training.predictions import majority_chance, predict_logits  # noqa: E402
from training.pretrain import eval_loader  # noqa: E402
from training.train_config import parse_override  # noqa: E402


def head_report(head: str, classes: list[str], logits: np.ndarray, target: np.ndarray,
                temperature: float, train_target: np.ndarray | None, output: Path
                ) -> dict[str, Any]:
    """One head's scores (`convitac_ros.evaluation.metrics.head_scores`) and chance levels.

    The probabilities are the deployed ones (logits / temperature); ``uncalibrated`` holds the
    calibration scores at temperature 1 for comparison. Writes ``confusion_<head>.png`` and
    ``reliability_<head>.png``.
    """
    probabilities = softmax(logits, temperature)
    report = head_scores(classes, logits.argmax(axis=1), target, probabilities)
    labelled = target != MISSING_LABEL
    before = calibration_scores(softmax(logits[labelled]), target[labelled])
    report['temperature'] = temperature
    report['uncalibrated'] = {key: before[key] for key in ('ece', 'brier', 'roc_auc')}
    png = output / f'confusion_{head}.png'
    plot_confusion(report['confusion'], classes, f'{head}: accuracy '
                   f'{100 * report["accuracy"]:.1f}% (n={report["total"]})', png)
    report.update({'chance_uniform': 1.0 / len(classes), 'chance_majority': None,
                   'majority_class': None, 'confusion_png': png.name})
    if report['reliability'] is not None:
        reliability = output / f'reliability_{head}.png'
        plot_reliability(report, f'{head} (T = {temperature:.2f})', reliability)
        report['reliability_png'] = reliability.name
    if train_target is not None:
        train_labelled = train_target[train_target != MISSING_LABEL]
        if train_labelled.size:
            report['majority_class'] = classes[int(np.bincount(train_labelled).argmax())]
            report['chance_majority'] = majority_chance(train_target, target)
    return report


def evaluate(checkpoint: Path, output: Path, dataset: str | None = None,
             data_root: str | None = None, split: str = 'test', train_split: str = 'train',
             options: dict[str, Any] | None = None, device: str = 'auto',
             batch_size: int = 32, num_workers: int = 0,
             calibrated: bool = True) -> dict[str, Any]:
    """Evaluates ``checkpoint`` and writes ``report.json`` and the PNGs into ``output``.

    Dataset name, root and options default to the checkpoint's training metadata; the
    sequence lengths always come from the checkpoint. Probabilities carry the checkpoint's
    temperatures unless ``calibrated`` is False (as the Predictor and the node).

    Returns:
        The report (also written to ``output/report.json``).

    Raises:
        ValueError: When the dataset is not given and the checkpoint does not record it, or
            when the dataset's heads do not match the checkpoint's.
    """
    loaded = load_checkpoint(checkpoint, map_location=pick_device(device))
    recorded = loaded.training or {}
    data_section = recorded.get('config', {}).get('data', {})
    dataset = dataset or recorded.get('dataset')
    data_root = data_root or recorded.get('data_root')
    if not dataset or not data_root:
        raise ValueError(f'{checkpoint}: no dataset recorded; pass --dataset and --data-root')
    kwargs = {**data_section.get('options', {}), **(options or {}),
              'visual_len': loaded.preprocess['visual_len'],
              'tactile_len': loaded.preprocess['tactile_len']}
    test_set = build_dataset(dataset, data_root, split, **kwargs)
    check_heads(test_set, loaded.heads, checkpoint)
    train_set = _optional_split(dataset, data_root, train_split, kwargs)
    preprocess = loaded.preprocess
    loader = eval_loader(test_set, batch_size, BatchCollator(
        preprocess['image_size'], preprocess['mean'], preprocess['std'], None), num_workers)
    logits = predict_logits(loaded.model, loader, next(loaded.model.parameters()).device)
    temperatures = temperatures_of(loaded.training, loaded.heads, str(checkpoint))
    if not calibrated:
        temperatures = dict.fromkeys(temperatures, 1.0)
    output.mkdir(parents=True, exist_ok=True)
    heads = {head: head_report(head, loaded.heads[head], *logits[head], temperatures[head],
                               None if train_set is None else targets(train_set, head), output)
             for head in loaded.heads}
    known = [entry['accuracy'] for entry in heads.values() if not math.isnan(entry['accuracy'])]
    report = {
        'checkpoint': str(checkpoint), 'dataset': dataset, 'data_root': str(data_root),
        'split': split, 'options': kwargs, 'samples': len(test_set),
        'mean_accuracy': float(np.mean(known)) if known else None,
        'heads': heads,
    }
    atomic_write_text(output / 'report.json', json.dumps(report, indent=2))
    return report


def check_heads(dataset: Dataset, heads: dict[str, list[str]], checkpoint: Path) -> None:
    """Raises ValueError unless the dataset has the checkpoint's heads with the same classes."""
    for head, classes in heads.items():
        if dataset.heads.get(head) != classes:
            raise ValueError(f'{checkpoint}: head {head!r} has classes {classes}, the dataset '
                             f'has {dataset.heads.get(head)}')


def _optional_split(dataset: str, root: str, split: str, kwargs: dict[str, Any]
                    ) -> Dataset | None:
    """The training split for the majority-class chance level, or None if it cannot be read."""
    try:
        return build_dataset(dataset, root, split, **kwargs)
    except (FileNotFoundError, ValueError) as error:
        print(f'note: no majority-class chance level ({error})', file=sys.stderr)
        return None


def print_table(report: dict[str, Any]) -> None:
    """Prints accuracy and chance levels per head."""
    print(f'{report["dataset"]} {report["split"]} ({report["samples"]} samples)')
    print(f'{"head":<14}{"accuracy":>10}{"balanced":>10}{"macro-F1":>10}{"majority":>10}'
          f'{"uniform":>10}{"n":>7}{"AUC":>8}{"Brier":>8}{"ECE":>8}{"ECE T=1":>9}{"T":>7}')
    for head, entry in report['heads'].items():
        majority = entry['chance_majority']
        print(f'{head:<14}{100 * entry["accuracy"]:>9.1f}%'
              f'{100 * entry["balanced_accuracy"]:>9.1f}%{100 * entry["macro_f1"]:>9.1f}%'
              f'{"" if majority is None else f"{100 * majority:.1f}%":>10}'
              f'{100 * entry["chance_uniform"]:>9.1f}%{entry["total"]:>7}'
              f'{format_score(entry["roc_auc"]):>8}{format_score(entry["brier"]):>8}'
              f'{format_score(entry["ece"]):>8}{format_score(entry["uncalibrated"]["ece"]):>9}'
              f'{entry["temperature"]:>7.2f}')


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Command-line entry point; returns the report."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--checkpoint', type=Path, required=True)
    parser.add_argument('--output', type=Path,
                        help='report folder (default: <checkpoint folder>/eval_<split>)')
    parser.add_argument('--dataset', help='dataset name (default: from the checkpoint)')
    parser.add_argument('--data-root', help='dataset root (default: from the checkpoint)')
    parser.add_argument('--split', default='test')
    parser.add_argument('--train-split', default='train',
                        help='split whose majority class gives the chance level')
    parser.add_argument('--option', action='append', default=[], metavar='KEY=VALUE',
                        help='dataset keyword, e.g. task=roughness (repeatable)')
    parser.add_argument('--device', default='auto', choices=('auto', 'cpu', 'cuda'))
    parser.add_argument('--batch-size', type=int, default=32)
    parser.add_argument('--num-workers', type=int, default=0)
    parser.add_argument('--no-calibration', action='store_true',
                        help="score the uncalibrated softmax (ignore the checkpoint's "
                        'temperatures)')
    args = parser.parse_args(argv)
    options = {}
    for text in args.option:
        key, value = parse_override(text)
        options['.'.join(key)] = value
    output = args.output or args.checkpoint.parent / f'eval_{args.split}'
    report = evaluate(args.checkpoint, output, args.dataset, args.data_root, args.split,
                      args.train_split, options, args.device, args.batch_size, args.num_workers,
                      not args.no_calibration)
    print_table(report)
    print(f'report: {output / "report.json"}')
    return report


if __name__ == '__main__':
    sys.exit(run_command('evaluate.py', main))
