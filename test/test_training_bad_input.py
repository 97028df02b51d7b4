"""Data that training cannot use: one clear line, exit code 2, no run folder left behind."""

from __future__ import annotations

from pathlib import Path
import shutil

import pytest

from training.checks import check_stage2
from training.data import train_and_val
from training.train import cli
from training.train_config import load_config

SHORT = ['--config', 'demo', '--device', 'cpu', '--no-progress', '--set', 'stage1.epochs=1',
         '--set', 'stage2.epochs=1', '--set', 'stage1.batch_size=16',
         '--set', 'stage2.batch_size=16']


def run(capsys, root: Path, run_dir: Path, *extra: str) -> tuple[int, str]:
    code = cli([*SHORT, '--data-root', str(root), '--run-dir', str(run_dir), *extra])
    return code, capsys.readouterr().err


def assert_one_line(code: int, err: str, message: str, run_dir: Path) -> None:
    assert code == 2 and err.startswith('train.py: error: ') and message in err, err
    assert 'Traceback' not in err and len(err.strip().splitlines()) == 1
    assert not run_dir.exists(), 'a run folder was left behind'


def rewrite_lists(root: Path, keep) -> None:
    """Keeps the lines of every list file for which keep(session, label) is true."""
    for name in ('train.txt', 'train_rough.txt', 'label.txt'):
        path = root / name
        lines = [line for line in path.read_text().splitlines()
                 if keep(line.split('/')[0], int(line.rsplit(',', 1)[1]))]
        path.write_text(''.join(f'{line}\n' for line in lines))


@pytest.mark.parametrize(('setting', 'message'), [
    ('stage1.batches=sesion', "batches must be one of ('session', 'random'), got 'sesion'"),
    ('model.overrides.tactile_highpass=2', 'tactile_highpass must be a number in [0, 0.5]'),
])
def test_a_mistyped_setting_is_one_line(setting, message, capsys, tmp_path, synthetic_tag_root):
    run_dir = tmp_path / 'run'
    code, err = run(capsys, synthetic_tag_root, run_dir, '--set', setting)
    assert_one_line(code, err, message, run_dir)


@pytest.mark.parametrize('stage', ['stage1', 'stage2'])
def test_a_dataset_too_small_for_the_batch(stage, capsys, tmp_path, synthetic_tag_root):
    run_dir = tmp_path / 'run'
    code, err = run(capsys, synthetic_tag_root, run_dir, '--set', f'{stage}.batch_size=5000')
    assert_one_line(code, err, f'make no full batch of 5000; lower {stage}.batch_size', run_dir)


def test_one_session_leaves_nothing_to_hold_out(capsys, tmp_path, synthetic_tag_root):
    root = tmp_path / 'one'
    shutil.copytree(synthetic_tag_root, root)
    first = sorted(p.name for p in root.iterdir() if p.is_dir())[0]
    rewrite_lists(root, lambda session, label: session == first)
    run_dir = tmp_path / 'run'
    code, err = run(capsys, root, run_dir)
    assert_one_line(code, err, 'holds one recording session', run_dir)


def test_all_frames_unlabelled(capsys, tmp_path, synthetic_tag_root):
    root = tmp_path / 'unlabelled'
    shutil.copytree(synthetic_tag_root, root)
    rewrite_lists(root, lambda session, label: label == -1)
    run_dir = tmp_path / 'run'
    code, err = run(capsys, root, run_dir)
    assert_one_line(code, err, 'has no samples', run_dir)


def test_a_class_without_training_samples_is_named_on_one_line(capsys, tmp_path,
                                                               synthetic_tag_root):
    root = tmp_path / 'no_metal'
    shutil.copytree(synthetic_tag_root, root)
    names = (root / 'category_reference.txt').read_text().splitlines()
    index = next(int(line.split(':')[1]) for line in names if line.startswith('Metal'))
    for name in ('train.txt', 'label.txt'):
        path = root / name
        path.write_text(''.join(f'{line}\n' for line in path.read_text().splitlines()
                                if int(line.rsplit(',', 1)[1]) != index))
    config = load_config('demo', [f'data.root={root}', 'stage2.batch_size=4'])
    train, val = train_and_val(config.data, 0)
    check_stage2(config, train, val)
    warning = capsys.readouterr().err.strip().splitlines()
    assert len(warning) == 1 and "head 'material'" in warning[0] and "'Metal'" in warning[0]


def test_stage1_streams_its_frames_from_disk(synthetic_tag_root, monkeypatch):
    import pickle

    from convitac_ros.data import touch_and_go
    from training.data import stage1_frames

    config = load_config('demo', [f'data.root={synthetic_tag_root}'])
    train, val = train_and_val(config.data, 0)
    frames = stage1_frames(config.data, train, val)
    # What stage 1 iterates holds names, not pixels: a few hundred bytes per frame pair
    # (a decoded 96 x 96 RGB pair is 55 kB), so its memory does not grow with the images.
    assert len(pickle.dumps(frames)) < 500 * len(frames)
    reads = []
    original = touch_and_go.read_image
    monkeypatch.setattr(touch_and_go, 'read_image', lambda path: reads.append(path) or
                        original(path))
    for _ in range(2):
        frames[0]
    assert len(reads) == 4  # camera and gel, read again each time: nothing is cached
