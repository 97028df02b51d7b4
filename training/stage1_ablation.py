r"""Stage-1 ablation: held-out retrieval per variant x seed x world, timed, as JSON and markdown.

Each run is ``training/pretrain.py`` with the variant's ``--set`` overrides on top of the base
config; its validation curve (``metrics.jsonl``), the epochs it reached, its wall-clock time and
the test-split retrieval (sessions never seen in stage 1) of its ``best.safetensors`` are
collected. Runs already finished in the work folder are read, not retrained.

Usage::

    python training/stage1_ablation.py --work-dir runs/stage1_ablation \
        --world tag_s0=data/tag_s0 --seeds 0 1 2 \
        --variant 'relu=model.overrides.projection_head=relu' \
        --variant 'mlp=model.overrides.projection_head=mlp' \
        --output docs/results/stage1_v0.3/ablation
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
import shutil
import sys
import time
from typing import Any

import numpy as np

from convitac_ros.fileio import atomic_write_text
from training.command import run_command
from training.retrieval import checkpoint_retrieval, label_only_top1


def parse_pairs(items: list[str], what: str) -> dict[str, str]:
    """``NAME=VALUE`` strings as a dict (the value may hold further ``=``)."""
    pairs = {}
    for item in items:
        name, sep, value = item.partition('=')
        if not sep or not name:
            raise ValueError(f'{what} {item!r} is not NAME=VALUE')
        pairs[name] = value
    return pairs


def read_val(run_dir: Path) -> list[dict[str, Any]]:
    """The stage-1 validation lines of a run."""
    lines = (run_dir / 'metrics.jsonl').read_text().splitlines()
    return [record for record in map(json.loads, lines) if record.get('kind') == 'val']


def run_one(run_dir: Path, config: list[str], root: str, seed: int, overrides: list[str],
            test_split: str) -> dict[str, Any]:
    """Trains one stage 1 (unless done) and returns its record."""
    from training import pretrain

    record_path = run_dir / 'record.json'
    if record_path.is_file():
        return json.loads(record_path.read_text())
    shutil.rmtree(run_dir, ignore_errors=True)  # an interrupted run starts again
    argv = ['--config', *config, '--data-root', root, '--seed', str(seed), '--run-dir',
            str(run_dir), '--no-progress']
    for override in overrides:
        argv += ['--set', override]
    start = time.perf_counter()
    pretrain.main(argv)
    seconds = time.perf_counter() - start
    val = read_val(run_dir)
    best = run_dir / 'best.safetensors'
    test = checkpoint_retrieval(best, root, test_split, 32, 0)
    record = {'seconds': round(seconds, 1), 'epochs': val[-1]['epoch'],
              'curve': [round(v['retrieval_top1'], 4) for v in val],
              'best_val_top1': max(v['retrieval_top1'] for v in val),
              'test_top1': test['retrieval_top1'], 'test_top5': test['retrieval_top5'],
              'chance_top1': test['chance_top1'], 'argv': argv}
    atomic_write_text(record_path, json.dumps(record))
    return record


def table(results: dict[str, dict[str, dict[str, dict[str, Any]]]],
          reference: str = 'default') -> str:
    """Markdown table of the study: one row per world and variant.

    Each row gives test top-1 per seed, its mean and range, the difference to the
    ``reference`` variant paired by seed (the first variant when there is none of that name),
    the epochs and the time.
    """
    lines = ['| world | variant | seeds | test top-1 % per seed | mean [min, max] | x chance | '
             'runs >= 5x chance | vs ' + reference + ', paired (points) | '
             'epochs (best val at) | minutes |', '|' + '---|' * 10]
    for world, variants in results.items():
        ref_name = reference if reference in variants else next(iter(variants), None)
        ref = variants.get(ref_name, {})
        for variant, seeds in variants.items():
            done = list(seeds.values())
            if not done:
                continue
            top1 = np.array([r['test_top1'] for r in done]) * 100
            chance = done[0]['chance_top1'] * 100
            best_at = [int(np.argmax(r['curve'])) + 1 for r in done]
            paired = np.array([100 * (seeds[s]['test_top1'] - ref[s]['test_top1'])
                               for s in seeds if s in ref])
            versus = ('-' if variant == ref_name or not len(paired) else
                      f'{paired.mean():+.1f} [{paired.min():+.1f}, {paired.max():+.1f}] '
                      f'(n={len(paired)})')
            lines.append(
                f'| {world} | {variant} | {", ".join(seeds)} | '
                f'{" / ".join(f"{v:.1f}" for v in top1)} | {top1.mean():.1f} '
                f'[{top1.min():.1f}, {top1.max():.1f}] | {top1.mean() / chance:.1f} | '
                f'{int((top1 >= 5 * chance).sum())}/{len(done)} | {versus} | '
                f'{", ".join(str(r["epochs"]) for r in done)} ({", ".join(map(str, best_at))}) | '
                f'{np.mean([r["seconds"] for r in done]) / 60:.1f} |')
    return '\n'.join(lines) + '\n'


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Command-line entry point; returns the results."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--work-dir', type=Path, required=True)
    parser.add_argument('--config', nargs='+', default=['demo'])
    parser.add_argument('--world', action='append', required=True, help='NAME=DATA_ROOT')
    parser.add_argument('--variant', action='append', required=True,
                        help='NAME=key=value[,key=value...] (--set overrides)')
    parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    parser.add_argument('--test-split', default='test')
    parser.add_argument('--output', type=Path, help='write OUTPUT.json and OUTPUT.md')
    parser.add_argument('--reference', default='default',
                        help='the variant the others are compared with, paired by seed')
    args = parser.parse_args(argv)
    worlds = parse_pairs(args.world, '--world')
    variants = {name: [item for item in value.split(',') if item]
                for name, value in parse_pairs(args.variant, '--variant').items()}
    if args.reference not in variants and args.reference != parser.get_default('reference'):
        parser.error(f'--reference {args.reference!r} is not a --variant; '
                     f'variants: {", ".join(variants)}')
    results: dict[str, Any] = {w: {v: {} for v in variants} for w in worlds}
    references = {world: material_only(root, args.test_split) for world, root in worlds.items()}
    for world, root in worlds.items():
        for seed in args.seeds:
            for variant, overrides in variants.items():
                run_dir = args.work_dir / world / variant / f'seed{seed}'
                record = run_one(run_dir, args.config, root, seed, overrides, args.test_split)
                results[world][variant][str(seed)] = record
                print(f'{world} {variant} seed {seed}: test top-1 '
                      f'{100 * record["test_top1"]:.1f}% in {record["seconds"]:.0f} s, '
                      f'{record["epochs"]} epochs', flush=True)
                if args.output:
                    write(args.output, results, args.config, variants, worlds, args.reference,
                          references)
    return results


def material_only(root: str, split: str) -> float | None:
    """Top-1 of an embedding that knew each test pair's material and nothing else (B = 32)."""
    from convitac_ros.data import TouchAndGo

    labels = TouchAndGo(root, split, visual_len=1, tactile_len=1).target_array('material')
    return label_only_top1(labels, 32, 0) if len(labels) >= 2 else None


def references_text(references: dict[str, float | None]) -> str:
    """The material-only reference of every world, as one markdown paragraph."""
    parts = [f'{world} {100 * top1:.1f} % ({32 * top1:.1f}x chance)'
             for world, top1 in references.items() if top1 is not None]
    if not parts:
        return ''
    return ('\nMaterial-only reference (test split, B = 32): the top-1 of an embedding that knew '
            "each pair's material perfectly and nothing else: " + ', '.join(parts) + '. Not an '
            'upper bound: camera and gel can share more than the material.\n')


def write(output: Path, results: dict[str, Any], config: list[str],
          variants: dict[str, list[str]], worlds: dict[str, str],
          reference: str = 'default', references: dict[str, float | None] | None = None) -> None:
    """Writes OUTPUT.json (raw) and OUTPUT.md (the table)."""
    output.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(output.with_suffix('.json'), json.dumps(
        {'config': config, 'variants': variants, 'worlds': worlds, 'reference': reference,
         'material_only_top1': references or {}, 'results': results}, indent=1))
    atomic_write_text(output.with_suffix('.md'),
                      table(results, reference) + references_text(references or {}))


if __name__ == '__main__':
    sys.exit(run_command('stage1_ablation.py', main))
