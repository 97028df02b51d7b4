"""Labels files: what was touched when, for recordings that carry no ground-truth topics.

A labels file is a small CSV, one row per contact episode (or any interval)::

    # convitac labels: times in seconds from the start of the bag
    start,end,material,hardness,roughness,grasp_success
    1.20,2.95,wood,hard,smooth,
    4.10,5.80,foam,soft,,

- `start`, `end`: seconds from the start of the bag (its first message's log time, what
  `ros2 bag info` and the replay progress bar count from); inclusive, `start <= end`.
- Then any subset of the heads `material`, `hardness`, `roughness`, `grasp_success`, each a
  class name (`grasp_success`: `success`/`failure`, or 1/0); an empty cell leaves that head
  unlabelled for the row.
- Lines starting with `#` and blank lines are ignored; rows must not overlap.

Every synchronized frame set whose stamp lies inside a row's interval is labelled with that
row: it is an evaluation point for `convitac_evaluate --labels` and a sample for
`convitac_make_dataset`. A set is placed in time by its camera `header.stamp`.
"""

from __future__ import annotations

from collections.abc import Sequence
import csv
from dataclasses import dataclass
import math
from pathlib import Path

HEADS = ('material', 'hardness', 'roughness', 'grasp_success')
TIME_COLUMNS = ('start', 'end')
# Accepted grasp_success cells (case-insensitive) and the class each means.
GRASP_VALUES = {'success': 'success', 'failure': 'failure', '1': 'success', '0': 'failure'}
NANOSECONDS = 1_000_000_000


class LabelsError(ValueError):
    """A labels file that cannot be read, or that does not fit a bag or a model."""


@dataclass(frozen=True)
class LabelRow:
    """One labelled interval.

    Attributes:
        line: Line number in the file (for messages).
        start_s: Start, seconds from the bag's start (inclusive).
        end_s: End, seconds from the bag's start (inclusive).
        labels: Head -> class name (labelled heads only).
    """

    line: int
    start_s: float
    end_s: float
    labels: dict[str, str]

    def covers(self, offset_ns: int) -> bool:
        """Whether a time (ns from the bag's start) lies inside the interval."""
        return round(self.start_s * NANOSECONDS) <= offset_ns <= round(self.end_s * NANOSECONDS)


@dataclass(frozen=True)
class LabelsFile:
    """A parsed labels file.

    Attributes:
        path: The file.
        heads: Head columns, in file order.
        rows: Rows in time order.
    """

    path: Path
    heads: tuple[str, ...]
    rows: tuple[LabelRow, ...]

    def classes(self) -> dict[str, list[str]]:
        """Head -> the class names the file uses, in order of first use."""
        out: dict[str, list[str]] = {head: [] for head in self.heads}
        for row in self.rows:
            for head, name in row.labels.items():
                if name not in out[head]:
                    out[head].append(name)
        return out

    def label_of(self, offset_ns: int) -> dict[str, str] | None:
        """The labels of the row covering a time (ns from the bag's start), or None."""
        for row in self.rows:
            if row.covers(offset_ns):
                return row.labels
        return None

    def check_classes(self, heads: dict[str, Sequence[str]], owner: str) -> None:
        """Raise when the file uses a head or class that `heads` (a model's) does not have.

        Args:
            heads: Head -> class names, e.g. a checkpoint's.
            owner: What `heads` belongs to, for the message (`checkpoint model.safetensors`).

        Raises:
            LabelsError: Naming the line, the head and the class.
        """
        for row in self.rows:
            for head, name in row.labels.items():
                if head not in heads:
                    raise LabelsError(f'{self.path}:{row.line}: head {head} is not a head of '
                                      f'the {owner} (it has {", ".join(heads)})')
                if name not in heads[head]:
                    raise LabelsError(f'{self.path}:{row.line}: {head} {name!r} is not a class '
                                      f'of the {owner} (it has {", ".join(heads[head])})')


def _seconds(text: str, column: str, where: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise LabelsError(f'{where}: {column} {text!r} is not a number of seconds') from None
    if not math.isfinite(value) or value < 0:
        raise LabelsError(f'{where}: {column} {text!r} must be a finite, non-negative time')
    return value


def _class_name(head: str, cell: str, where: str) -> str:
    """A cell's class name: grasp outcomes may be written 1/0 (lift checks log them so)."""
    if head != 'grasp_success':
        return cell
    name = GRASP_VALUES.get(cell.lower())
    if name is None:
        raise LabelsError(f'{where}: grasp_success {cell!r} is not success/failure or 1/0')
    return name


def read_labels(path: str | Path) -> LabelsFile:
    """Parse and check a labels file (format in the module docstring).

    Raises:
        LabelsError: One line naming the file, the line and what is wrong.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding='utf-8')
    except (OSError, UnicodeDecodeError) as exc:
        raise LabelsError(f'cannot read labels file {path}: {exc}') from exc
    lines = [(number, line) for number, line in enumerate(text.splitlines(), start=1)
             if line.strip() and not line.lstrip().startswith('#')]
    if not lines:
        raise LabelsError(f'{path}: empty labels file (expected a header line '
                          f'"start,end,<heads>")')
    parsed = list(csv.reader([line for _, line in lines], skipinitialspace=True))
    header = [cell.strip() for cell in parsed[0]]
    where = f'{path}:{lines[0][0]}'
    if header[:2] != list(TIME_COLUMNS) or len(header) < 3:
        raise LabelsError(f'{where}: the header must be "start,end," then heads of '
                          f'{", ".join(HEADS)}; got {",".join(header)!r}')
    heads = header[2:]
    unknown = [h for h in heads if h not in HEADS]
    if unknown or len(set(heads)) != len(heads):
        raise LabelsError(f'{where}: unknown or repeated head column(s) {unknown or heads}; '
                          f'known heads: {", ".join(HEADS)}')
    rows = []
    for (number, _), cells in zip(lines[1:], parsed[1:]):
        where = f'{path}:{number}'
        cells = [cell.strip() for cell in cells]
        cells += [''] * (len(header) - len(cells))  # trailing empty cells may be left out
        if len(cells) != len(header):
            raise LabelsError(f'{where}: {len(cells)} columns, the header has {len(header)}')
        start, end = (_seconds(cells[i], TIME_COLUMNS[i], where) for i in (0, 1))
        if end < start:
            raise LabelsError(f'{where}: end {end} is before start {start}')
        labels = {head: _class_name(head, cell, where)
                  for head, cell in zip(heads, cells[2:]) if cell}
        rows.append(LabelRow(number, start, end, labels))
    if not rows:
        raise LabelsError(f'{path}: no label rows after the header')
    rows.sort(key=lambda row: row.start_s)
    for before, after in zip(rows, rows[1:]):
        if after.start_s <= before.end_s:
            raise LabelsError(f'{path}:{after.line}: interval {after.start_s}-{after.end_s} s '
                              f'overlaps line {before.line} ({before.start_s}-{before.end_s} s)')
    return LabelsFile(path, tuple(heads), tuple(rows))


def write_labels(path: str | Path, heads: Sequence[str],
                 rows: Sequence[tuple[float, float, dict[str, str]]], comment: str = '') -> None:
    """Write a labels file (refuses to overwrite one).

    Args:
        path: File to create.
        heads: Head columns.
        rows: (start_s, end_s, head -> class name) per interval; missing heads stay empty.
        comment: Text written as `#` lines above the header.

    Raises:
        LabelsError: The file exists or a head is unknown.
    """
    path = Path(path)
    if path.exists():
        raise LabelsError(f'{path} exists already; labels files are never overwritten')
    unknown = [h for h in heads if h not in HEADS]
    if unknown:
        raise LabelsError(f'unknown head(s) {unknown}; known heads: {", ".join(HEADS)}')
    lines = [f'# {line}' if line else '#' for line in comment.splitlines()]
    lines.append(','.join([*TIME_COLUMNS, *heads]))
    for start, end, labels in rows:
        # Milliseconds, rounded outwards so that the interval still covers its first and last
        # frame.
        start_ms, end_ms = math.floor(start * 1000), math.ceil(end * 1000)
        lines.append(','.join([f'{start_ms / 1000:.3f}', f'{end_ms / 1000:.3f}',
                               *(labels.get(head, '') for head in heads)]))
    path.write_text('\n'.join(lines) + '\n', encoding='utf-8')
