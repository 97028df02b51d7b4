"""Both stages stop when validation stops improving, at the epoch cap, or when time is up."""

from __future__ import annotations

import json
from pathlib import Path
import time

import pytest
import torch
from torch import nn

from training.distributed import DistContext
from training.engine import Trainer
from training.train_config import ConfigError, load_config, StageConfig


class ScriptedTask:
    """Regression on a line whose validation metric follows a script (one value per epoch)."""

    name, best_metric, best_mode = 'toy', 'score', 'max'

    def __init__(self, scores: list[float], step_seconds: float = 0.0) -> None:
        self.scores, self.step_seconds, self.validations = scores, step_seconds, 0

    def train_mode(self, model: nn.Module) -> None:
        model.train()

    def loss(self, model: nn.Module, batch: torch.Tensor) -> tuple[torch.Tensor, dict]:
        time.sleep(self.step_seconds)
        return ((model(batch) - 2 * batch) ** 2).mean(), {}

    def validate(self, model: nn.Module) -> dict[str, float]:
        score = self.scores[min(self.validations, len(self.scores) - 1)]
        self.validations += 1
        return {'score': score}

    def export(self, model: nn.Module, path: Path, summary: dict) -> None:
        path.write_text(json.dumps(summary))


def trainer(tmp_path: Path, task: ScriptedTask, **stage: float) -> Trainer:
    """8 samples in batches of 2: 4 steps per epoch."""
    runtime = load_config('demo', ['runtime.progress=false']).runtime
    data = [torch.tensor([float(i)]) for i in range(8)]
    return Trainer(tmp_path, nn.Linear(1, 1, bias=False), task, data,
                   lambda items: torch.stack([item for item, _ in items]),
                   StageConfig(batch_size=2, lr=0.01, **stage), runtime,
                   DistContext(device=torch.device('cpu')))


def test_patience_stops_after_that_many_epochs_without_improvement(tmp_path: Path) -> None:
    scores = [0.1, 0.3, 0.2, 0.3, 0.25, 0.9]  # best 0.3 at epoch 2; ties do not count
    summary = trainer(tmp_path, ScriptedTask(scores), epochs=20, patience=3).fit()
    assert summary['epochs'] == 5 and summary['stop_reason'] == 'patience'
    assert summary['best'] == 0.3 and summary['best_epoch'] == 2
    assert json.loads((tmp_path / 'best.safetensors').read_text())['best_epoch'] == 2


def test_patience_waits_for_min_epochs_so_a_late_take_off_is_kept(tmp_path: Path) -> None:
    # a noise spike at epoch 1, flat until the take-off at epoch 5: patience 2 alone stops at
    # epoch 3 on the spike; with min_epochs 5 the run reaches the take-off, then patience ends it
    scores = [0.08, 0.03, 0.04, 0.05, 0.30, 0.40, 0.35, 0.38]
    alone = trainer(tmp_path / 'alone', ScriptedTask(scores), epochs=20, patience=2).fit()
    assert alone['epochs'] == 3 and alone['best'] == 0.08
    summary = trainer(tmp_path / 'min', ScriptedTask(scores), epochs=20, patience=2,
                      min_epochs=5).fit()
    assert summary['stop_reason'] == 'patience' and summary['epochs'] == 8
    assert summary['best'] == 0.40 and summary['best_epoch'] == 6


def test_min_epochs_does_not_outlast_the_cap(tmp_path: Path) -> None:
    summary = trainer(tmp_path, ScriptedTask([0.5, 0.1]), epochs=3, patience=1,
                      min_epochs=10).fit()
    assert summary['epochs'] == 3 and summary['stop_reason'] == 'epochs'


def test_without_patience_the_epoch_cap_ends_the_run(tmp_path: Path) -> None:
    summary = trainer(tmp_path, ScriptedTask([0.5]), epochs=4).fit()
    assert summary['epochs'] == 4 and summary['stop_reason'] == 'epochs'
    assert summary['steps'] == 16


def test_the_wall_clock_budget_ends_the_run_and_validates_what_it_has(tmp_path: Path) -> None:
    task = ScriptedTask([0.1, 0.2, 0.3], step_seconds=0.05)
    summary = trainer(tmp_path, task, epochs=1000, max_minutes=0.5 / 60).fit()
    assert summary['stop_reason'] == 'max_minutes' and task.validations >= 1
    assert summary['steps'] < 20 and 0.5 / 60 <= summary['minutes'] < 2 / 60
    assert (tmp_path / 'best.safetensors').is_file()


def test_a_resumed_run_keeps_its_patience_count(tmp_path: Path) -> None:
    scores = [0.5, 0.4, 0.4, 0.4, 0.4]
    first = trainer(tmp_path, ScriptedTask(scores), epochs=20, patience=3)
    first.runtime.stop_after_steps = 10  # killed in epoch 3, after two validations
    assert first.fit()['stopped']
    first.runtime.stop_after_steps = 0
    task = ScriptedTask(scores[2:])
    summary = trainer(tmp_path, task, epochs=20, patience=3).fit(resume=True)
    assert summary['epochs'] == 4 and summary['stop_reason'] == 'patience'
    assert summary['best_epoch'] == 1 and task.validations == 2


def test_bad_stopping_settings_are_config_errors() -> None:
    for override, message in (('stage1.patience=-1', 'patience'),
                              ('stage2.max_minutes=-5', 'max_minutes'),
                              ('stage1.negatives=none', 'negatives'),
                              ('stage1.min_epochs=-3', 'min_epochs')):
        with pytest.raises(ConfigError, match=message):
            load_config('demo', [override])
    config = load_config('demo')
    assert config.stage1.patience > 0 and config.stage2.patience > 0
    assert 0 < config.stage1.max_minutes + config.stage2.max_minutes <= 20
