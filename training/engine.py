"""The training loop shared by both stages: exact resume, AMP, clipping, guards, logging.

A stage plugs in as a :class:`Task` (its loss, its validation, how it writes a checkpoint);
the :class:`Trainer` owns everything else. Resuming is exact: the resume state holds the model,
optimizer, scheduler and scaler, the RNG states of Python, NumPy and torch, the epoch, the step
inside the epoch and the running log window, and the data order comes from a seeded sampler
that can start in the middle of an epoch, so a killed run continued with ``--resume`` produces
the same weights and metrics as one that never stopped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
import contextlib
from dataclasses import dataclass, field
import json
import math
from pathlib import Path
import time
from typing import Any, Protocol
import warnings

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from training.data import KeyedDataset, ResumableSampler
from training.distributed import DistContext
from training.optim import build_optimizer, build_scheduler
from training.state import (
    capture_rng,
    load_state,
    non_finite_tensors,
    restore_rng,
    save_state,
    TrainingStateError,
)
from training.train_config import RuntimeConfig, StageConfig

STATE_FILE = 'state.safetensors'
METRICS_FILE = 'metrics.jsonl'


class NonFiniteLossError(RuntimeError):
    """Raised after too many consecutive non-finite losses or gradients."""


class RunStopped(RuntimeError):
    """Raised by the scripts when ``stop_after_steps`` ended a stage early (a simulated kill)."""


class Task(Protocol):
    """What one training stage contributes to the loop."""

    name: str  # 'stage1' or 'stage2': log prefix
    best_metric: str  # key of the validation dict that selects best.safetensors
    best_mode: str  # 'min' or 'max'

    def train_mode(self, model: nn.Module) -> None:
        """Puts the model in training mode (frozen parts stay in eval mode)."""

    def loss(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, dict[str, float]]:
        """Returns the scalar loss of one batch (already on the device) and extra metrics."""

    def validate(self, model: nn.Module) -> dict[str, float]:
        """Evaluates the unwrapped model on the validation split (rank 0 only)."""

    def export(self, model: nn.Module, path: Path, summary: dict[str, Any]) -> None:
        """Writes a deployable checkpoint of the unwrapped model."""


@dataclass
class Progress:
    """Loop counters: everything besides tensors that exact resume needs."""

    epoch: int = 0
    step_in_epoch: int = 0
    global_step: int = 0
    skipped_steps: int = 0
    consecutive_nonfinite: int = 0
    best: float | None = None
    finished: bool = False
    window: dict[str, float] = field(default_factory=dict)  # running sums since the last log
    last_val: dict[str, float] = field(default_factory=dict)
    metrics_bytes: int = 0
    best_epoch: int = 0  # epoch whose validation was the best so far
    since_best: int = 0  # validations in a row without improvement (early stopping)
    elapsed_s: float = 0.0  # training wall-clock seconds, summed across resumes
    stop_reason: str = ''  # 'patience', 'max_minutes' or 'epochs' once finished


class Trainer:
    """Runs one stage: ``Trainer(...).fit()`` trains, validates, logs, checkpoints, resumes."""

    def __init__(self, run_dir: Path, model: nn.Module, task: Task, train_set: Dataset,
                 collate: Callable[[list[Any]], Any], stage: StageConfig,
                 runtime: RuntimeConfig, context: DistContext, num_workers: int = 0,
                 lr_scale: Callable[[str], float] | None = None,
                 groups: np.ndarray | None = None) -> None:
        self.run_dir, self.task, self.stage, self.runtime = Path(run_dir), task, stage, runtime
        self.context = context
        self.model = model.to(context.device)
        self.sampler = ResumableSampler(len(train_set), stage.batch_size, runtime.seed,
                                        context.rank, context.world_size, groups)
        self.loader = DataLoader(
            KeyedDataset(train_set), batch_sampler=self.sampler, collate_fn=collate,
            num_workers=num_workers, pin_memory=context.device.type == 'cuda',
            # Own generator: creating an iterator must not draw from the global torch RNG.
            generator=torch.Generator().manual_seed(runtime.seed))
        self.steps_per_epoch = len(self.sampler)
        total = stage.epochs * self.steps_per_epoch
        self.total_steps = min(total, stage.max_steps) if stage.max_steps > 0 else total
        self.optimizer = build_optimizer(self.model.named_parameters(), stage, lr_scale)
        self.scheduler = build_scheduler(self.optimizer, stage, self.total_steps)
        self.amp_dtype = amp_dtype(runtime.amp, context.device)
        self.scaler = torch.amp.GradScaler('cuda', enabled=self.amp_dtype == torch.float16)
        self.wrapped = self.model
        if context.distributed:
            ids = [context.device.index] if context.device.type == 'cuda' else None
            self.wrapped = DistributedDataParallel(
                self.model, device_ids=ids,
                find_unused_parameters=runtime.find_unused_parameters)
        self.progress = Progress()
        self.writer: SummaryWriter | None = None

    # ----------------------------------------------------------------------------- state
    @property
    def state_path(self) -> Path:
        """The resume state file of this run."""
        return self.run_dir / STATE_FILE

    def _state(self) -> dict[str, Any]:
        rng = capture_rng()
        if self.context.distributed:
            gathered: list[Any] = [None] * self.context.world_size
            torch.distributed.all_gather_object(gathered, rng)
            rng = {str(rank): value for rank, value in enumerate(gathered)}
        return {
            'model': self.model.state_dict(),
            'optimizer': self.optimizer.state_dict(),
            'scheduler': self.scheduler.state_dict(),
            'scaler': self.scaler.state_dict(),
            'rng': rng,
            'world_size': self.context.world_size,
            'progress': vars(self.progress),
        }

    def save_state(self) -> None:
        """Writes the resume state (rank 0; every rank takes part in gathering RNG states)."""
        state = self._state()
        if self.context.is_main:
            self.progress.metrics_bytes = self._metrics_size()
            state['progress'] = dict(vars(self.progress))
            save_state(self.state_path, state)
        self.context.barrier()

    def load_state(self) -> None:
        """Restores everything written by :meth:`save_state`, checked before anything changes.

        Raises:
            TrainingStateError: An unreadable or corrupt state, another world size, or
                non-finite model weights (one line naming the file).
        """
        path = self.state_path
        state = load_state(path)
        try:
            if state['world_size'] != self.context.world_size:
                raise TrainingStateError(
                    f'{path}: saved with world size {state["world_size"]}, resumed with '
                    f'{self.context.world_size}')
            broken = non_finite_tensors(state['model'])
            if broken:
                raise TrainingStateError(
                    f'{path}: the saved model holds non-finite weights ({len(broken)} '
                    f'tensors, e.g. {broken[0]}); resuming would train and export them: start '
                    'a new run (best.safetensors and last.safetensors are kept)')
            self.model.load_state_dict(state['model'])
            self.optimizer.load_state_dict(state['optimizer'])
            self.scheduler.load_state_dict(state['scheduler'])
            self.scaler.load_state_dict(state['scaler'])
            rng = state['rng']
            restore_rng(rng[str(self.context.rank)] if self.context.distributed else rng)
            self.progress = Progress(**state['progress'])
        except TrainingStateError:
            raise
        except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as error:
            raise TrainingStateError(f'{path}: corrupt training state ({type(error).__name__}: '
                                     f'{" ".join(str(error).split())[:150]})') from None
        if self.context.is_main:
            self._truncate_metrics(self.progress.metrics_bytes)

    # ----------------------------------------------------------------------------- logging
    def _metrics_size(self) -> int:
        path = self.run_dir / METRICS_FILE
        return path.stat().st_size if path.exists() else 0

    def _truncate_metrics(self, size: int) -> None:
        """Drops metric lines written after the saved state by the run that was killed."""
        path = self.run_dir / METRICS_FILE
        if path.exists():
            with open(path, 'r+b') as stream:
                stream.truncate(size)

    def log(self, kind: str, values: dict[str, float]) -> None:
        """Appends one JSON line and the matching TensorBoard scalars (rank 0)."""
        if not self.context.is_main:
            return
        record = {'stage': self.task.name, 'kind': kind, 'epoch': self.progress.epoch,
                  'step': self.progress.global_step, **values}
        with open(self.run_dir / METRICS_FILE, 'a') as stream:
            stream.write(json.dumps(record) + '\n')
        if self.writer is not None:
            for key, value in values.items():
                self.writer.add_scalar(f'{self.task.name}/{kind}/{key}', value,
                                       self.progress.global_step)

    # ----------------------------------------------------------------------------- loop
    def fit(self, resume: bool = False) -> dict[str, Any]:
        """Trains until validation stops improving or the budget is spent.

        The run ends at the first of: ``stage.patience`` validations in a row without a better
        ``task.best_metric`` (when patience > 0, and not before ``stage.min_epochs`` epochs:
        a learner that takes off late is not stopped on the noise of its first validations),
        ``stage.max_minutes`` of training wall-clock
        time (when > 0; checked after every step, the epoch in progress is validated), the
        ``stage.epochs`` cap (or ``max_steps``), or ``stop_after_steps`` (a simulated kill).

        Args:
            resume: Continue from this run's state file when it exists.

        Returns:
            A summary: best and last validation metrics, epochs reached, the best epoch, why
            it ended (``stop_reason``), steps, skipped steps, and ``stopped`` (True when the
            run stopped early because of ``stop_after_steps``).

        Raises:
            NonFiniteLossError: After ``max_nonfinite`` consecutive non-finite steps.
        """
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if resume and self.state_path.exists():
            self.load_state()
            if self.context.is_main:
                progress = self.progress
                print(f'{self.task.name}: resumed from step {progress.global_step} of '
                      f'{self.total_steps} (epoch {progress.epoch})'
                      + (' - already finished' if progress.finished else ''), flush=True)
        elif self.context.is_main:
            self._truncate_metrics(0)
        if self.progress.finished:
            return self.summary(stopped=False)
        if self.context.is_main:
            self.writer = SummaryWriter(str(self.run_dir / 'tensorboard'),
                                        purge_step=self.progress.global_step or None)
        try:
            stopped = self._run_epochs()
        finally:
            if self.writer is not None:
                self.writer.close()
        return self.summary(stopped=stopped)

    def _run_epochs(self) -> bool:
        progress = self.progress
        while not progress.finished and progress.global_step < self.total_steps:
            self.sampler.set_epoch(progress.epoch, start_batch=progress.step_in_epoch)
            out_of_time = False
            started = time.monotonic()
            for batch in self._bar(iter(self.loader)):
                self._train_step(batch)
                progress.step_in_epoch += 1
                progress.global_step += 1
                self._maybe_log()
                every = self.runtime.checkpoint_every_steps
                if every > 0 and progress.global_step % every == 0:
                    self.save_state()
                if progress.global_step == self.runtime.stop_after_steps:
                    progress.elapsed_s += time.monotonic() - started
                    return True
                out_of_time = self._out_of_time(progress.elapsed_s
                                                + time.monotonic() - started)
                if progress.global_step >= self.total_steps or out_of_time:
                    break
            progress.elapsed_s += time.monotonic() - started
            self._end_epoch(out_of_time)
        return False

    def _out_of_time(self, elapsed_s: float) -> bool:
        """Whether the wall-clock budget (``stage.max_minutes``, 0 = none) is spent."""
        budget = self.stage.max_minutes * 60.0
        if budget <= 0:
            return False
        return self.context.all_agree(elapsed_s >= budget)  # every rank stops at the same step

    def _bar(self, batches: Iterator[Any]) -> Iterator[Any]:
        remaining = self.steps_per_epoch - self.progress.step_in_epoch
        return tqdm(batches, total=remaining, leave=False, dynamic_ncols=True,
                    desc=f'{self.task.name} epoch {self.progress.epoch + 1}/{self.stage.epochs}',
                    disable=not (self.runtime.progress and self.context.is_main))

    def _train_step(self, batch: Any) -> None:
        batch = to_device(batch, self.context.device)
        self.task.train_mode(self.wrapped)
        with autocast(self.context.device, self.amp_dtype):
            loss, extras = self.task.loss(self.wrapped, batch)
        finite = self.context.all_agree(bool(torch.isfinite(loss.detach()).item()))
        self.optimizer.zero_grad(set_to_none=True)
        if finite:
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.optimizer)
            norm = grad_norm(self.optimizer, self.stage.grad_clip)
            # With fp16 the scaler skips inf gradients itself (and lowers its scale).
            finite = self.scaler.is_enabled() or math.isfinite(norm)
            if finite:
                self.scaler.step(self.optimizer)
            self.scaler.update()
        with warnings.catch_warnings():
            # The schedule follows the data position, also across skipped optimizer steps.
            warnings.filterwarnings('ignore', message='Detected call of `lr_scheduler.step')
            self.scheduler.step()
        self._guard(finite)
        if finite:
            window = self.progress.window
            for key, value in {'loss': float(loss.detach()), **extras}.items():
                window[key] = window.get(key, 0.0) + value
            window['count'] = window.get('count', 0.0) + 1

    def _guard(self, finite: bool) -> None:
        progress = self.progress
        if finite:
            progress.consecutive_nonfinite = 0
            return
        progress.skipped_steps += 1
        progress.consecutive_nonfinite += 1
        if progress.consecutive_nonfinite >= self.runtime.max_nonfinite:
            raise NonFiniteLossError(
                f'{self.task.name}: {progress.consecutive_nonfinite} consecutive non-finite '
                f'losses/gradients (step {progress.global_step}, epoch {progress.epoch}); '
                'lower the learning rate, enable gradient clipping or check the data')

    def _maybe_log(self, force: bool = False) -> None:
        progress = self.progress
        every = max(1, self.runtime.log_every_steps)
        if not (force or progress.global_step % every == 0):
            return
        keys = sorted(progress.window)
        sums = dict(zip(keys, self.context.sum_floats([progress.window[k] for k in keys])))
        count = sums.pop('count', 0.0)
        values = {key: value / count for key, value in sums.items()} if count else {}
        values.update(lr=self.optimizer.param_groups[0]['lr'],
                      skipped_steps=float(progress.skipped_steps))
        self.log('train', values)
        progress.window = {}

    def _end_epoch(self, out_of_time: bool = False) -> None:
        progress = self.progress
        if progress.window:
            self._maybe_log(force=True)
        epoch_done = progress.step_in_epoch >= self.steps_per_epoch
        reason = 'epochs' if progress.global_step >= self.total_steps else (
            'max_minutes' if out_of_time else '')
        if epoch_done:
            progress.epoch += 1
            progress.step_in_epoch = 0
        every = max(1, self.runtime.eval_every_epochs)
        if reason or progress.epoch % every == 0:
            self._validate_and_export(bool(reason))
            patience = self.stage.patience
            if (not reason and patience > 0 and progress.since_best >= patience
                    and progress.epoch >= self.stage.min_epochs):
                reason = 'patience'
        if reason:
            progress.finished, progress.stop_reason = True, reason
            if self.context.is_main:
                print(f'{self.task.name}: stopped after {progress.epoch} epoch(s) '
                      f'({_REASONS[reason]}); best {self.task.best_metric} '
                      f'{progress.best} at epoch {progress.best_epoch}, '
                      f'{progress.elapsed_s / 60:.1f} min', flush=True)
        self.save_state()

    def _validate_and_export(self, last: bool) -> None:
        progress, task = self.progress, self.task
        if self.context.is_main:
            broken = non_finite_tensors(self.model.state_dict())
            if broken:  # best and last keep the finite weights they hold
                raise NonFiniteLossError(
                    f'{task.name}: the model weights became non-finite ({len(broken)} tensors, '
                    f'e.g. {broken[0]}) by step {progress.global_step}; best.safetensors and '
                    'last.safetensors were not replaced')
            progress.last_val = task.validate(self.model)
            self.log('val', progress.last_val)
            value = progress.last_val[task.best_metric]
            progress.since_best += 1
            if is_better(value, progress.best, task.best_mode):
                progress.best, progress.best_epoch, progress.since_best = value, progress.epoch, 0
                task.export(self.model, self.run_dir / 'best.safetensors', self.summary(False))
            task.export(self.model, self.run_dir / 'last.safetensors', self.summary(False))
        # Every rank stops together: rank 0's count decides.
        progress.since_best = int(self.context.sum_floats(
            [float(progress.since_best if self.context.is_main else 0)])[0])
        self.context.barrier()

    def summary(self, stopped: bool) -> dict[str, Any]:
        """Plain-data description of where the run stands."""
        progress = self.progress
        return {'stage': self.task.name, 'epochs': progress.epoch, 'steps': progress.global_step,
                'skipped_steps': progress.skipped_steps, 'best_metric': self.task.best_metric,
                'best': progress.best, 'best_epoch': progress.best_epoch,
                'stop_reason': progress.stop_reason, 'minutes': round(progress.elapsed_s / 60, 3),
                'val': dict(progress.last_val), 'stopped': stopped}


_REASONS = {'patience': 'validation stopped improving', 'max_minutes': 'wall-clock budget spent',
            'epochs': 'epoch cap reached'}


def is_better(value: float, best: float | None, mode: str) -> bool:
    """Whether ``value`` improves on ``best`` (``mode`` 'min' or 'max'); NaN never does."""
    if math.isnan(value):
        return False
    if best is None:
        return True
    return value < best if mode == 'min' else value > best


def amp_dtype(mode: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype: bf16 where the GPU supports it, fp16 otherwise, None on CPU/off."""
    if mode not in ('auto', 'off', 'bf16', 'fp16'):
        raise ValueError(f'amp must be auto, off, bf16 or fp16, got {mode!r}')
    if mode == 'off' or device.type != 'cuda':
        return None
    if mode == 'fp16' or (mode == 'auto' and not torch.cuda.is_bf16_supported()):
        return torch.float16
    return torch.bfloat16


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """Mixed-precision context (a no-op when ``dtype`` is None)."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def grad_norm(optimizer: torch.optim.Optimizer, max_norm: float) -> float:
    """Global gradient norm of the optimizer's parameters, clipped to ``max_norm`` when > 0."""
    params = [p for group in optimizer.param_groups for p in group['params'] if p.grad is not None]
    if not params:
        return 0.0
    if max_norm > 0:
        return float(torch.nn.utils.clip_grad_norm_(params, max_norm))
    return float(torch.linalg.vector_norm(
        torch.stack([torch.linalg.vector_norm(p.grad.detach()) for p in params])))


def to_device(batch: Any, device: torch.device) -> Any:
    """Moves tensors nested in tuples, lists and dicts to ``device``.

    A batch augmented on the device (``training.device_augment.DeviceBatch``) goes there as
    uint8 and comes back augmented.
    """
    if hasattr(batch, 'on_device'):
        return batch.on_device(device)
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {key: to_device(value, device) for key, value in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(value, device) for value in batch)
    return batch
