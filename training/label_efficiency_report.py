"""The label-efficiency table (JSON, Markdown) and figure from the records of the study.

A record is one stage-2 run of ``training/label_efficiency.py``: world, seed, budget k (0 = all),
arm ('pretrained' or 'random'), test accuracy per head, chance levels and stage 1's held-out
retrieval.
"""

from __future__ import annotations

from collections.abc import Sequence
import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from convitac_ros.fileio import atomic_write_text  # noqa: E402

ARM_STYLE = {'pretrained': ('stage 1 on unlabelled frames', 'tab:blue', 'o'),
             'random': ('random frozen E^c (no stage 1)', 'tab:orange', 's')}
FIGURE = 'label_efficiency.png'


def _spread(values: Sequence[float]) -> dict[str, Any]:
    """Mean, sample standard deviation (0 for one value), min, max and n."""
    array = np.asarray(values, dtype=float)
    return {'mean': float(array.mean()), 'std': float(array.std(ddof=1)) if len(array) > 1
            else 0.0, 'min': float(array.min()), 'max': float(array.max()), 'n': len(array)}


def summarise(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Per world, head, budget and arm: accuracy over seeds; and the paired gain per seed.

    Returns:
        ``{world: {'heads': {head: {k: {arm: spread, 'gain': spread}}}, 'labelled': {k: mean
        labelled samples}, 'chance': {head: uniform chance}, 'classes': count, 'stage1':
        retrieval top-1 spread, chance and seconds}}``; budgets are string keys ('1', '5', ...,
        '0' = all).
    """
    summary: dict[str, Any] = {}
    for world in sorted({r['world'] for r in records}):
        mine = [r for r in records if r['world'] == world]
        heads = list(mine[0]['accuracy'])
        budgets = sorted({r['k'] for r in mine}, key=lambda k: (k == 0, k))
        entry: dict[str, Any] = {'heads': {}, 'labelled': {}, 'chance': {},
                                 'classes': max(len(r['per_class']) for r in mine)}
        for head in heads:
            entry['chance'][head] = mine[0]['chance_uniform'][head]
            table = {}
            for k in budgets:
                by_arm = {arm: {r['seed']: r['accuracy'][head] for r in mine
                                if r['k'] == k and r['arm'] == arm} for arm in ARM_STYLE}
                row = {arm: _spread(list(values.values())) for arm, values in by_arm.items()
                       if values}
                paired = sorted(set(by_arm['pretrained']) & set(by_arm['random']))
                if paired:
                    row['gain'] = _spread([by_arm['pretrained'][s] - by_arm['random'][s]
                                           for s in paired])
                table[str(k)] = row
            entry['heads'][head] = table
        for k in budgets:
            entry['labelled'][str(k)] = float(np.mean([r['labelled'] for r in mine
                                                       if r['k'] == k]))
        retrieval = {r['seed']: r['stage1_val'] for r in mine
                     if r['arm'] == 'pretrained' and r.get('stage1_val')}
        if retrieval:
            entry['stage1'] = {
                'top1': _spread([v['retrieval_top1'] for v in retrieval.values()]),
                'chance_top1': float(np.mean([v['chance_top1'] for v in retrieval.values()])),
                'seconds': _spread([r['stage1_seconds'] for r in mine
                                    if r['arm'] == 'pretrained' and r['k'] == budgets[0]])}
        summary[world] = entry
    return summary


def _budget_label(k: str, per_class: float) -> str:
    return f'all ({per_class:.0f})' if k == '0' else k


def render_markdown(summary: dict[str, Any], command: str) -> str:
    """One table per world: rows = budgets, columns = heads x arms (mean +- std), gain."""
    lines = [f'Command: `{command}`', '']
    for world, entry in summary.items():
        lines.append(f'### {world}')
        stage1 = entry.get('stage1')
        if stage1:
            top1 = stage1['top1']
            lines.append(f'Stage 1 held-out retrieval top-1: {100 * top1["mean"]:.1f} +- '
                         f'{100 * top1["std"]:.1f} % (chance {100 * stage1["chance_top1"]:.1f} %'
                         f', n={top1["n"]}), {stage1["seconds"]["mean"] / 60:.1f} min per '
                         'seed.')
        lines.append('')
        heads = list(entry['heads'])
        header = ['labelled / class', 'labelled']
        for head in heads:
            header += [f'{head}: stage 1', f'{head}: random E^c', f'{head}: gain']
        lines += ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
        for k in entry['heads'][heads[0]]:
            per_class = entry['labelled'][k] / entry['classes']
            cells = [_budget_label(k, per_class), f'{entry["labelled"][k]:.0f}']
            for head in heads:
                row = entry['heads'][head][k]
                for arm in ('pretrained', 'random', 'gain'):
                    item = row.get(arm)
                    cells.append('-' if item is None else f'{100 * item["mean"]:.1f} +- '
                                 f'{100 * item["std"]:.1f}')
            lines.append('| ' + ' | '.join(cells) + ' |')
        chance = ', '.join(f'{h} {100 * c:.1f} %' for h, c in entry['chance'].items())
        lines += ['', f'Uniform chance: {chance}. Accuracy in % on the held-out test sessions, '
                  'mean +- sample std over seeds; gain = stage 1 minus random E^c, paired by '
                  'seed.', '']
    return '\n'.join(lines)


def plot(summary: dict[str, Any], path: Path) -> None:
    """Accuracy against labelled samples per class (log x), both arms, error bars = std."""
    worlds = list(summary)
    heads = list(summary[worlds[0]]['heads'])
    figure, axes = plt.subplots(len(worlds), len(heads), squeeze=False,
                                figsize=(3.6 * len(heads), 3.0 * len(worlds)))
    for row, world in enumerate(worlds):
        entry = summary[world]
        budgets = list(entry['heads'][heads[0]])
        # 'all' is drawn at its mean number of labelled samples per class.
        xs = [entry['labelled'][k] / entry['classes'] if k == '0' else int(k) for k in budgets]
        for col, head in enumerate(entry['heads']):
            axis = axes[row][col]
            for arm, (label, colour, marker) in ARM_STYLE.items():
                points = [(x, entry['heads'][head][k][arm]) for x, k in zip(xs, budgets)
                          if arm in entry['heads'][head][k]]
                if points:
                    axis.errorbar([p[0] for p in points], [100 * p[1]['mean'] for p in points],
                                  yerr=[100 * p[1]['std'] for p in points], label=label,
                                  color=colour, marker=marker, capsize=3)
            axis.axhline(100 * entry['chance'][head], color='grey', linestyle=':',
                         label='uniform chance')
            axis.set_xscale('log')
            axis.set_xticks(xs, [_budget_label(k, x) if k == '0' else k
                                 for k, x in zip(budgets, xs)])
            axis.minorticks_off()
            axis.set_title(f'{world}: {head}', fontsize=9)
            axis.set_xlabel('labelled samples per class')
            axis.set_ylabel('test accuracy (%)')
    axes[0][0].legend(fontsize=7)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)


def write_outputs(records: list[dict[str, Any]], output: Path, head: str,
                  command: str) -> dict[str, Any]:
    """Writes ``label_efficiency.json`` (records + summary), ``.md`` and the PNG into `output`."""
    summary = summarise(records)
    output.mkdir(parents=True, exist_ok=True)
    atomic_write_text(output / 'label_efficiency.json', json.dumps(
        {'command': command, 'subset_head': head, 'summary': summary, 'records': records},
        indent=2))
    atomic_write_text(output / 'label_efficiency.md', render_markdown(summary, command))
    plot(summary, output / FIGURE)
    return summary
