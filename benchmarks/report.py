"""What every benchmark part shares: timing statistics, tables, the machine, the report files.

A part returns a :class:`Report` (tables plus raw results plus pass/fail checks); `write_report`
stores it as ``<name>.json`` and ``<name>.md`` with the date, the machine and the command, so
that every figure in the README can be traced to the run that produced it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
import dataclasses
import datetime
import json
import os
from pathlib import Path
import platform
import shlex
import sys
import time
from typing import Any

import numpy as np
import psutil
import torch

from convitac_ros.evaluation.metrics import summarize_ms

PERCENTILES = (50, 95, 99)


@dataclasses.dataclass
class Table:
    """One printed table: a title, column names, rows of cells and notes under it."""

    title: str
    columns: list[str]
    rows: list[list[Any]] = dataclasses.field(default_factory=list)
    notes: list[str] = dataclasses.field(default_factory=list)

    def add(self, *cells: Any) -> None:
        """Append a row (one cell per column)."""
        if len(cells) != len(self.columns):
            raise ValueError(f'{self.title}: {len(cells)} cells for {len(self.columns)} columns')
        self.rows.append(list(cells))

    def to_markdown(self) -> str:
        """The table as GitHub markdown, notes as a list below it."""
        lines = [f'### {self.title}', '', '| ' + ' | '.join(self.columns) + ' |',
                 '|' + '|'.join('---' for _ in self.columns) + '|']
        lines += ['| ' + ' | '.join(format_cell(c) for c in row) + ' |' for row in self.rows]
        lines += [''] + [f'- {note}' for note in self.notes]
        return '\n'.join(lines).rstrip() + '\n'


@dataclasses.dataclass
class Check:
    """One acceptance check computed from the measurements."""

    name: str
    passed: bool
    detail: str


@dataclasses.dataclass
class Report:
    """What one benchmark part produced."""

    part: str
    tables: list[Table] = dataclasses.field(default_factory=list)
    results: dict[str, Any] = dataclasses.field(default_factory=dict)
    checks: list[Check] = dataclasses.field(default_factory=list)
    settings: dict[str, Any] = dataclasses.field(default_factory=dict)


def format_cell(value: Any) -> str:
    """Render a cell: floats with 3 significant digits (2 decimals from 100), None as '-'."""
    if value is None:
        return '-'
    if isinstance(value, bool):
        return 'yes' if value else 'no'
    if isinstance(value, float):
        if not np.isfinite(value):
            return str(value)
        return f'{value:.1f}' if abs(value) >= 100 else f'{value:.3g}'
    return str(value)


def summarize(samples_s: Sequence[float]) -> dict[str, float]:
    """Milliseconds statistics of durations given in seconds.

    Returns:
        ``count``, ``mean_ms``, ``p50_ms``, ``p95_ms``, ``p99_ms``, ``max_ms`` (NaN when empty).
    """
    return summarize_ms(samples_s, PERCENTILES, suffix='_ms')


def time_calls(call: Callable[[], Any], runs: int, warmup: int,
               sync: Callable[[], None] | None = None) -> list[float]:
    """Wall time of ``runs`` calls after ``warmup`` untimed calls, in seconds each.

    Args:
        call: the work to time.
        runs: timed calls.
        warmup: untimed calls first (allocator, caches, lazy init, autotuning).
        sync: called after every call inside the timed region (``torch.cuda.synchronize``
            on CUDA, where kernels run asynchronously).
    """
    for _ in range(warmup):
        call()
    if sync is not None:
        sync()
    durations = []
    for _ in range(runs):
        start = time.perf_counter()
        call()
        if sync is not None:
            sync()
        durations.append(time.perf_counter() - start)
    return durations


def time_interleaved(calls: dict[str, Callable[[], Any]], runs: int, warmup: int,
                     budget_s: float, sync: Callable[[], None] | None = None,
                     minimum: int = 3) -> dict[str, list[float]]:
    """Time several calls in interleaved rounds, so that load changes hit them alike.

    On a shared machine the load drifts over seconds; timing A then B would put the drift into
    the A/B ratio. Here every round calls each candidate once (rotating the order), so ratios
    between candidates stay meaningful even when absolute numbers move.

    Args:
        calls: name -> zero-argument callable.
        runs: maximum timed rounds.
        warmup: untimed calls of each candidate first.
        budget_s: the rounds stop early (after `minimum`) once they have taken this long.
        sync: device synchronisation after every call (see `device_sync`).
        minimum: rounds always run.

    Returns:
        name -> durations in seconds.
    """
    names = list(calls)
    for name in names:
        time_calls(calls[name], 0, warmup, sync)
    durations: dict[str, list[float]] = {name: [] for name in names}
    started = time.perf_counter()
    for round_index in range(runs):
        if round_index >= minimum and time.perf_counter() - started > budget_s:
            break
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            durations[name].extend(time_calls(calls[name], 1, 0, sync))
    return durations


def device_sync(device: torch.device) -> Callable[[], None] | None:
    """The synchronisation a timer needs on ``device`` (None on the CPU)."""
    if device.type == 'cuda':
        return lambda: torch.cuda.synchronize(device)
    return None


def _cpu_model() -> str:
    try:
        with open('/proc/cpuinfo') as stream:
            for line in stream:
                if line.startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict[str, Any]:
    """Describe the machine: OS, CPU, cores, memory, Python, torch, GPU, ROS distribution."""
    info: dict[str, Any] = {
        'platform': platform.platform(),
        'cpu': _cpu_model(),
        'cpu_logical_cores': psutil.cpu_count(logical=True),
        'cpu_physical_cores': psutil.cpu_count(logical=False),
        'cpu_affinity': len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else None,
        'memory_gib': round(psutil.virtual_memory().total / 2**30, 1),
        'python': platform.python_version(),
        'torch': torch.__version__,
        'torch_threads': torch.get_num_threads(),
        'load_average_1min': round(os.getloadavg()[0], 2) if hasattr(os, 'getloadavg') else None,
        'ros_distro': os.environ.get('ROS_DISTRO', 'pip wheels (no ROS_DISTRO set)'),
        'gpu': None,
    }
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info['gpu'] = {'name': props.name, 'memory_gib': round(props.total_memory / 2**30, 1),
                       'capability': f'{props.major}.{props.minor}',
                       'cuda': torch.version.cuda, 'count': torch.cuda.device_count()}
    return info


def machine_line(info: dict[str, Any]) -> str:
    """One-line summary of `machine_info` for table headers."""
    line = (f"{info['cpu']}, {info['cpu_affinity'] or info['cpu_logical_cores']} usable cores, "
            f"{info['memory_gib']} GiB, torch {info['torch']} ({info['torch_threads']} threads), "
            f"Python {info['python']}")
    if info['gpu']:
        line += f", GPU {info['gpu']['name']} (CUDA {info['gpu']['cuda']})"
    else:
        line += ', no GPU'
    return line


def command_line(argv: Sequence[str] | None = None) -> str:
    """The command that produced a report, as one could type it again."""
    args = list(sys.argv[1:] if argv is None else argv)
    return shlex.join(['python', '-m', 'benchmarks', *args])


def render_markdown(report: Report, header: dict[str, Any]) -> str:
    """The whole report as markdown: provenance, tables, checks."""
    lines = [f'## benchmark: {report.part}', '',
             f"- date: {header['date']}",
             f"- machine: {machine_line(header['machine'])}",
             f"- load average (1 min) at start: {header['machine']['load_average_1min']}",
             f"- command: `{header['command']}`", '']
    text = '\n'.join(lines) + '\n' + '\n'.join(t.to_markdown() for t in report.tables)
    if report.checks:
        checks = Table('Checks', ['check', 'result', 'detail'])
        for check in report.checks:
            checks.add(check.name, 'PASS' if check.passed else 'FAIL', check.detail)
        text += '\n' + checks.to_markdown()
    return text


def report_document(report: Report, command: str, machine: dict[str, Any]) -> dict[str, Any]:
    """The JSON document of a report (provenance, settings, tables, checks, raw results)."""
    return {
        'part': report.part,
        'date': datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'),
        'command': command,
        'machine': machine,
        'settings': report.settings,
        'tables': [dataclasses.asdict(table) for table in report.tables],
        'checks': [dataclasses.asdict(check) for check in report.checks],
        'results': report.results,
    }


def write_report(report: Report, directory: Path | None, stem: str, command: str,
                 machine: dict[str, Any]) -> str:
    """Build the report's markdown; write ``<stem>.json`` and ``<stem>.md`` when asked.

    Returns:
        The markdown text (also what is printed).
    """
    document = report_document(report, command, machine)
    text = render_markdown(report, document)
    if directory is not None:
        directory.mkdir(parents=True, exist_ok=True)
        (directory / f'{stem}.json').write_text(json.dumps(document, indent=2, default=str) + '\n')
        (directory / f'{stem}.md').write_text(text)
    return text
