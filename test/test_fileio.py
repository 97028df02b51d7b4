"""Atomic writes: complete files with the usual mode, no temporaries, old file kept on failure."""

import os
import stat

import pytest

from convitac_ros.fileio import atomic_write_bytes, atomic_write_text


def test_atomic_write_creates_file_with_umask_mode_and_no_temporaries(tmp_path):
    target = tmp_path / 'sub' / 'file.bin'
    atomic_write_bytes(target, b'abc')
    assert target.read_bytes() == b'abc'
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask
    assert sorted(p.name for p in target.parent.iterdir()) == ['file.bin']


def test_atomic_write_replaces_whole_file(tmp_path):
    target = tmp_path / 'file.txt'
    atomic_write_text(target, 'a long first version')
    atomic_write_text(target, 'short')
    assert target.read_text() == 'short'


def test_failed_write_keeps_previous_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / 'file.txt'
    atomic_write_text(target, 'old')
    with pytest.raises(TypeError):
        atomic_write_bytes(target, 'not bytes')  # fails inside the write
    assert target.read_text() == 'old'
    assert [p.name for p in tmp_path.iterdir()] == ['file.txt']
