"""Tests of the training pipeline: configs, resume state, exact resume, guards, evaluation."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
import signal
import subprocess
import sys
import time
import warnings

import numpy as np
import pytest
from safetensors.torch import load_file
import torch
from torch import nn
import yaml

from training.data import ResumableSampler
from training.distributed import DistContext
from training.engine import NonFiniteLossError, RunStopped, Trainer
from training.evaluate import evaluate
from training.runs import add_run_arguments, prepare_run
from training.state import load_state, save_state
from training.train import main as train_main
from training.train_config import CONFIG_DIR, ConfigError, load_config, StageConfig

torch.set_num_threads(2)

SHORT = ['--config', 'demo', '--device', 'cpu', '--no-progress', '--set', 'stage1.epochs=1',
         '--set', 'stage2.epochs=2', '--set', 'stage1.batch_size=16',
         '--set', 'stage2.batch_size=16']


def run_args(root: Path, run_dir: Path, *extra: str) -> list[str]:
    """Command line of a short two-stage demo run."""
    return [*SHORT, '--data-root', str(root), '--run-dir', str(run_dir), *extra]


def assert_same_tensors(first: Path, second: Path) -> None:
    """Two safetensors files hold bit-identical tensors under the same names."""
    a, b = load_file(str(first)), load_file(str(second))
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def metric_lines(path: Path) -> list[dict]:
    """The metrics log as records."""
    return [json.loads(line) for line in path.read_text().splitlines()]


# ------------------------------------------------------------------------------------ configs
def parsed(*argv: str) -> argparse.Namespace:
    """The parsed common training options."""
    parser = argparse.ArgumentParser()
    add_run_arguments(parser)
    return parser.parse_args(list(argv))


TRAINING_CONFIGS = ('demo', 'touch_and_go', 'feeling_of_success', 'objectfolder_real',
                    'paper_optimizer')


def test_every_training_config_is_valid() -> None:
    for name in TRAINING_CONFIGS:
        assert (CONFIG_DIR / f'{name}.yaml').is_file()
        assert load_config(name).name


def test_paper_optimizer_config_gives_the_papers_settings() -> None:
    config = load_config('paper_optimizer')
    for stage in (config.stage1, config.stage2):
        assert (stage.optimizer, stage.lr, stage.batch_size) == ('adam', 0.1, 16)
        assert stage.schedule == 'constant'
    assert config.stage2.epochs == 30


def test_overrides_are_typed_and_saved_with_the_run(tmp_path: Path) -> None:
    args = parsed('--config', 'demo', '--run-dir', str(tmp_path / 'run'), '--set',
                  'stage2.lr=3e-4', '--set', 'model.overrides.dropout=0.2', '--seed', '7',
                  '--checkpoint-every-steps', '5')
    config, run_dir, resume = prepare_run(args)
    assert not resume and run_dir == tmp_path / 'run'
    assert config.stage2.lr == pytest.approx(3e-4) and isinstance(config.stage2.lr, float)
    assert config.runtime.seed == 7 and config.runtime.checkpoint_every_steps == 5
    saved = yaml.safe_load((run_dir / 'config.yaml').read_text())
    assert saved['stage2']['lr'] == pytest.approx(3e-4)
    assert saved['model']['overrides'] == {'dropout': 0.2}
    assert saved['runtime']['seed'] == 7
    with pytest.raises(ConfigError, match='already holds a run'):
        prepare_run(args)
    with pytest.raises(ConfigError, match='cannot change'):
        prepare_run(parsed('--resume', str(run_dir), '--set', 'stage2.lr=1'))
    resumed, _, resume = prepare_run(parsed('--resume', str(run_dir), '--device', 'cpu'))
    assert resume and resumed.stage2.lr == config.stage2.lr and resumed.runtime.device == 'cpu'


def test_unknown_or_badly_typed_keys_are_errors() -> None:
    with pytest.raises(ConfigError, match='unknown key'):
        load_config('demo', ['stage2.learning_rate=0.1'])
    with pytest.raises(ConfigError, match='expected int'):
        load_config('demo', ['stage2.epochs=many'])


def test_yaml_booleans_where_words_are_expected() -> None:
    # YAML 1.1 reads an unquoted `off` as false: `amp: off` means what it says.
    assert load_config('demo', ['runtime.amp=off']).runtime.amp == 'off'
    assert load_config('demo', ['runtime.amp=on']).runtime.amp == 'auto'
    with pytest.raises(ConfigError, match='quote the value'):
        load_config('demo', ['runtime.device=no'])


# ------------------------------------------------------------------------------------ state
def test_resume_state_round_trips_optimizer_rng_and_counters(tmp_path: Path) -> None:
    model = nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1, betas=(0.8, 0.9))
    model(torch.ones(4, 3)).sum().backward()
    optimizer.step()
    state = {'optimizer': optimizer.state_dict(), 'numpy': np.random.get_state(),
             'counters': {'epoch': 2, 'best': None, 'ratio': 0.1 + 0.2}}
    save_state(tmp_path / 'state.safetensors', state)
    loaded = load_state(tmp_path / 'state.safetensors')
    assert loaded['counters'] == state['counters']
    assert loaded['optimizer']['param_groups'][0]['betas'] == (0.8, 0.9)
    for index, values in state['optimizer']['state'].items():
        for name, tensor in values.items():
            assert torch.equal(loaded['optimizer']['state'][index][name], tensor)
    np.testing.assert_array_equal(loaded['numpy'][1], state['numpy'][1])
    assert loaded['numpy'][1].dtype == np.uint32
    assert not list(tmp_path.glob('.*.tmp')), 'temporary files must not remain'


def test_load_state_names_the_file_of_a_corrupt_state(tmp_path: Path) -> None:
    path = tmp_path / 'state.safetensors'
    path.write_bytes(b'not a state')
    with pytest.raises(ValueError, match='state.safetensors'):
        load_state(path)


def test_sampler_resumes_mid_epoch_and_shards_disjointly() -> None:
    sampler = ResumableSampler(50, 4, seed=3)
    sampler.set_epoch(1)
    full = list(sampler)
    sampler.set_epoch(1, start_batch=5)
    assert list(sampler) == full[5:]
    sampler.set_epoch(2)
    assert list(sampler) != full
    shards = [ResumableSampler(50, 4, seed=3, rank=rank, world_size=2) for rank in (0, 1)]
    seen = [{index for batch in shard for index, _ in batch} for shard in shards]
    assert not seen[0] & seen[1]


def test_session_batches_come_from_as_few_sessions_as_possible() -> None:
    # 6 sessions of 20 samples, interleaved as a dataset lists them; batches of 8.
    groups = np.array([f'session{i % 6}' for i in range(120)])
    sampler = ResumableSampler(120, 8, seed=5, groups=groups)
    sampler.set_epoch(0)
    batches = [[index for index, _ in batch] for batch in sampler]
    assert len(batches) == 15
    sessions_per_batch = [len({groups[i] for i in batch}) for batch in batches]
    assert max(sessions_per_batch) <= 2 and sessions_per_batch.count(1) >= 9
    assert sorted(i for batch in batches for i in batch) == list(range(120))  # each sample once
    # Random batches mix sessions: the grouping is what makes them few.
    plain = ResumableSampler(120, 8, seed=5)
    plain.set_epoch(0)
    assert min(len({groups[i] for i, _ in batch}) for batch in plain) >= 3
    # Seeded per epoch, resumable mid-epoch, and disjoint across ranks.
    sampler.set_epoch(0, start_batch=4)
    assert [[index for index, _ in batch] for batch in sampler] == batches[4:]
    sampler.set_epoch(1)
    assert [[index for index, _ in batch] for batch in sampler] != batches
    shards = [ResumableSampler(120, 8, seed=5, rank=rank, world_size=2, groups=groups)
              for rank in (0, 1)]
    for shard in shards:
        shard.set_epoch(0)
    seen = [{index for batch in shard for index, _ in batch} for shard in shards]
    assert not seen[0] & seen[1] and len(seen[0]) == len(seen[1]) == 56
    with pytest.raises(ValueError, match='groups'):
        ResumableSampler(120, 8, seed=5, groups=groups[:10])


# ------------------------------------------------------------------------------------ guard
class ToyTask:
    """Regression on a line; the loss is NaN on the listed global steps."""

    name, best_metric, best_mode = 'toy', 'loss', 'min'

    def __init__(self, nan_steps: set[int]) -> None:
        self.nan_steps, self.calls = nan_steps, 0

    def train_mode(self, model: nn.Module) -> None:
        model.train()

    def loss(self, model: nn.Module, batch: torch.Tensor) -> tuple[torch.Tensor, dict]:
        self.calls += 1
        loss = ((model(batch) - 2 * batch) ** 2).mean()
        return (loss * float('nan') if self.calls in self.nan_steps else loss), {}

    def validate(self, model: nn.Module) -> dict[str, float]:
        return {'loss': 0.0}

    def export(self, model: nn.Module, path: Path, summary: dict) -> None:
        path.write_text(json.dumps(summary))


def toy_trainer(tmp_path: Path, nan_steps: set[int], max_nonfinite: int = 3) -> Trainer:
    """A Trainer on a 1-parameter model with 8 samples in batches of 2 (4 steps/epoch)."""
    config = load_config('demo', [f'runtime.max_nonfinite={max_nonfinite}',
                                  'runtime.progress=false', 'runtime.log_every_steps=1'])
    data = [torch.tensor([float(i)]) for i in range(8)]
    stage = StageConfig(epochs=1, batch_size=2, lr=0.01, grad_clip=0.0)
    return Trainer(tmp_path, nn.Linear(1, 1, bias=False), ToyTask(nan_steps), data,
                   lambda items: torch.stack([item for item, _ in items]), stage,
                   config.runtime, DistContext(device=torch.device('cpu')))


def test_nonfinite_losses_are_skipped_and_counted(tmp_path: Path) -> None:
    trainer = toy_trainer(tmp_path, nan_steps={2, 3})
    summary = trainer.fit()
    assert summary['skipped_steps'] == 2 and summary['steps'] == 4
    logged = metric_lines(tmp_path / 'metrics.jsonl')
    assert [record['skipped_steps'] for record in logged if record['kind'] == 'train'] == \
        [0, 1, 2, 2]
    assert all(np.isfinite(record.get('loss', 0.0)) for record in logged)
    assert torch.isfinite(trainer.model.weight).all()


def test_too_many_consecutive_nonfinite_losses_abort(tmp_path: Path) -> None:
    trainer = toy_trainer(tmp_path, nan_steps={1, 2, 3}, max_nonfinite=3)
    weight = trainer.model.weight.detach().clone()
    with pytest.raises(NonFiniteLossError, match='3 consecutive non-finite'):
        trainer.fit()
    assert torch.equal(trainer.model.weight, weight), 'skipped steps must not change weights'


# ------------------------------------------------------------------------------ end to end
def test_contrastive_encoder_is_bit_identical_after_stage2(tiny_run_dir: Path) -> None:
    # Stage 2 freezes stage 1's best encoder (its best held-out retrieval).
    encoder = load_file(str(tiny_run_dir / 'stage1' / 'best.safetensors'))
    for name in ('last.safetensors', 'best.safetensors'):
        model = load_file(str(tiny_run_dir / name))
        for key, tensor in encoder.items():
            assert torch.equal(model[f'contrastive_encoder.{key}'], tensor), key


def test_run_folder_holds_config_metrics_events_and_checkpoints(tiny_run_dir: Path) -> None:
    for stage_dir in (tiny_run_dir, tiny_run_dir / 'stage1'):
        for name in ('best.safetensors', 'last.safetensors', 'state.safetensors',
                     'metrics.jsonl'):
            assert (stage_dir / name).is_file(), stage_dir / name
        assert list((stage_dir / 'tensorboard').glob('events.out.tfevents.*'))
    assert yaml.safe_load((tiny_run_dir / 'config.yaml').read_text())['name'] == 'demo'
    kinds = {record['kind'] for record in metric_lines(tiny_run_dir / 'metrics.jsonl')}
    assert kinds == {'train', 'val'}


def test_stage1_reports_held_out_retrieval_beside_chance(tiny_run_dir: Path) -> None:
    from convitac_ros.checkpoint import read_metadata

    stage1 = tiny_run_dir / 'stage1'
    keys = {f'{kind}_top{k}' for kind in ('retrieval', 'chance') for k in (1, 5)}
    val = [r for r in metric_lines(stage1 / 'metrics.jsonl') if r['kind'] == 'val'][-1]
    assert keys <= set(val) and val['chance_top1'] == 1 / 16  # batches of 16 held-out pairs
    assert not any(key.startswith('ceiling') for key in val)  # no false upper bound
    recorded = read_metadata(stage1 / 'last.safetensors')['training']['val']
    assert {key: recorded[key] for key in keys} == {key: val[key] for key in keys}
    events = b''.join(path.read_bytes() for path in (stage1 / 'tensorboard').glob('events.*'))
    assert b'stage1/val/retrieval_top1' in events
    stage2 = [r for r in metric_lines(tiny_run_dir / 'metrics.jsonl') if r['kind'] == 'val']
    assert {'balanced_accuracy/material', 'macro_f1/material'} <= set(stage2[-1])


@pytest.mark.slow
def test_killed_run_resumes_to_identical_weights_and_metrics(
        synthetic_tag_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    every = ['--checkpoint-every-steps', '3']
    whole = tmp_path / 'whole'
    train_main(run_args(synthetic_tag_root, whole, *every))
    # Killed in stage 1 (steps 4-5 are lost: the last state is from step 3), then resumed.
    killed = tmp_path / 'killed'
    with pytest.raises(RunStopped):
        train_main(run_args(synthetic_tag_root, killed, *every, '--stop-after-steps', '5'))
    assert not (killed / 'last.safetensors').exists()
    capsys.readouterr()
    train_main(['--resume', str(killed), '--no-progress'])
    assert 'stage1: resumed from step 3 of ' in capsys.readouterr().out
    # Stage 2 alone, killed in the middle of its second epoch (7 steps per epoch).
    encoder = whole / 'stage1' / 'last.safetensors'
    stage2 = tmp_path / 'stage2'
    with pytest.raises(RunStopped):
        train_main(run_args(synthetic_tag_root, stage2, *every, '--stop-after-steps', '11',
                            '--contrastive-checkpoint', str(encoder)))
    train_main(['--resume', str(stage2), '--num-workers', '1', '--no-progress'])
    for stage_dir in ('stage1', '.'):
        assert_same_tensors(whole / stage_dir / 'last.safetensors',
                            killed / stage_dir / 'last.safetensors')
        assert metric_lines(whole / stage_dir / 'metrics.jsonl') == \
            metric_lines(killed / stage_dir / 'metrics.jsonl')
    assert_same_tensors(whole / 'last.safetensors', stage2 / 'last.safetensors')
    assert metric_lines(whole / 'metrics.jsonl') == metric_lines(stage2 / 'metrics.jsonl')


@pytest.mark.slow
def test_two_stage_training_beats_chance(tmp_path: Path) -> None:
    from convitac_ros.data.synthetic import make_synthetic

    root = tmp_path / 'world'
    make_synthetic(root, 'touch_and_go', 400, seed=1)
    run_dir = tmp_path / 'run'
    train_main(['--config', 'demo', '--data-root', str(root), '--run-dir', str(run_dir),
                '--device', 'cpu', '--no-progress', '--set', 'stage1.epochs=1',
                '--set', 'stage2.epochs=6'])
    report = evaluate(run_dir / 'last.safetensors', tmp_path / 'eval', device='cpu')
    heads = report['heads']
    material = heads['material']
    assert material['accuracy'] > max(material['chance_uniform'],
                                      material['chance_majority']) + 0.05
    for head in ('hardness', 'roughness'):
        assert heads[head]['accuracy'] > heads[head]['chance_majority'] + 0.15, head


def test_evaluate_writes_report_and_confusion_pngs(tiny_checkpoint: Path,
                                                   tmp_path: Path) -> None:
    report = evaluate(tiny_checkpoint, tmp_path, device='cpu')
    saved = json.loads((tmp_path / 'report.json').read_text())
    assert saved['samples'] == report['samples'] > 0
    assert set(saved['heads']) == {'material', 'hardness', 'roughness'}
    for head, entry in saved['heads'].items():
        matrix = np.array(entry['confusion'])
        assert matrix.shape == (len(entry['classes']),) * 2
        assert matrix.sum() == entry['total']
        assert entry['accuracy'] == pytest.approx(np.trace(matrix) / matrix.sum())
        # The fields convitac_evaluate reports too (one metrics module), and the calibration.
        for key in ('correct', 'balanced_accuracy', 'macro_f1', 'ece', 'temperature'):
            assert key in entry, key
        if len(entry['classes']) == 2:
            assert 0.0 <= entry['roc_auc'] <= 1.0 and 0.0 <= entry['brier'] <= 1.0
            assert (tmp_path / f'reliability_{head}.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
        assert 0.0 <= entry['chance_majority'] <= 1.0
        assert entry['chance_uniform'] == pytest.approx(1 / len(entry['classes']))
        assert (tmp_path / f'confusion_{head}.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'


@pytest.mark.slow
def test_run_killed_by_sigkill_resumes_to_identical_weights(
        synthetic_tag_root: Path, tiny_run_dir: Path, tmp_path: Path) -> None:
    # Real processes (the reference too, so that both run with the same torch threads), one of
    # them killed with SIGKILL as soon as its first mid-run state is on disk.
    script = Path(__file__).resolve().parents[1] / 'training' / 'train.py'

    def start(run_dir: Path, *extra: str) -> subprocess.Popen:
        argv = [*run_args(synthetic_tag_root, run_dir), '--checkpoint-every-steps', '2',
                '--set', 'stage2.epochs=3', '--contrastive-checkpoint',
                str(tiny_run_dir / 'stage1' / 'last.safetensors'), *extra]
        return subprocess.Popen([sys.executable, str(script), *argv],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    whole, killed = tmp_path / 'whole', tmp_path / 'killed'
    assert start(whole).wait(timeout=300) == 0
    process = start(killed)
    try:
        deadline = time.monotonic() + 120
        while not (killed / 'state.safetensors').exists() and process.poll() is None:
            assert time.monotonic() < deadline, 'no resume state was written'
            time.sleep(0.01)
        process.send_signal(signal.SIGKILL)
    finally:
        process.kill()
        process.wait()
    assert process.returncode == -signal.SIGKILL, 'the run ended before it could be killed'
    assert load_state(killed / 'state.safetensors'), 'the state on disk must be whole'
    resumed = subprocess.run([sys.executable, str(script), '--resume', str(killed),
                              '--no-progress'], capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert_same_tensors(whole / 'last.safetensors', killed / 'last.safetensors')
    assert metric_lines(whole / 'metrics.jsonl') == metric_lines(killed / 'metrics.jsonl')


def test_a_warmup_longer_than_half_the_run_is_capped_so_the_base_rate_is_reached() -> None:
    from training.optim import build_scheduler

    stage = StageConfig(lr=1e-3, warmup_steps=500, schedule='constant')
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=stage.lr)
    with pytest.warns(UserWarning, match='warming up over 20 steps instead'):
        scheduler = build_scheduler(optimizer, stage, total_steps=40)
    rates = []
    for _ in range(40):
        rates.append(optimizer.param_groups[0]['lr'])
        optimizer.step()
        scheduler.step()
    assert rates[0] == pytest.approx(1e-3 / 21)
    assert rates[19] < 1e-3
    assert rates[20] == pytest.approx(1e-3) and rates[-1] == pytest.approx(1e-3)
    # A warmup that fits is left alone (no warning).
    short = StageConfig(lr=1e-3, warmup_steps=5, schedule='constant')
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=short.lr)
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        build_scheduler(optimizer, short, total_steps=40)


def test_device_names_as_torch_prints_them() -> None:
    from training.distributed import pick_device
    assert pick_device('cpu') == torch.device('cpu')
    for bad in ('gpu', 'cuda:x', 'cpu:0', 'cuda:'):
        with pytest.raises(ValueError, match='device must be'):
            pick_device(bad)
    if torch.cuda.is_available():  # str(torch.device('cuda', 0)) == 'cuda:0' is accepted
        assert pick_device(str(torch.device('cuda', 0))) == torch.device('cuda', 0)
    else:
        with pytest.raises(ValueError, match='cuda:0 requested but CUDA is not available'):
            pick_device('cuda:0')
