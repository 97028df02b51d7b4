"""scripts/gpu_check.sh --device cpu --quick: the GPU machine's command runs every day here."""

import json
import os
from pathlib import Path
import subprocess
import sys

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gpu_check_quick_mode_runs_every_step_and_writes_the_tables(tmp_path):
    env = {**os.environ, 'PYTHON': sys.executable}
    result = subprocess.run([str(ROOT / 'scripts' / 'gpu_check.sh'), '--device', 'cpu',
                             '--quick', '--output', str(tmp_path)], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    summary = (tmp_path / 'gpu-check-cpu-quick.md').read_text()
    for name in ('environment', 'checkpoint', 'model', 'predictor', 'onnx', 'training'):
        assert f'| {name} | ok |' in summary, summary
    for name in ('node-raw', 'node-onnxruntime'):  # the node's bars are not met on a CPU
        assert (f'| {name} | ok |' in summary
                or f'| {name} | ran; a check failed (see its table) |' in summary), summary
    for backend in ('raw', 'onnxruntime'):
        node = json.loads((tmp_path / f'node-cpu-quick-tiny-{backend}.json').read_text())
        assert node['results']['latency'], backend
    for part in ('model', 'predictor', 'onnx', 'training'):
        document = json.loads((tmp_path / f'{part}-cpu-quick.json').read_text())
        assert document['results'], part
    onnx_rows = json.loads((tmp_path / 'onnx-cpu-quick.json').read_text())['results']['rows']
    assert onnx_rows[0]['max_abs_diff'] < 1e-5 and onnx_rows[0]['model_speedup'] > 0


def test_gpu_check_refuses_an_unknown_option_in_one_line():
    result = subprocess.run([str(ROOT / 'scripts' / 'gpu_check.sh'), '--devise', 'cpu'],
                            cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip() == 'gpu_check.sh: unknown option --devise (see --help)'


def test_the_carried_wheels_are_the_versions_requirements_pin():
    pins = {}
    for line in (ROOT / 'requirements.txt').read_text().splitlines():
        if '==' in line and not line.startswith('#'):
            name, version = line.split('#')[0].strip().split('==')
            pins[name.split('[')[0]] = version
    wanted = [line for line in (ROOT / 'scripts' / 'gpu_wheels.txt').read_text().splitlines()
              if line and not line.startswith('#')]
    assert any(line.startswith('ros-jazzy-rclpy') for line in wanted)
    for line in wanted:
        name, version = line.split('==')
        assert pins[name.split('[')[0]] == version, line


def test_gpu_check_help_names_the_wheel_step():
    result = subprocess.run([str(ROOT / 'scripts' / 'gpu_check.sh'), '--help'], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    assert 'fetch_gpu_wheels.sh' in result.stdout and '--wheels DIR' in result.stdout
