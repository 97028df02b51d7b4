"""Benchmark part `training`: samples/s of stage 1 and stage 2, and whether loading keeps up.

It drives the project's own :class:`training.engine.Trainer` (same loader, collation,
augmentation, optimiser, AMP and loss as ``training/train.py``) on a small synthetic
Touch-and-Go-layout dataset written to a temporary folder, and splits every step into the time
spent waiting for the DataLoader and the time spent computing (forward, backward, step). The
``training`` package is not installed with the node, so this part needs a source checkout.
"""

from __future__ import annotations

import argparse
from pathlib import Path
import tempfile
import time
from typing import Any

import torch

from benchmarks.report import device_sync, Report, Table

KEEPS_UP = 0.10  # loading keeps up when the step waits for data less than this share


def run_training(args: argparse.Namespace, device: torch.device) -> Report:
    """Part `training`: see the module docstring."""
    from convitac_ros.data.synthetic import make_synthetic
    from training.data import train_and_val
    from training.distributed import DistContext
    from training.runs import build_model_config, frame_cache_size
    from training.train_config import load_config

    workers = sorted({0, args.num_workers})
    # (frame cache, augmentation on the device): without; the product's choice; on a CPU also
    # the device augmentation the product uses on CUDA only.
    modes = [(False, False)]
    if args.frame_cache:
        modes.append((True, device.type == 'cuda'))
        if device.type != 'cuda':
            modes.append((True, True))
    preset = args.train_preset
    report = Report('training', settings={'steps': args.steps, 'batch_size': args.batch_size,
                                          'num_workers': workers, 'device': str(device),
                                          'preset': preset, 'modes': modes})
    table = Table(f'Training steps, {preset} config, batch {args.batch_size} ({device})',
                  ['stage', 'loader workers', 'frame cache', 'samples/s', 'step ms',
                   'waiting for data ms',
                   'compute ms', 'data wait share', 'loading keeps up'])
    with tempfile.TemporaryDirectory(prefix='convitac_bench_train_') as tmp:
        samples = int(args.batch_size * (args.steps + 3) * 1.2) + 20
        make_synthetic(Path(tmp) / 'data', 'touch_and_go', samples, 0)
        for num_workers, (cache, on_device) in ((w, m) for m in modes for w in workers):
            config = load_config('demo', [
                f'data.root={tmp}/data', f'data.num_workers={num_workers}',
                f'stage1.batch_size={args.batch_size}', f'stage2.batch_size={args.batch_size}',
                f'runtime.device={device.type}', 'runtime.progress=false',
                f'model.preset={preset}', f"data.frame_cache={f'{tmp}/cache' if cache else ''}"])
            start = time.perf_counter()
            train_set, _ = train_and_val(config.data, config.runtime.seed,
                                         frame_cache_size(config))
            if cache and 'cache_build_s' not in report.results:
                report.results['cache_build_s'] = time.perf_counter() - start
            model_config = build_model_config(config, train_set)
            context = DistContext(device=device)
            for stage in ('stage1', 'stage2'):
                trainer = _trainer(stage, config, model_config, train_set, context,
                                   Path(tmp) / f'{stage}_{num_workers}_{cache}_{on_device}',
                                   num_workers, on_device)
                result = _time_steps(trainer, args.steps, device)
                result.update(stage=stage, num_workers=num_workers, frame_cache=cache,
                              augment_on_device=on_device)
                report.results.setdefault('rows', []).append(result)
                share = result['wait_s'] / result['total_s']
                label = ('yes, augmented on the device' if on_device else 'yes') if cache else 'no'
                table.add(stage, num_workers, label, result['samples_per_s'],
                          1e3 * result['total_s'] / result['steps'],
                          1e3 * result['wait_s'] / result['steps'],
                          1e3 * result['compute_s'] / result['steps'], f'{share:.0%}',
                          share < KEEPS_UP)
    table.notes += [
        'stage 1: SimCLR on (camera, tactile) image pairs with augmentation, E^c trainable; '
        f'stage 2: full sequences, E^c frozen, fusion + heads trainable (demo config, model '
        f'preset {preset}).',
        f'waiting for data = time blocked in next(loader); loading keeps up when that is < '
        f'{KEEPS_UP:.0%} of the step. With 0 workers the main process decodes, augments and '
        'collates, so the wait is the whole loading cost.',
    ]
    if 'cache_build_s' in report.results:
        table.notes.append("frame cache: frames decoded once and kept at the model's size "
                           '(training/frame_cache.py); built in '
                           f"{report.results['cache_build_s']:.2f} s before the timed steps.")
    report.tables.append(table)
    return report


def _trainer(stage: str, config: Any, model_config: Any, train_set: Any, context: Any,
             run_dir: Path, num_workers: int, on_device: bool = False) -> Any:
    """A Trainer for one stage, built the way ``training/pretrain.py`` and ``train.py`` do."""
    from convitac_ros.checkpoint import default_preprocess
    from convitac_ros.data.transforms import FrameAugmentation
    from convitac_ros.model import ContrastiveEncoder, ConViTac
    from training.data import BatchCollator
    from training.engine import Trainer
    from training.pretrain import ContrastiveTask, SimCLRModel
    from training.train import SupervisedTask

    preprocess = default_preprocess(model_config)
    geometry = (model_config.image_size, preprocess['mean'], preprocess['std'])
    if stage == 'stage1':
        model = SimCLRModel(ContrastiveEncoder(model_config))
        task = ContrastiveTask(config, None, context)
        collate = BatchCollator(*geometry, FrameAugmentation.simclr(), pairs=True,
                                on_device=on_device)
        settings = config.stage1
    else:
        model = ConViTac(model_config)
        task = SupervisedTask(config, None, context, dict(train_set.heads), preprocess)
        collate = BatchCollator(*geometry, FrameAugmentation.light(), on_device=on_device)
        settings = config.stage2
    return Trainer(run_dir, model, task, train_set, collate, settings, config.runtime, context,
                   num_workers=num_workers)


def _time_steps(trainer: Any, steps: int, device: torch.device, warmup: int = 3
                ) -> dict[str, Any]:
    """Run ``warmup + steps`` training steps; split the timed ones into wait and compute."""
    sync = device_sync(device) or (lambda: None)
    epoch = 0
    trainer.sampler.set_epoch(epoch)
    batches = iter(trainer.loader)
    wait = compute = 0.0
    samples = 0
    for step in range(warmup + steps):
        start = time.perf_counter()
        try:
            batch = next(batches)
        except StopIteration:
            epoch += 1
            trainer.sampler.set_epoch(epoch)
            batches = iter(trainer.loader)
            batch = next(batches)
        loaded = time.perf_counter()
        trainer._train_step(batch)  # noqa: SLF001 - the exact step that fit() runs
        sync()
        done = time.perf_counter()
        if step >= warmup:
            wait += loaded - start
            compute += done - loaded
            samples += getattr(batch, 'samples', None) or len(batch[0])  # DeviceBatch: B
    total = wait + compute
    return {'steps': steps, 'samples': samples, 'wait_s': wait, 'compute_s': compute,
            'total_s': total, 'samples_per_s': samples / total}
