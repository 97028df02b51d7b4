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
- UTF-8, with or without a byte-order mark (Excel's "CSV UTF-8"); a cell may be quoted but
  may not hold a line break; times are at most `MAX_SECONDS`; a cell holds at most
  `MAX_CELL_CHARS` characters. Every problem is one line naming the file and the line.

Every synchronized frame set whose stamp lies inside a row's interval is labelled with that
row: it is an evaluation point for `convitac_evaluate --labels` and a sample for
`convitac_make_dataset`. A set is placed in time by its camera `header.stamp`.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator, Sequence
import csv
from dataclasses import dataclass, field
import io
import math
from pathlib import Path

from convitac_ros.fileio import atomic_write_text

HEADS = ('material', 'hardness', 'roughness', 'grasp_success')
TIME_COLUMNS = ('start', 'end')
# Accepted grasp_success cells (case-insensitive) and the class each means.
GRASP_VALUES = {'success': 'success', 'failure': 'failure', '1': 'success', '0': 'failure'}
NANOSECONDS = 1_000_000_000
MAX_SECONDS = 1e9  # about 31 years from the bag's start: nanoseconds still fit an int64
MAX_CELL_CHARS = 200


class LabelsError(ValueError):
    """A labels file that cannot be read, or that does not fit a bag or a model."""


@dataclass(frozen=True, slots=True)
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
    # Row starts in ns, in order (rows do not overlap): the row of a time is a bisection.
    _starts_ns: list[int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, '_starts_ns',
                           [round(row.start_s * NANOSECONDS) for row in self.rows])

    def classes(self) -> dict[str, list[str]]:
        """Head -> the class names the file uses, in order of first use."""
        out: dict[str, list[str]] = {head: [] for head in self.heads}
        for row in self.rows:
            for head, name in row.labels.items():
                if name not in out[head]:
                    out[head].append(name)
        return out

    def row_at(self, offset_ns: int) -> LabelRow | None:
        """The row covering a time (ns from the bag's start), or None; O(log rows)."""
        index = bisect.bisect_right(self._starts_ns, offset_ns) - 1
        if index >= 0 and self.rows[index].covers(offset_ns):
            return self.rows[index]
        return None

    def label_of(self, offset_ns: int) -> dict[str, str] | None:
        """The labels of the row covering a time (ns from the bag's start), or None."""
        row = self.row_at(offset_ns)
        return None if row is None else row.labels

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
    if not (math.isfinite(value) and 0 <= value <= MAX_SECONDS):
        raise LabelsError(f'{where}: {column} {text[:50]!r} must be a time from 0 to '
                          f'{MAX_SECONDS:g} s')
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
    """Parse and check a labels file (format in the module docstring), line by line.

    Raises:
        LabelsError: One line naming the file, the line and what is wrong.
    """
    path = Path(path)
    try:
        with path.open(encoding='utf-8-sig', newline='') as handle:
            return _parse(path, handle)
    except (OSError, UnicodeDecodeError) as exc:
        raise LabelsError(f'cannot read labels file {path}: {exc}') from exc


def _cells(path: Path, handle: io.TextIOBase) -> Iterator[tuple[int, list[str]]]:
    """(line number, stripped cells) of each line that is not blank or a comment."""
    for number, line in enumerate(handle, start=1):
        line = line.rstrip('\r\n')
        if not line.strip() or line.lstrip().startswith('#'):
            continue
        where = f'{path}:{number}'
        if len(line) > MAX_CELL_CHARS * 8:
            raise LabelsError(f'{where}: line of {len(line)} characters; a labels line holds '
                              f'times and class names (at most {MAX_CELL_CHARS} each)')
        if '"' not in line:  # the common case, ten times faster than the csv module
            yield number, [cell.strip() for cell in line.split(',')]
            continue
        try:
            (cells,) = csv.reader([line], skipinitialspace=True, strict=True)
        except csv.Error as exc:
            raise LabelsError(f'{where}: {exc} (a quoted cell must close on its line: cells '
                              'may not hold line breaks)') from None
        yield number, [cell.strip() for cell in cells]


def _parse(path: Path, handle: io.TextIOBase) -> LabelsFile:
    lines = _cells(path, handle)
    first = next(lines, None)
    if first is None:
        raise LabelsError(f'{path}: empty labels file (expected a header line '
                          f'"start,end,<heads>")')
    number, header = first
    where = f'{path}:{number}'
    if header[:2] != list(TIME_COLUMNS) or len(header) < 3:
        raise LabelsError(f'{where}: the header must be "start,end," then heads of '
                          f'{", ".join(HEADS)}; got {",".join(header)[:100]!r}')
    heads = header[2:]
    unknown = [h for h in heads if h not in HEADS]
    if unknown or len(set(heads)) != len(heads):
        raise LabelsError(f'{where}: unknown or repeated head column(s) '
                          f'{(unknown or heads)[:10]}; known heads: {", ".join(HEADS)}')
    rows = []
    for number, cells in lines:
        where = f'{path}:{number}'
        cells += [''] * (len(header) - len(cells))  # trailing empty cells may be left out
        if len(cells) != len(header):
            raise LabelsError(f'{where}: {len(cells)} columns, the header has {len(header)}')
        start, end = (_seconds(cells[i], TIME_COLUMNS[i], where) for i in (0, 1))
        if end < start:
            raise LabelsError(f'{where}: end {end} is before start {start}')
        labels = {head: cell for head, cell in zip(heads, cells[2:]) if cell}
        for head, name in labels.items():
            if len(name) > MAX_CELL_CHARS or not name.isprintable():
                raise LabelsError(f'{where}: {head} {name[:50]!r}... is not a class name (at '
                                  f'most {MAX_CELL_CHARS} printable characters)')
        labels = {head: _class_name(head, name, where) for head, name in labels.items()}
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
    text = io.StringIO()
    text.writelines(f'# {line}\n' if line else '#\n' for line in comment.splitlines())
    writer = csv.writer(text, lineterminator='\n')  # quotes a class name holding a comma
    writer.writerow([*TIME_COLUMNS, *heads])
    for start, end, labels in rows:
        # Milliseconds, rounded outwards so that the interval still covers its first and last
        # frame.
        start_ms, end_ms = math.floor(start * 1000), math.ceil(end * 1000)
        writer.writerow([f'{start_ms / 1000:.3f}', f'{end_ms / 1000:.3f}',
                         *(labels.get(head, '') for head in heads)])
    try:
        atomic_write_text(path, text.getvalue(), overwrite=False)
    except FileExistsError:
        raise LabelsError(f'{path} exists already; labels files are never overwritten') from None
