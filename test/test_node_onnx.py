"""The node from an .onnx export with onnxruntime, where torch cannot be imported.

A `torch` package that raises ImportError is put first on the node process's PYTHONPATH, so any
torch import on the onnxruntime path would make configure fail; the node must still answer, with
the torch Predictor's probabilities.
"""

from __future__ import annotations

import os
from pathlib import Path
import subprocess
import sys
import time

from node_harness import image, running_node, status_values, wait_until
import numpy as np
import pytest

HEADS = {'grasp_success': ['failure', 'success'], 'hardness': ['hard', 'soft']}
BLOCKER = "raise ImportError('torch is blocked here: the onnxruntime path must not use it')"


@pytest.fixture(scope='module')
def models(tmp_path_factory):
    """A real two-sensor checkpoint and its export by convitac_export."""
    import torch

    from convitac_ros.checkpoint import save_checkpoint
    from convitac_ros.export import export_onnx
    from convitac_ros.model import ConViTac, ModelConfig

    torch.manual_seed(0)
    directory = tmp_path_factory.mktemp('onnx_node')
    config = ModelConfig.tiny(num_tactile=2, heads=tuple((h, len(c)) for h, c in HEADS.items()))
    checkpoint = save_checkpoint(directory / 'two.safetensors', ConViTac(config), heads=HEADS)
    return checkpoint, export_onnx(checkpoint, directory / 'two.onnx').path


@pytest.fixture(scope='module')
def no_torch_path(tmp_path_factory) -> str:
    """A PYTHONPATH on which `import torch` fails."""
    blocker = tmp_path_factory.mktemp('no_torch')
    (blocker / 'torch').mkdir()
    (blocker / 'torch' / '__init__.py').write_text(BLOCKER + '\n')
    return os.pathsep.join([str(blocker), *filter(None, [os.environ.get('PYTHONPATH')])])


@pytest.fixture(scope='module')
def running(models, no_torch_path, tmp_path_factory):
    log = tmp_path_factory.mktemp('onnx_node_log') / 'convitac_node.log'
    parameters = {'checkpoint': str(models[1]), 'device': 'cpu', 'qos_reliability': 'reliable',
                  'process_every_pair': True, 'warmup_iterations': 1}
    with running_node(parameters, log, list(HEADS), num_tactile=2, check_exit=False,
                      env={'PYTHONPATH': no_torch_path}) as (node, probe):
        yield node, probe


@pytest.mark.slow
def test_node_answers_from_onnx_without_torch_like_the_torch_predictor(running, models):
    from convitac_ros.inference import Predictor

    node, probe = running
    assert 'with onnxruntime' in node.log(), node.log()
    reference = Predictor.from_checkpoint(models[0], device='cpu')
    rng = np.random.default_rng(0)
    sent = {}
    for _ in range(4):  # two frames per stream: the second set of each pair completes a window
        stamp = time.time_ns()
        frames = [rng.integers(0, 256, (48, 64, 3), dtype=np.uint8) for _ in range(3)]
        probe.publish([image(f, stamp) for f in frames])
        sent[stamp] = frames
        time.sleep(0.1)
    stamps = sorted(sent)
    wait_until(lambda: set(stamps[1:]) <= {r['stamp_ns'] for r in list(probe.results)}, 30,
               'results for every complete window')
    results = {r['stamp_ns']: r for r in list(probe.results)}
    for previous, stamp in zip(stamps, stamps[1:]):
        (cam0, a0, b0), (cam1, a1, b1) = sent[previous], sent[stamp]
        want = reference.predict([cam0, cam1], [[a0, a1], [b0, b1]])
        for head in HEADS:
            np.testing.assert_allclose(results[stamp]['heads'][head]['probabilities'],
                                       want[head], atol=1e-5)
    status = probe.next_status(timeout=10)
    assert status_values(status)['device'] == 'cpu' and 'two' in status.message


def test_the_onnxruntime_path_imports_no_torch(models, no_torch_path):
    script = (
        'import sys\n'
        'import numpy as np\n'
        'from convitac_ros.ros import node\n'
        'from convitac_ros.runtime_onnx import OnnxPredictor\n'
        f'predictor = OnnxPredictor({str(models[1])!r}, device="cpu", threads=1)\n'
        'frame = np.zeros((30, 40, 3), np.uint8)\n'
        'out = predictor.predict([frame] * 2, [[frame] * 2] * 2)\n'
        'heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "timm", '
        '"torchvision", "safetensors"))\n'
        'print(sorted(out), heavy)\n')
    env = {**os.environ, 'PYTHONPATH': no_torch_path}
    result = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True,
                            env=env, timeout=120, cwd=Path(__file__).resolve().parents[1])
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "['grasp_success', 'hardness'] []"
