"""train.py as a command: user errors are one line and exit code 2, never a traceback."""

from __future__ import annotations

from pathlib import Path
import shutil

import pytest

from training.train import cli

SHORT = ['--config', 'demo', '--device', 'cpu', '--no-progress', '--set', 'stage1.epochs=1',
         '--set', 'stage2.epochs=1']


def run(capsys, root: Path, run_dir: Path, *extra: str) -> tuple[int, str]:
    code = cli([*SHORT, '--data-root', str(root), '--run-dir', str(run_dir), *extra])
    return code, capsys.readouterr().err


@pytest.mark.parametrize('extra,message', [
    (['--set', 'stage1.bogus=1'], "stage1: unknown key(s) ['bogus']"),
    (['--set', 'stage2.epochs=many'], "stage2.epochs: expected int, got 'many'"),
])
def test_bad_config_keys_and_types_are_one_line(extra, message, capsys, tmp_path,
                                                synthetic_tag_root):
    code, err = run(capsys, synthetic_tag_root, tmp_path / 'run', *extra)
    assert code == 2 and err.startswith('train.py: error: ')
    assert message in err and 'Traceback' not in err and len(err.strip().splitlines()) == 1


def test_missing_and_empty_data_roots_are_one_line(capsys, tmp_path, synthetic_tag_root):
    code, err = run(capsys, tmp_path / 'nowhere', tmp_path / 'a')
    assert code == 2 and 'root directory not found' in err and len(err.splitlines()) == 1
    empty = tmp_path / 'empty'
    shutil.copytree(synthetic_tag_root, empty, ignore=shutil.ignore_patterns('2*'))
    (empty / 'train.txt').write_text('')
    code, err = run(capsys, empty, tmp_path / 'b')
    assert code == 2 and "'train' split of touch_and_go" in err and 'has no samples' in err


def test_a_corrupt_image_is_one_line_naming_the_file(capsys, tmp_path, synthetic_tag_root):
    corrupt = tmp_path / 'corrupt'
    shutil.copytree(synthetic_tag_root, corrupt)
    for frame in corrupt.glob('*/video_frame/*'):
        frame.write_bytes(b'garbage')
    code, err = run(capsys, corrupt, tmp_path / 'run')
    assert code == 2 and 'cannot decode image (corrupt or not an image)' in err
    assert 'video_frame' in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize('script,argv,message', [
    ('pretrain.py', ['--config', 'no_such_config'], "config 'no_such_config' not found"),
    ('evaluate.py', ['--checkpoint', 'no/such.safetensors', '--dataset', 'touch_and_go',
                     '--data-root', '.'], 'no/such.safetensors'),
])
def test_every_training_script_gives_user_errors_in_one_line(script, argv, message, tmp_path):
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, str(root / 'training' / script), *argv],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(f'{script}: error: ') and message in done.stderr
    assert 'Traceback' not in done.stderr and len(done.stderr.strip().splitlines()) == 1
