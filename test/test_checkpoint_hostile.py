"""Checkpoints are data: crafted files are refused by field, offline, without big allocations."""

from __future__ import annotations

import json
import os
from pathlib import Path
import subprocess
import sys

from hostile_checkpoints import DEMO, HOSTILE, overflow_weights, rewrite
import numpy as np
import pytest

# Loads every file given on the command line in one process whose sockets all refuse, with
# HF_HUB_OFFLINE unset (the package must force offline mode itself), and reports what each
# load said, every network attempt, and the peak memory growth over the imports.
LOADER = r"""
import json, resource, socket, sys

attempts = []

def refuse(*args, **kwargs):
    attempts.append(repr(args)[:200])
    raise OSError('network disabled by the test')

socket.socket.connect = socket.socket.connect_ex = refuse
socket.create_connection = socket.getaddrinfo = refuse

from convitac_ros.checkpoint import CheckpointError, load_checkpoint

base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
results = {}
for path in sys.argv[1:]:
    try:
        load_checkpoint(path)
        results[path] = 'LOADED'
    except CheckpointError as error:
        results[path] = str(error)
growth_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024
print(json.dumps({'results': results, 'attempts': attempts, 'growth_mb': growth_mb}))
"""


@pytest.fixture(scope='module')
def crafted(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp('hostile')
    files = {name: rewrite(folder / f'{name}.safetensors', metadata, tensors)
             for name, (metadata, tensors, _) in HOSTILE.items()}
    directory = folder / 'a_directory.safetensors'
    directory.mkdir()
    files['a_directory'] = directory
    return files


def test_no_crafted_checkpoint_loads_reaches_the_network_or_allocates(crafted):
    env = {k: v for k, v in os.environ.items() if k != 'HF_HUB_OFFLINE'}
    paths = [str(DEMO), *map(str, crafted.values())]
    done = subprocess.run([sys.executable, '-c', LOADER, *paths], capture_output=True,
                          text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    results = report['results']
    assert results[str(DEMO)] == 'LOADED'  # the unedited file loads in the same process
    expected = {name: text for name, (_, _, text) in HOSTILE.items()}
    expected['a_directory'] = 'is a directory, not a checkpoint file'
    for name, path in crafted.items():
        assert expected[name] in results[str(path)], (name, results[str(path)])
        assert str(path) in results[str(path)]  # and the refusal names the file
    assert report['attempts'] == []
    # The 8192-wide and 100000-px configs were refused from the header: no model was built.
    assert report['growth_mb'] < 300, report['growth_mb']


def test_finite_but_overflowing_weights_load_and_the_predictor_refuses_their_nan(tmp_path):
    from convitac_ros.inference import NonFiniteOutputError, Predictor

    path = rewrite(tmp_path / 'overflow.safetensors', tensors=overflow_weights)
    predictor = Predictor.from_checkpoint(path, device='cpu')
    frame = np.full((64, 64, 3), 128, np.uint8)
    with pytest.raises(NonFiniteOutputError, match='non-finite probabilities for head'):
        predictor.predict([frame] * 2, [[frame] * 2])
    with pytest.raises(NonFiniteOutputError, match=r'material in 2 of 2 sample'):
        predictor.predict_batch([([frame] * 2, [[frame] * 2])] * 2)


def test_a_missing_cuda_device_is_blamed_not_the_checkpoint():
    import torch

    from convitac_ros.inference import DeviceError, resolve_device

    if torch.cuda.is_available():
        pytest.skip('CUDA is present here')
    with pytest.raises(DeviceError, match="device 'cuda' asked for, but CUDA is not"):
        resolve_device('cuda')
