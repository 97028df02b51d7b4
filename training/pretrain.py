"""Stage 1: SimCLR pretraining of the contrastive encoder E^c on visual-tactile image pairs.

The positives of the NT-Xent loss (paper eq. 2-3) are the camera image and the tactile image of
the same sample (its own, labelled frame: never an approach frame of its sequence); the other
2B - 2 images of the batch are the negatives. Under torchrun the embeddings of every rank are
gathered (gradients kept), so the negatives are those of the global batch. Each image is
augmented independently (``FrameAugmentation.simclr``). Validation is held-out visual-to-tactile
retrieval (``training/retrieval.py``: top-1 and top-5 beside chance and, on the synthetic world,
the ceiling), logged to ``metrics.jsonl`` and TensorBoard and written into the checkpoint's
metadata; the best top-1 selects ``best.safetensors``. The result is a ``contrastive_encoder``
checkpoint (``RUN_DIR/last.safetensors``) that stage 2 loads and freezes.

Usage::

    python training/pretrain.py --config demo --run-dir runs/demo_stage1
    python training/pretrain.py --resume runs/demo_stage1
"""

from __future__ import annotations

import argparse
from pathlib import Path
import sys
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from convitac_ros.checkpoint import default_preprocess, save_contrastive_encoder
from convitac_ros.data.transforms import FrameAugmentation
from convitac_ros.model import ContrastiveEncoder, load_dino_weights, ModelConfig, nt_xent_loss
from convitac_ros.model.contrastive import TACTILE, VISUAL
from training.checks import check_stage1
from training.command import run_command  # noqa: E402
from training.data import (
    augment_on_device,
    BatchCollator,
    sample_groups,
    stage1_frames,
    train_and_val,
)
from training.distributed import (
    DistContext,
    gather_with_grad,
    init_distributed,
    shutdown_distributed,
)
from training.engine import amp_dtype, autocast, RunStopped, Trainer
from training.retrieval import describe, hits_at, RetrievalProbe
from training.runs import (
    add_run_arguments,
    build_model_config,
    frame_cache_size,
    prepare_run,
    provenance,
    sequence_overrides,
)
from training.state import seed_everything
from training.train_config import TrainConfig

ENCODER_FILE = 'best.safetensors'  # the best held-out retrieval: what stage 2 freezes


class SimCLRModel(nn.Module):
    """E^c with its projection head as one module, so DDP sees the whole forward pass."""

    def __init__(self, encoder: ContrastiveEncoder) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, visual: torch.Tensor, tactile: torch.Tensor) -> torch.Tensor:
        """Args: visual, tactile `(B, 3, S, S)`. Returns: embeddings `(2B, D)` (visual first)."""
        modality = torch.cat([torch.full((len(visual),), VISUAL, device=visual.device),
                              torch.full((len(tactile),), TACTILE, device=tactile.device)])
        return self.encoder.projection_embed(torch.cat([visual, tactile]), modality)


def gathered_nt_xent(embeddings: torch.Tensor, temperature: float,
                     negatives: str = 'all') -> torch.Tensor:
    """NT-Xent over the global batch: every rank's visual rows, then every rank's tactile rows.

    Equal to :func:`nt_xent_loss` on the concatenated batch of all ranks (see
    :func:`training.distributed.gather_with_grad` for the gradients); in a world of one it is
    ``nt_xent_loss(embeddings)``.

    Args:
        embeddings: This rank's `(2B, D)`, visual rows first.
        temperature: tau.
        negatives: 'all' or 'cross' (see :func:`nt_xent_loss`).
    """
    visual, tactile = embeddings.chunk(2)
    return nt_xent_loss(torch.cat([gather_with_grad(visual), gather_with_grad(tactile)]),
                        temperature, negatives)


class ContrastiveTask:
    """The stage-1 task for :class:`training.engine.Trainer`."""

    name = 'stage1'
    best_metric = 'retrieval_top1'
    best_mode = 'max'

    def __init__(self, config: TrainConfig, probe: RetrievalProbe,
                 context: DistContext) -> None:
        self.config, self.probe, self.context = config, probe, context
        self.temperature = config.stage1.temperature
        self.amp = amp_dtype(config.runtime.amp, context.device)

    def train_mode(self, model: nn.Module) -> None:
        """E^c trains in stage 1."""
        model.train()

    def loss(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, dict[str, float]]:
        """NT-Xent of one (global) batch of pairs, plus this rank's in-batch retrieval.

        With two views of each sample (``stage1.views: 2``) the batch is ``((visual, tactile),
        (visual, tactile))``: one forward pass embeds all four, the cross-modal loss is the mean
        over the two views, and ``stage1.intra_weight`` adds the within-modality SimCLR loss
        (each camera image against its other view, each gel image against its other view).
        """
        negatives = self.config.stage1.negatives
        if self.config.stage1.views == 1:
            visual, tactile = batch
            embeddings = model(visual, tactile)  # (2B, D)
            return (gathered_nt_xent(embeddings, self.temperature, negatives),
                    {'retrieval': float(hits_at(*embeddings.detach().chunk(2), 1)
                                        .float().mean())})
        (visual_1, tactile_1), (visual_2, tactile_2) = batch
        embeddings = model(torch.cat([visual_1, visual_2]), torch.cat([tactile_1, tactile_2]))
        cam_1, cam_2, gel_1, gel_2 = embeddings.chunk(4)  # (B, D) each
        cross = (gathered_nt_xent(torch.cat([cam_1, gel_1]), self.temperature, negatives)
                 + gathered_nt_xent(torch.cat([cam_2, gel_2]), self.temperature, negatives)) / 2
        logs = {'retrieval': float(hits_at(cam_1.detach(), gel_1.detach(), 1).float().mean())}
        weight = self.config.stage1.intra_weight
        if weight == 0:
            return cross, logs
        intra = (gathered_nt_xent(torch.cat([cam_1, cam_2]), self.temperature)
                 + gathered_nt_xent(torch.cat([gel_1, gel_2]), self.temperature)) / 2
        logs['intra_loss'] = float(intra.detach())
        return cross + weight * intra, logs

    def validate(self, model: nn.Module) -> dict[str, float]:
        """Held-out retrieval (top-1, top-5, chance, ceiling) and NT-Xent, no augmentation."""
        model.eval()
        return self.probe(model, self.context.device, self.temperature,
                          lambda: autocast(self.context.device, self.amp))

    def export(self, model: nn.Module, path: Path, summary: dict[str, Any]) -> None:
        """Writes the encoder as a ``contrastive_encoder`` checkpoint."""
        save_contrastive_encoder(path, model.encoder,
                                 training=provenance(self.config, 'stage1', summary))


def eval_loader(dataset: Dataset, batch_size: int, collate: BatchCollator,
                num_workers: int) -> DataLoader:
    """A sequential loader for validation and evaluation (eval transform, no shuffling)."""
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate,
                      num_workers=num_workers)


def run_pretraining(config: TrainConfig, run_dir: Path, train_set: Dataset, val_set: Dataset,
                    model_config: ModelConfig, context: DistContext, resume: bool = False,
                    dino_weights: Path | None = None,
                    start_from: ContrastiveEncoder | None = None) -> Path:
    """Trains (or resumes) stage 1 in ``run_dir`` and returns the encoder checkpoint path.

    Training stops when held-out retrieval has not improved for ``stage1.patience`` epochs (or
    at the ``stage1.epochs`` cap or after ``stage1.max_minutes``); the encoder handed on is
    ``best.safetensors``, that of the best held-out top-1. With ``stage1.epochs: 0`` the encoder
    is written as initialised (DINO weights when given, or ``start_from``'s weights: stage 1
    continued from a checkpoint's E^c).

    Raises:
        DataError: For data stage 1 cannot use (too few pairs for a batch, one session).
    """
    seed_everything(config.runtime.seed)
    encoder = ContrastiveEncoder(model_config)
    if dino_weights is not None:
        load_dino_weights(encoder, dino_weights)
    if start_from is not None:
        encoder.load_state_dict(start_from.state_dict(), strict=True)
    model = SimCLRModel(encoder)
    if context.distributed and context.device.type == 'cuda':
        # The projection head's batch statistics over the global batch, as the loss sees it.
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    preprocess = default_preprocess(model_config)
    size, mean, std = model_config.image_size, preprocess['mean'], preprocess['std']
    augment = (FrameAugmentation.simclr(config.stage1.crop_min, config.stage1.jitter)
               if config.stage1.augment else None)
    probe = RetrievalProbe(val_set, config.stage1.retrieval_batch,
                           BatchCollator(size, mean, std, None, pairs=True),
                           config.runtime.seed, config.data.root, config.data.num_workers)
    task = ContrastiveTask(config, probe, context)
    path = Path(run_dir) / ENCODER_FILE
    if config.stage1.epochs == 0:
        if context.is_main:
            task.export(model, path, {'epochs': 0, 'steps': 0})
        return path
    labelled, labelled_set = len(train_set), train_set
    train_set = stage1_frames(config.data, train_set, val_set)
    check_stage1(config, len(train_set), labelled_set, val_set)
    groups = sample_groups(train_set) if config.stage1.batches == 'session' else None
    if context.is_main:
        grouping = ('' if groups is None else
                    f'; batches from {len(np.unique(groups))} sessions, few per batch')
        print(f'stage 1: {len(train_set)} (camera, tactile) pairs ({config.data.stage1_frames}; '
              f'the labelled training set has {labelled}), {len(val_set)} held out{grouping}',
              flush=True)
    trainer = Trainer(run_dir, model, task, train_set,
                      BatchCollator(size, mean, std, augment, pairs=True,
                                    on_device=augment_on_device(config.data, context.device),
                                    views=config.stage1.views),
                      config.stage1,
                      config.runtime, context, num_workers=config.data.num_workers,
                      groups=groups)
    summary = trainer.fit(resume=resume)
    if summary['stopped']:
        raise RunStopped(f'stage 1 stopped after {summary["steps"]} steps (stop_after_steps)')
    if context.is_main and summary['val']:
        print(f'stage 1: {describe(summary["val"], probe.batch_size)} (last epoch); best '
              f'top-1 {100 * summary["best"]:.1f}% at epoch {summary["best_epoch"]} of '
              f'{summary["epochs"]} ({summary["stop_reason"]}, {summary["minutes"]:.1f} min)')
        warn_if_not_aligned({**summary['val'], 'retrieval_top1': summary['best']})
    return path


def warn_if_not_aligned(val: dict[str, float], factor: float = 3.0) -> bool:
    """Warns (one line on stderr) when held-out top-1 retrieval stayed under factor x chance.

    A stage 1 that ends near chance gives stage 2 a condition that aligns nothing
    (docs/results/stage1_v0.3/README.md). Returns whether it warned. Another seed or a longer
    stage 1 is not what it advises: on ``tacto_c`` neither moved retrieval, three times the
    touches did.
    """
    top1, chance = val.get('retrieval_top1'), val.get('chance_top1')
    if top1 is None or not chance or top1 >= factor * chance:
        return False
    print(f'stage 1: WARNING: the encoder did not learn to align camera and touch (held-out '
          f'top-1 {top1:.1%}, under {factor:g}x chance {chance:.1%}); more unlabelled '
          'contact frames are what helped where it was measured (every recorded touch counts, '
          'labelled or not: docs/results/stage1_v0.5/README.md)',
          file=sys.stderr, flush=True)
    return True


def main(argv: list[str] | None = None) -> Path:
    """Command-line entry point; returns the encoder checkpoint path."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    add_run_arguments(parser)
    args = parser.parse_args(argv)
    config, run_dir, resume = prepare_run(args)
    context = init_distributed(config.runtime.device)
    try:
        train_set, val_set = train_and_val(config.data, config.runtime.seed,
                                           frame_cache_size(config),
                                           **sequence_overrides(config))
        model_config = build_model_config(config, train_set)
        path = run_pretraining(config, run_dir, train_set, val_set, model_config, context,
                               resume, args.dino_weights)
    finally:
        shutdown_distributed(context)
    if context.is_main:
        print(f'contrastive encoder: {path}')
    return path


if __name__ == '__main__':
    sys.exit(run_command('pretrain.py', main))
