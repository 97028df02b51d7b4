"""Stage 1 as an initialisation (``model.fusion_from_stage1``, ``configs/stage1_init.yaml``).

The CEC study's equal-compute control as a configuration a team can train: stage 1 runs, and the
two trainable fusion encoders of a cross-attention model start from its encoder.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from convitac_ros.checkpoint import load_checkpoint
from convitac_ros.inference import Predictor
from training.train import cli, STAGE1_DIR
from training.train import main as train_main

SHORT = ['--device', 'cpu', '--no-progress', '--set', 'stage1.epochs=1', '--set',
         'stage2.epochs=1', '--set', 'stage1.batch_size=16', '--set', 'stage2.batch_size=16',
         '--set', 'stage1.retrieval_batch=16', '--set', 'stage1.warmup_steps=2']


def test_the_fusion_encoders_start_from_the_stage1_encoder(synthetic_tag_root: Path,
                                                           tmp_path: Path) -> None:
    run_dir = tmp_path / 'init'
    # A rate of 1e-12 keeps stage 2 from moving the weights: what it saves is where it started.
    train_main(['--config', 'demo', 'stage1_init', '--data-root', str(synthetic_tag_root),
                '--run-dir', str(run_dir), *SHORT, '--set', 'stage2.lr=1e-12'])
    encoder = load_checkpoint(run_dir / STAGE1_DIR / 'best.safetensors',
                              kind='contrastive_encoder').model
    model = load_checkpoint(run_dir / 'best.safetensors').model
    assert model.config.fusion == 'cross_attention' and model.contrastive_encoder is None
    expected = dict(encoder.tokenizer.named_parameters())
    for side in ('visual', 'tactile'):
        tokenizer = getattr(model, f'{side}_encoder').tokenizer
        assert tokenizer.state_dict().keys() == encoder.tokenizer.state_dict().keys()
        # The weights (BatchNorm's running statistics follow stage 2's batches).
        for key, value in tokenizer.named_parameters():
            assert torch.allclose(value, expected[key], atol=1e-6), (side, key)
    # What the node loads: a cross-attention checkpoint, predictions that are distributions.
    predictor = Predictor.from_checkpoint(run_dir / 'best.safetensors', device='cpu')
    frame = np.random.default_rng(0).integers(0, 255, (120, 160, 3), dtype=np.uint8)
    probabilities = predictor.predict([frame, frame], [[frame, frame]])
    assert set(probabilities) == {'material', 'hardness', 'roughness'}
    assert all(abs(float(p.sum()) - 1) < 1e-5 for p in probabilities.values())


def test_fusion_encoders_that_the_encoder_does_not_fit_are_one_line_before_stage1(
        synthetic_tag_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run_dir = tmp_path / 'mismatch'
    # demo's fusion encoders are narrower than its E^c.
    code = cli(['--config', 'demo', '--data-root', str(synthetic_tag_root), '--run-dir',
                str(run_dir), *SHORT, '--set', 'model.fusion_from_stage1=true'])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert 'model.fusion_from_stage1: the visual fusion encoder' in err[0]
    assert 'stage1_init.yaml' in err[0] and 'Traceback' not in err[0]
    assert not (run_dir / STAGE1_DIR).exists()  # stage 1 never started


def test_init_from_a_checkpoint_and_from_stage1_are_exclusive(
        synthetic_tag_root: Path, tiny_checkpoint: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture) -> None:
    code = cli(['--config', 'demo', 'stage1_init', '--data-root', str(synthetic_tag_root),
                '--run-dir', str(tmp_path / 'both'), *SHORT, '--init-from',
                str(tiny_checkpoint)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and 'give one of them' in err[0], err
