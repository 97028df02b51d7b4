"""Linters that agree with `colcon test`: ament_flake8, ament_pep257, and ruff (repo config)."""

import os
from pathlib import Path
import shutil
import subprocess
import sys

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Explicit paths so that a local .venv, build/ or install/ folder is never linted.
LINTED = ('convitac_ros', 'training', 'benchmarks', 'scripts', 'tools', 'test', 'launch',
          'setup.py', 'conftest.py')
# ament's own ignore list plus the checks that contradict Google-style docstrings
# (summary on the first line, sections without dashed underlines).
PEP257_IGNORE = [
    'D100', 'D101', 'D102', 'D103', 'D104', 'D105', 'D106', 'D107', 'D203', 'D212', 'D404',
    'D213', 'D401', 'D406', 'D407', 'D413']
LINT_PATHS = [str(ROOT / p) for p in LINTED if (ROOT / p).exists()]


@pytest.mark.flake8
@pytest.mark.linter
def test_flake8_reports_no_errors():
    main_with_errors = pytest.importorskip('ament_flake8.main').main_with_errors
    rc, errors = main_with_errors(argv=['--config', str(ROOT / 'setup.cfg'), *LINT_PATHS])
    assert rc == 0, f'{len(errors)} flake8 errors:\n' + '\n'.join(errors)


@pytest.mark.linter
@pytest.mark.pep257
def test_pep257_reports_no_errors():
    main = pytest.importorskip('ament_pep257.main').main
    rc = main(argv=['--ignore', *PEP257_IGNORE, '--', *LINT_PATHS])
    assert rc == 0, 'Found code style errors / warnings'


@pytest.mark.linter
def test_ruff_reports_no_errors():
    ruff = shutil.which('ruff', path=os.path.dirname(sys.executable)) or shutil.which('ruff')
    if ruff is None:
        pytest.skip('ruff is not installed')
    result = subprocess.run(
        [ruff, 'check', *LINT_PATHS], cwd=ROOT, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
