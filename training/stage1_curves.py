r"""Stage-1 take-off: held-out visual-to-tactile retrieval per epoch, one line per seed.

Reads the ``metrics.jsonl`` of stage-1 run folders (``kind: val`` lines) and draws, per group of
runs (a schedule, say), top-1 retrieval against the epoch with chance (no ceiling: the synthetic
world's observer is not an upper bound), so that one sees when (and whether) each seed left
chance. A JSON file beside the PNG holds the curves and, per run, the first epoch at 3x chance
and the last value.

Usage::

    python training/stage1_curves.py --output docs/results/stage1_takeoff.png \
        --group '40 epochs' runs/a/synthetic_tag/seed*/stage1 \
        --group '70 epochs' runs/b/synthetic_tag/seed*/stage1
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
import sys
from typing import Any

import matplotlib  # noqa: E402

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402

from convitac_ros.fileio import atomic_write_text  # noqa: E402
from training.command import run_command  # noqa: E402

TAKE_OFF = 3.0  # a run has taken off once held-out top-1 reaches this many times chance


def read_curve(run_dir: Path) -> dict[str, Any]:
    """The validation lines of one stage-1 run: epochs, top-1 and chance.

    Raises:
        FileNotFoundError: When the folder has no ``metrics.jsonl``.
        ValueError: When it holds no stage-1 validation line.
    """
    path = Path(run_dir) / 'metrics.jsonl'
    if not path.is_file():
        raise FileNotFoundError(f'{path}: no metrics.jsonl (is {run_dir} a stage-1 run folder?)')
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    val = [line for line in lines if line.get('kind') == 'val' and 'retrieval_top1' in line]
    if not val:
        raise ValueError(f'{path}: no stage-1 validation line (retrieval_top1)')
    chance = val[-1]['chance_top1']
    top1 = [line['retrieval_top1'] for line in val]
    take_off = next((line['epoch'] for line in val
                     if line['retrieval_top1'] >= TAKE_OFF * chance), None)
    return {'run': str(run_dir), 'epochs': [line['epoch'] for line in val], 'top1': top1,
            'chance_top1': chance,
            'take_off_epoch': take_off, 'last_top1': top1[-1]}


def draw(groups: dict[str, list[dict[str, Any]]], output: Path) -> None:
    """One panel per group, one line per run; chance dashed."""
    figure, axes = plt.subplots(1, len(groups), figsize=(5.2 * len(groups), 3.8), sharey=True,
                                squeeze=False)
    for axis, (title, curves) in zip(axes[0], groups.items()):
        for curve in curves:
            parts = Path(curve['run']).parts
            name = next((part for part in reversed(parts) if part.startswith('seed')), parts[-1])
            axis.plot(curve['epochs'], [100 * v for v in curve['top1']], label=name)
        chance = 100 * curves[0]['chance_top1']
        axis.axhline(chance, color='grey', linestyle=':', label=f'chance {chance:.1f} %')
        axis.axhline(TAKE_OFF * chance, color='grey', linestyle='-.', linewidth=0.8,
                     label=f'{TAKE_OFF:g}x chance')
        took_off = sum(c['take_off_epoch'] is not None for c in curves)
        axis.set_title(f'{title}: {took_off} of {len(curves)} took off')
        axis.set_xlabel('epoch')
        axis.grid(alpha=0.3)
    axes[0][0].set_ylabel('held-out top-1 retrieval, %')
    axes[0][-1].legend(fontsize=7, loc='upper left')
    figure.tight_layout()
    output.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(output, dpi=110)
    plt.close(figure)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Command-line entry point; returns what the JSON file holds."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--group', nargs='+', action='append', required=True,
                        metavar=('TITLE', 'RUN_DIR'),
                        help='a panel: its title, then stage-1 run folders (repeatable)')
    parser.add_argument('--output', type=Path, required=True, help='PNG file to write')
    args = parser.parse_args(argv)
    groups = {}
    for title, *runs in args.group:
        if not runs:
            parser.error(f'--group {title!r} names no run folder')
        groups[title] = [read_curve(Path(run)) for run in runs]
    draw(groups, args.output)
    summary = {title: [{key: c[key] for key in ('run', 'take_off_epoch', 'last_top1',
                                                'chance_top1')}
                       for c in curves] for title, curves in groups.items()}
    atomic_write_text(args.output.with_suffix('.json'),
                      json.dumps({'take_off_factor': TAKE_OFF, 'groups': summary,
                                  'curves': groups}, indent=1))
    for title, curves in groups.items():
        last = ', '.join(f'{100 * c["last_top1"]:.1f}' for c in curves)
        print(f'{title}: last top-1 % {last}; took off at epochs '
              f'{[c["take_off_epoch"] for c in curves]}')
    return summary


if __name__ == '__main__':
    sys.exit(run_command('stage1_curves.py', main))
