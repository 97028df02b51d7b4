"""Shared fixtures: a small synthetic Touch-and-Go world and a checkpoint trained on it.

`tiny_checkpoint` is written by the real training code (`training/train.py`, both stages, a
tiny model, a few optimizer steps), so tests of the node, the bag tools and the benchmarks run
against exactly what users get from training, only smaller.
"""

from pathlib import Path

import pytest

TINY_TAG_SAMPLES = 150
TINY_TAG_SEED = 0


@pytest.fixture(scope='session')
def synthetic_tag_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A synthetic dataset in the Touch and Go layout (150 labelled frames, 8 materials)."""
    from convitac_ros.data.synthetic import make_synthetic

    root = tmp_path_factory.mktemp('data') / 'synthetic_tag'
    make_synthetic(root, 'touch_and_go', TINY_TAG_SAMPLES, TINY_TAG_SEED)
    return root


@pytest.fixture(scope='session')
def tiny_run_dir(synthetic_tag_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished two-stage training run of the demo config, shortened to a few steps."""
    from training.train import main

    run_dir = tmp_path_factory.mktemp('runs') / 'tiny'
    main(['--config', 'demo', '--data-root', str(synthetic_tag_root), '--run-dir', str(run_dir),
          '--device', 'cpu', '--no-progress', '--set', 'stage1.epochs=1',
          '--set', 'stage2.epochs=1', '--set', 'stage1.batch_size=16',
          '--set', 'stage2.batch_size=16', '--set', 'stage1.retrieval_batch=16',
          '--set', 'stage1.warmup_steps=2'])
    return run_dir


@pytest.fixture(scope='session')
def tiny_checkpoint(tiny_run_dir: Path) -> Path:
    """Path of a real `convitac` checkpoint (tiny model, Touch and Go heads, 1 tactile sensor).

    Heads material (8 synthetic classes), hardness, roughness; visual_len = tactile_len = 2;
    64 px frames. Trained for a few steps only: its predictions are not meaningful.
    """
    return tiny_run_dir / 'last.safetensors'


@pytest.fixture(scope='session')
def tiny_predictor(tiny_checkpoint: Path):
    """The one CPU Predictor of ``tiny_checkpoint`` shared by the tests."""
    from convitac_ros.inference import Predictor

    return Predictor.from_checkpoint(tiny_checkpoint, device='cpu')
