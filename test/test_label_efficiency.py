"""The label-efficiency study's logic: exact seeded subsets, equal step budgets, its outputs."""

import json
from pathlib import Path

import numpy as np
import pytest

from convitac_ros.data import MISSING_LABEL
from training.label_efficiency import ALL, build_parser, per_class_subset, stage2_settings
from training.label_efficiency_report import FIGURE, summarise, write_outputs

LABELS = np.array([0] * 30 + [1] * 12 + [2] * 3 + [MISSING_LABEL] * 7)
np.random.default_rng(0).shuffle(LABELS)


def test_subset_takes_exactly_k_per_class_and_never_an_unlabelled_sample():
    chosen = per_class_subset(LABELS, 2, seed=0)
    assert np.bincount(LABELS[chosen]).tolist() == [2, 2, 2]
    assert chosen == sorted(set(chosen))


def test_subset_gives_a_small_class_all_it_has():
    assert np.bincount(LABELS[per_class_subset(LABELS, 5, seed=0)]).tolist() == [5, 5, 3]


def test_subset_is_seeded_and_nested():
    assert per_class_subset(LABELS, 5, seed=3) == per_class_subset(LABELS, 5, seed=3)
    assert per_class_subset(LABELS, 5, seed=3) != per_class_subset(LABELS, 5, seed=4)
    small, large = set(per_class_subset(LABELS, 1, 7)), set(per_class_subset(LABELS, 10, 7))
    assert small < large


def test_subset_all_is_every_labelled_sample():
    assert per_class_subset(LABELS, ALL, seed=0) == np.flatnonzero(LABELS >= 0).tolist()
    with pytest.raises(ValueError, match='>= 0'):
        per_class_subset(LABELS, -1, seed=0)


def test_small_budgets_get_the_same_steps_large_ones_the_minimum_epochs():
    small = dict(text.split('=') for text in stage2_settings(6, 50, 32, 5))
    assert small['stage2.batch_size'] == '6' and small['stage2.max_steps'] == '50'
    assert int(small['stage2.epochs']) * (6 // 6) >= 50
    large = dict(text.split('=') for text in stage2_settings(1000, 50, 32, 5))
    assert large['stage2.batch_size'] == '32' and large['stage2.epochs'] == '5'
    assert large['stage2.max_steps'] == str(5 * (1000 // 32))


def test_budgets_parse_counts_and_all_and_reject_zero():
    args = build_parser().parse_args(['--world', 'w=/data', '--budgets', '1', '5', 'all'])
    assert args.budgets == [1, 5, ALL] and args.world == [('w', '/data')]
    with pytest.raises(SystemExit):
        build_parser().parse_args(['--world', 'w=/data', '--budgets', '0'])


def _record(world: str, seed: int, k: int, arm: str, material: float) -> dict:
    return {'world': world, 'seed': seed, 'k': k, 'arm': arm, 'labelled': 6 * (k or 50),
            'per_class': [k or 50] * 6, 'test_samples': 300,
            'accuracy': {'material': material, 'hardness': 0.5},
            'balanced_accuracy': {'material': material, 'hardness': 0.5},
            'chance_uniform': {'material': 1 / 6, 'hardness': 0.5},
            'chance_majority': {'material': 0.2, 'hardness': 0.5},
            'stage2_seconds': 1.0, 'stage2_steps': 10, 'stage1_seconds': 60.0,
            'stage1_val': {'retrieval_top1': 0.2 + seed / 100, 'chance_top1': 1 / 32}}


def test_summary_pairs_the_arms_by_seed():
    records = [_record('w', seed, k, arm, 0.3 + 0.1 * (arm == 'pretrained') + seed / 100)
               for seed in (0, 1, 2) for k in (1, ALL) for arm in ('pretrained', 'random')]
    entry = summarise(records)['w']
    row = entry['heads']['material']['1']
    assert row['pretrained']['mean'] == pytest.approx(0.41)
    assert row['random']['std'] == pytest.approx(0.01)
    assert row['gain']['mean'] == pytest.approx(0.1) and row['gain']['std'] == pytest.approx(0)
    assert entry['labelled'] == {'1': 6.0, '0': 300.0}
    assert entry['stage1']['top1']['n'] == 3


def test_outputs_are_written(tmp_path: Path):
    records = [_record(world, seed, k, arm, 0.3 + seed / 50) for world in ('a', 'b')
               for seed in (0, 1) for k in (1, 5, ALL) for arm in ('pretrained', 'random')]
    write_outputs(records, tmp_path, 'material', 'python training/label_efficiency.py ...')
    saved = json.loads((tmp_path / 'label_efficiency.json').read_text())
    assert len(saved['records']) == len(records) and set(saved['summary']) == {'a', 'b'}
    table = (tmp_path / 'label_efficiency.md').read_text()
    assert '### a' in table and '| all (50) | 300 |' in table
    assert (tmp_path / FIGURE).read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'


def test_a_study_writes_into_its_work_folder_unless_told_where(tmp_path: Path, monkeypatch):
    """Rendering a study never writes over the committed docs/results by default."""
    from training.label_efficiency import main

    monkeypatch.chdir(tmp_path)  # a docs/results/label_efficiency here would be the old default
    work = tmp_path / 'runs' / 'le'
    for seed in (0, 1):
        for k, budget in ((1, 'k1'), (ALL, 'all')):
            for arm in ('pretrained', 'random'):
                folder = work / 'w' / f'seed{seed}' / arm / budget
                folder.mkdir(parents=True)
                (folder / 'record.json').write_text(json.dumps(_record('w', seed, k, arm, 0.4)))
    main(['--world', 'w=/data', '--work-dir', str(work), '--no-train'])
    assert (work / 'label_efficiency.md').is_file() and (work / FIGURE).is_file()
    assert not (tmp_path / 'docs').exists()
    main(['--world', 'w=/data', '--work-dir', str(work), '--no-train',
          '--output', str(tmp_path / 'report')])
    assert '### w' in (tmp_path / 'report' / 'label_efficiency.md').read_text()
