"""Aggregates ablation runs into tables shaped like the paper's Tables I and II.

A table has one row per method (mean and sample standard deviation of the test accuracy over
seeds, per task) and two chance rows: always predicting the training split's majority class,
and guessing uniformly. :func:`render_markdown` prints the tables of a whole study.
"""

from __future__ import annotations

from collections.abc import Sequence
import math
from typing import Any

import numpy as np

HEAD_TITLES = {'material': 'Category', 'hardness': 'Hard / Soft',
               'roughness': 'Rough / Smooth', 'grasp_success': 'Grasp success'}


def mean_std(values: Sequence[float]) -> dict[str, Any]:
    """Mean and sample standard deviation (ddof 1; 0 for a single value) of finite values."""
    finite = [float(value) for value in values if value is not None and math.isfinite(value)]
    if not finite:
        return {'mean': None, 'std': None, 'n': 0, 'values': list(values)}
    std = float(np.std(finite, ddof=1)) if len(finite) > 1 else 0.0
    return {'mean': float(np.mean(finite)), 'std': std, 'n': len(finite),
            'values': list(values)}


# Two-sided 95 % quantiles of Student's t for 1..30 degrees of freedom (then the normal's).
T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179,
        2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060,
        2.056, 2.052, 2.048, 2.045, 2.042)


def paired_difference(row: Sequence[float | None], reference: Sequence[float | None]
                      ) -> dict[str, Any]:
    """Mean of the seed-wise differences ``row - reference`` and its 95 % t interval.

    Only seeds with a finite value in both count. With fewer than two such seeds the interval
    is None.
    """
    diffs = [a - b for a, b in zip(row, reference)
             if a is not None and b is not None and math.isfinite(a) and math.isfinite(b)]
    if not diffs:
        return {'mean': None, 'ci95': None, 'n': 0}
    mean = float(np.mean(diffs))
    if len(diffs) < 2:
        return {'mean': mean, 'ci95': None, 'n': 1}
    half = (T975[len(diffs) - 2] if len(diffs) - 1 <= len(T975) else 1.960) * float(
        np.std(diffs, ddof=1)) / math.sqrt(len(diffs))
    return {'mean': mean, 'ci95': [mean - half, mean + half], 'n': len(diffs)}


def correlation(x: Sequence[float], y: Sequence[float]) -> dict[str, Any]:
    """Pearson's r with its 95 % interval (Fisher's z; needs >= 4 points, else None)."""
    pairs = [(a, b) for a, b in zip(x, y) if a is not None and b is not None
             and math.isfinite(a) and math.isfinite(b)]
    if len(pairs) < 3 or np.std([a for a, _ in pairs]) == 0 or np.std([b for _, b in pairs]) == 0:
        return {'r': None, 'ci95': None, 'n': len(pairs)}
    r = float(np.corrcoef(*zip(*pairs))[0, 1])
    if len(pairs) < 4:
        return {'r': r, 'ci95': None, 'n': len(pairs)}
    z, half = math.atanh(max(min(r, 0.999999), -0.999999)), 1.959964 / math.sqrt(len(pairs) - 3)
    return {'r': r, 'ci95': [math.tanh(z - half), math.tanh(z + half)], 'n': len(pairs)}


def summarise(title: str, variants: Sequence[Any], records: Sequence[dict[str, Any]],
              seeds: Sequence[int]) -> dict[str, Any]:
    """Builds one table from the run records of one dataset.

    Args:
        title: Caption of the table.
        variants: The rows, in order (objects with ``key``, ``label``, ``modalities``).
        records: Run records (``variant``, ``seed``, ``accuracy``, ``chance_*``, timings).
        seeds: The seeds the study asked for (a row lists the ones it has).

    Returns:
        ``{'title', 'heads', 'head_titles', 'test_samples', 'seeds', 'chance', 'rows'}``; each
        row holds ``accuracy[head] = {'mean', 'std', 'n', 'values'}`` (fractions in [0, 1]).
    """
    heads = list(records[0]['accuracy']) if records else []
    rows = []
    for variant in variants:
        runs = sorted((r for r in records if r['variant'] == variant.key),
                      key=lambda r: r['seed'])
        rows.append({
            'key': variant.key, 'label': variant.label,
            'vision': variant.modalities in ('both', 'vision'),
            'touch': variant.modalities in ('both', 'touch'),
            'seeds': [r['seed'] for r in runs],
            'accuracy': {head: mean_std([r['accuracy'][head] for r in runs]) for head in heads},
            'stage2_seconds': mean_std([r['stage2_seconds'] for r in runs]),
            'stage2_epochs': [r.get('stage2_epochs') for r in runs],
            'parameters': runs[0]['parameters'] if runs else None,
        })
    # Paired by seed against the first row (ConViTac): what each change costs or gains.
    by_seed = {row['key']: {r['seed']: r for r in records if r['variant'] == row['key']}
               for row in rows}
    if rows:
        reference = rows[0]
        for row in rows[1:]:
            common = sorted(set(row['seeds']) & set(reference['seeds']))
            row['paired'] = {head: paired_difference(
                [by_seed[row['key']][seed]['accuracy'][head] for seed in common],
                [by_seed[reference['key']][seed]['accuracy'][head] for seed in common])
                for head in heads}
    chance = {kind: {head: _first([r[f'chance_{kind}'][head] for r in records])
                     for head in heads} for kind in ('majority', 'uniform')}
    # Seconds per stage-1 encoder: the run that trained it (a later run that resumed the
    # finished encoder records ~0), and a mean over the encoders that were trained at all.
    stage1: dict[str, float] = {}
    for record in records:
        if record['shared_encoder']:
            path = record['shared_encoder']
            stage1[path] = max(stage1.get(path, 0.0), record['stage1_seconds'])
    per_seed = stage1_by_seed(rows, by_seed)
    return {'title': title, 'heads': heads, 'stage1_by_seed': per_seed,
            'gain_correlation': {head: correlation(
                [entry['retrieval_top1'] for entry in per_seed if entry['minus_cross_attention']],
                [entry['minus_cross_attention'][head] for entry in per_seed
                 if entry['minus_cross_attention']]) for head in heads},
            'head_titles': {head: HEAD_TITLES.get(head, head) for head in heads},
            'test_samples': records[0]['test_samples'] if records else 0,
            'seeds': list(seeds), 'chance': chance, 'rows': rows,
            'stage1_seconds': mean_std([v for v in stage1.values() if v >= 1.0]),
            'train_seconds_total': sum(r['stage2_seconds'] for r in records) + sum(
                stage1.values())}


def stage1_by_seed(rows: Sequence[dict[str, Any]], by_seed: dict[str, dict[int, Any]]
                   ) -> list[dict[str, Any]]:
    """Per seed: the first row's stage-1 held-out retrieval, and that row minus cross-attention.

    Shows whether what the condition adds follows how well its encoder aligned the modalities.
    Empty when the first row has no stage-1 figures (older records, or no E^c).
    """
    if not rows:
        return []
    reference, baseline = rows[0]['key'], by_seed.get('cross_attention', {})
    result = []
    for seed, record in sorted(by_seed[reference].items()):
        val = record.get('stage1_val') or {}
        if 'retrieval_top1' not in val:
            continue
        other = baseline.get(seed)
        keys = ('retrieval_top1', 'retrieval_top5', 'chance_top1')
        result.append({'seed': seed, 'encoder': record.get('shared_encoder'),
                       **{key: val.get(key) for key in keys},
                       'minus_cross_attention': None if other is None else {
                           head: record['accuracy'][head] - other['accuracy'][head]
                           for head in record['accuracy']}})
    return result


def correlation_markdown(table: dict[str, Any]) -> str:
    """One line: r (95 % interval) of stage-1 retrieval against the gain, for every head."""
    found = table.get('gain_correlation') or {}
    parts = []
    for head in table['heads']:
        stats = found.get(head) or {}
        if stats.get('r') is None:
            parts.append(f'{table["head_titles"][head]} – (n = {stats.get("n", 0)})')
            continue
        interval = '' if stats['ci95'] is None else \
            f' [{stats["ci95"][0]:+.2f}, {stats["ci95"][1]:+.2f}]'
        parts.append(f'{table["head_titles"][head]} r = {stats["r"]:+.2f}{interval} '
                     f'(n = {stats["n"]})')
    if not parts:
        return ''
    return ('Correlation over seeds of stage-1 held-out top-1 with the gain over '
            'cross-attention (Pearson, 95 % Fisher-z interval): ' + '; '.join(parts) + '.')


def stage1_markdown(table: dict[str, Any]) -> str:
    """The per-seed stage-1 table of :func:`stage1_by_seed` as Markdown ('' when empty)."""
    entries = table.get('stage1_by_seed') or []
    if not entries:
        return ''
    heads = table['heads']
    titles = [table['head_titles'][head] for head in heads]
    chance = entries[0]['chance_top1']
    lines = [f'Stage 1 of each seed (held-out visual-to-tactile retrieval in batches of '
             f'{round(1 / chance)}, chance {_percent(chance)} %) beside what '
             f'"{table["rows"][0]["label"]}" gains over cross-attention at that seed (accuracy '
             'points):', '',
             f'| Seed | top-1 % | x chance | top-5 % | {" | ".join(titles)} |',
             f'|--:|--:|--:|--:|{"--:|" * len(heads)}']
    for entry in entries:
        gains = entry['minus_cross_attention'] or {}
        cells = [f'{100 * gains[head]:+.1f}' if head in gains else '–' for head in heads]
        lines.append(f'| {entry["seed"]} | {_percent(entry["retrieval_top1"])} | '
                     f'{entry["retrieval_top1"] / entry["chance_top1"]:.1f} | '
                     f'{_percent(entry["retrieval_top5"])} | '
                     + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def _first(values: Sequence[Any]) -> Any:
    return next((value for value in values if value is not None), None)


def _percent(value: float | None) -> str:
    return '–' if value is None else f'{100 * value:.1f}'


def format_cell(stats: dict[str, Any], bold: bool = False) -> str:
    """``'81.2 ± 1.3'`` (percent), bold when asked, ``'–'`` without data."""
    if stats['mean'] is None:
        return '–'
    text = f'{100 * stats["mean"]:.1f} ± {100 * stats["std"]:.1f}'
    return f'**{text}**' if bold else text


def table_markdown(table: dict[str, Any]) -> str:
    """One table as Markdown: chance rows, then the methods; the best mean per task in bold."""
    heads = table['heads']
    titles = [table['head_titles'][head] for head in heads]
    lines = [f'| Method | Vision | Touch | {" | ".join(titles)} | Stage-2 epochs per seed |',
             f'|---|:-:|:-:|{"--:|" * len(heads)}--:|']
    for kind, label in (('majority', 'Chance (majority class of train)'),
                        ('uniform', 'Chance (uniform guess)')):
        cells = [_percent(table['chance'][kind][head]) for head in heads]
        lines.append(f'| {label} | – | – | {" | ".join(cells)} | – |')
    best = {}
    for head in heads:
        means = [row['accuracy'][head]['mean'] for row in table['rows']]
        known = [mean for mean in means if mean is not None]
        best[head] = max(known) if known else None
    for row in table['rows']:
        cells = [format_cell(row['accuracy'][head],
                             row['accuracy'][head]['mean'] == best[head]) for head in heads]
        marks = ['✓' if row[side] else '–' for side in ('vision', 'touch')]
        epochs = ', '.join('?' if e is None else str(e) for e in row.get('stage2_epochs') or [])
        lines.append(f'| {row["label"]} | {marks[0]} | {marks[1]} | {" | ".join(cells)} | '
                     f'{epochs or "–"} |')
    paired = [row for row in table['rows'][1:] if row.get('paired')]
    if paired:
        lines += ['', f'Paired by seed against "{table["rows"][0]["label"]}" (accuracy points, '
                  'row minus reference; mean [95 % t interval]; an interval that holds 0 is '
                  'no difference at these seeds):', '',
                  f'| Method | {" | ".join(titles)} |', f'|---|{"--:|" * len(heads)}']
        for row in paired:
            lines.append(f'| {row["label"]} | '
                         + ' | '.join(_difference(row['paired'][head]) for head in heads) + ' |')
    return '\n'.join(lines)


def _difference(stats: dict[str, Any]) -> str:
    if stats['mean'] is None:
        return '–'
    text = f'{100 * stats["mean"]:+.1f}'
    if stats['ci95'] is not None:
        low, high = (100 * value for value in stats['ci95'])
        text += f' [{low:+.1f}, {high:+.1f}]'
    return text


def render_markdown(results: dict[str, Any]) -> str:
    """The Markdown file of a study: one captioned table per dataset plus how it was made."""
    seeds = ', '.join(str(seed) for seed in results['seeds'])
    parts = [f'# Ablation results: preset `{results["preset"]}`', '']
    if results.get('description'):
        parts += [results['description'].strip(), '']
    parts += [f'Command: `{results["command"]}`. Test accuracy in %, mean ± sample standard '
              f'deviation over training seeds {seeds}; best mean per task in bold. Chance rows: '
              'always predicting the most common class of the training split, and a uniform '
              'guess.', '']
    for table in results['tables'].values():
        seconds = [row['stage2_seconds']['mean'] for row in table['rows']
                   if row['stage2_seconds']['mean'] is not None]
        stage1 = table['stage1_seconds']['mean']
        timing = (f'stage 2 {np.mean(seconds):.0f} s per run on average'
                  if seconds else 'no runs')
        if stage1:
            timing += f', shared stage 1 {stage1:.0f} s per seed'
        timing += f', {table["train_seconds_total"] / 60:.0f} min of training in all'
        parts += [f'## {table["title"]}', '',
                  f'{table["test_samples"]} test samples; {timing}.', '',
                  table_markdown(table), '']
        per_seed = stage1_markdown(table)
        if per_seed:
            parts += [per_seed, '']
        correlated = correlation_markdown(table)
        if correlated and table.get('stage1_by_seed'):
            parts += [correlated, '']
    return '\n'.join(parts)
