"""Installed size of a requirements file: its dependency closure, measured in this environment.

    .venv/bin/python scripts/install_size.py requirements-runtime.txt requirements.txt

For each file, the named distributions and everything they require (markers and extras
evaluated) are looked up in the running environment, and the sizes of the files each one
installed (its RECORD) are summed. Nothing is downloaded; a requirement that is not installed
here is reported as missing.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable
import importlib.metadata as metadata
from pathlib import Path
import re
import sys

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name


def read_requirements(path: Path) -> list[Requirement]:
    """Requirements of a pip requirements file (comments and options skipped)."""
    lines = (re.sub(r'\s+#.*$', '', line).strip() for line in path.read_text().splitlines())
    return [Requirement(line) for line in lines if line and not line.startswith(('#', '-'))]


def closure(requirements: Iterable[Requirement]) -> tuple[dict[str, metadata.Distribution],
                                                          list[str]]:
    """The installed distributions a set of requirements pulls in, and the missing names."""
    found: dict[str, metadata.Distribution] = {}
    missing = []
    pending = [(requirement, '') for requirement in requirements]
    while pending:
        requirement, extra = pending.pop()
        if requirement.marker and not requirement.marker.evaluate({'extra': extra}):
            continue
        name = canonicalize_name(requirement.name)
        try:
            distribution = metadata.distribution(requirement.name)
        except metadata.PackageNotFoundError:
            missing.append(requirement.name)
            continue
        extras_key = f'{name}[{",".join(sorted(requirement.extras))}]'
        if extras_key in found:
            continue
        found[extras_key] = distribution
        for text in distribution.requires or []:
            child = Requirement(text)
            for wanted in requirement.extras or {''}:
                pending.append((child, wanted))
    unique = {canonicalize_name(d.metadata['Name']): d for d in found.values()}
    return unique, sorted(set(missing))


def installed_bytes(distribution: metadata.Distribution) -> int:
    """Sum of the sizes of the files a distribution installed."""
    total = 0
    for file in distribution.files or []:
        path = Path(distribution.locate_file(file))
        if path.is_file():
            total += path.stat().st_size
    return total


def main(argv: list[str] | None = None) -> int:
    """Print the installed size of each requirements file's closure."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('files', nargs='+', type=Path)
    parser.add_argument('--top', type=int, default=5, help='largest distributions to list')
    args = parser.parse_args(argv)
    for path in args.files:
        distributions, missing = closure(read_requirements(path))
        sizes = sorted(((installed_bytes(d), name) for name, d in distributions.items()),
                       reverse=True)
        total = sum(size for size, _ in sizes)
        largest = ', '.join(f'{name} {size / 2**20:.0f}' for size, name in sizes[:args.top])
        absent = f'; not installed here: {missing}' if missing else ''
        print(f'{path}: {total / 2**20:.0f} MiB in {len(sizes)} distributions '
              f'(largest, MiB: {largest}){absent}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
