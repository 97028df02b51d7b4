"""Output paths of the command-line tools, checked before any work is done.

Every tool refuses, in one line, an output it cannot or must not write: its own input, an
existing file (unless the tool takes `--force` and was given it), an existing folder where a
new one is made, a folder where a file belongs, a path under a file, a folder it cannot write
into. The tools then create their output exclusively (`fileio.atomic_write_bytes` with
`overwrite=False`, `make_new_folder`), so an output that appears meanwhile is refused too, and
on failure they remove only what they created.
"""

from __future__ import annotations

from collections.abc import Iterable
import os
from pathlib import Path
import tempfile


class OutputPathError(ValueError):
    """An output path a tool cannot or must not write; the text names the option and why."""


def check_output_file(path: str | os.PathLike, *, option: str = '--output',
                      inputs: Iterable[str | os.PathLike] = (), force: bool = False) -> Path:
    """Check a file a tool is about to write.

    Args:
        path: the output file.
        option: the command-line option that named it, for the message.
        inputs: files the tool reads: never overwritten, even with `force`.
        force: an existing file may be replaced.

    Raises:
        OutputPathError: one line saying why the path cannot be used.
    """
    path = Path(path)
    for source in inputs:
        if _same_file(path, Path(source)):
            raise OutputPathError(f'{option} {path} is the input {source}; write to another '
                                  'file')
    if path.is_dir():
        raise OutputPathError(f'{option} {path} is a folder; give a file name')
    if path.exists() and not force:
        raise OutputPathError(f'{option} {path} exists already; give a new name, or --force '
                              'to replace it')
    _check_parent(path, option)
    return path


def check_new_folder(path: str | os.PathLike, *, option: str = '--output',
                     inputs: Iterable[str | os.PathLike] = ()) -> Path:
    """Check a folder a tool is about to create (it must not exist: nothing is merged into it).

    Raises:
        OutputPathError: one line saying why the path cannot be used.
    """
    path = Path(path)
    for source in inputs:
        if _same_file(path, Path(source)):
            raise OutputPathError(f'{option} {path} is the input {source}')
    if path.exists() or path.is_symlink():
        raise OutputPathError(f'{option} {path} exists already; give a new folder name '
                              '(outputs are never merged or overwritten)')
    _check_parent(path, option)
    return path


def check_writable_folder(path: str | os.PathLike, option: str) -> Path:
    """Check a folder a tool writes into, existing or not (e.g. a training run folder).

    Raises:
        OutputPathError: one line: a file is in the way, or the place cannot be written.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputPathError(f'{option} {path} is a file, not a folder')
    _check_parent(path / 'x', option)
    return path


def make_new_folder(path: str | os.PathLike, option: str = '--output') -> Path:
    """Create a folder that must not exist yet; missing parents are created.

    Exclusive: a folder that appeared since the check is refused, never taken over.

    Raises:
        OutputPathError: it exists already, or cannot be created.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.mkdir()
    except FileExistsError:
        raise OutputPathError(f'{option} {path} exists already; give a new folder name '
                              '(outputs are never merged or overwritten)') from None
    except OSError as exc:
        raise OutputPathError(f'{option} {path}: cannot create it: {exc.strerror or exc}'
                              ) from None
    return path


def _check_parent(path: Path, option: str) -> None:
    existing = next(p for p in (path.parent.absolute(), *path.parent.absolute().parents)
                    if p.exists())
    if not existing.is_dir():
        raise OutputPathError(f'{option} {path}: {existing} is a file, not a folder')
    try:  # a read-only file system or /proc refuses even root; access() would not say so
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as exc:
        raise OutputPathError(f'{option} {path}: cannot write into {existing} '
                              f'({exc.strerror or exc})') from None


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False
