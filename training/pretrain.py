"""Stage 1: SimCLR pretraining of the contrastive encoder E^c on visual-tactile image pairs.

The positives of the NT-Xent loss (paper eq. 2-3) are the camera image and the tactile image of
the same sample; the other 2B - 2 images of the batch are the negatives. Each image is
augmented independently (``FrameAugmentation.simclr``). The result is a ``contrastive_encoder``
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

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from convitac_ros.checkpoint import default_preprocess, save_contrastive_encoder
from convitac_ros.data.transforms import FrameAugmentation
from convitac_ros.model import ContrastiveEncoder, load_dino_weights, ModelConfig, nt_xent_loss
from training.command import run_command  # noqa: E402
from training.config import TrainConfig
from training.data import BatchCollator, train_and_val
from training.distributed import DistContext, init_distributed, shutdown_distributed
from training.engine import amp_dtype, autocast, RunStopped, Trainer
from training.runs import (
    add_run_arguments,
    build_model_config,
    prepare_run,
    provenance,
    sequence_overrides,
)
from training.state import seed_everything

ENCODER_FILE = 'last.safetensors'


class SimCLRModel(nn.Module):
    """E^c with its projection head as one module, so DDP sees the whole forward pass."""

    def __init__(self, encoder: ContrastiveEncoder) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, visual: torch.Tensor, tactile: torch.Tensor) -> torch.Tensor:
        """Args: visual, tactile `(B, 3, S, S)`. Returns: embeddings `(2B, D)` (visual first)."""
        return self.encoder.projection_embed(torch.cat([visual, tactile]))


def retrieval_accuracy(embeddings: torch.Tensor) -> float:
    """Share of visual rows whose most similar tactile row (cosine) is their own pair."""
    visual, tactile = nn.functional.normalize(embeddings.float(), dim=1).chunk(2)
    hits = (visual @ tactile.T).argmax(dim=1) == torch.arange(len(visual), device=visual.device)
    return float(hits.float().mean())


class ContrastiveTask:
    """The stage-1 task for :class:`training.engine.Trainer`."""

    name = 'stage1'
    best_metric = 'loss'
    best_mode = 'min'

    def __init__(self, config: TrainConfig, val_loader: DataLoader,
                 context: DistContext) -> None:
        self.config, self.val_loader, self.context = config, val_loader, context
        self.temperature = config.stage1.temperature
        self.amp = amp_dtype(config.runtime.amp, context.device)

    def train_mode(self, model: nn.Module) -> None:
        """E^c trains in stage 1."""
        model.train()

    def loss(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, dict[str, float]]:
        """NT-Xent of one batch of pairs, plus the in-batch retrieval accuracy."""
        visual, tactile = batch
        embeddings = model(visual, tactile)  # (2B, D)
        return (nt_xent_loss(embeddings, self.temperature),
                {'retrieval': retrieval_accuracy(embeddings.detach())})

    @torch.no_grad()
    def validate(self, model: nn.Module) -> dict[str, float]:
        """Mean NT-Xent and retrieval accuracy over the validation pairs (no augmentation)."""
        model.eval()
        losses, hits, count = 0.0, 0.0, 0
        for visual, tactile in self.val_loader:
            if len(visual) < 2:
                continue  # a single pair has no negatives
            visual, tactile = visual.to(self.context.device), tactile.to(self.context.device)
            with autocast(self.context.device, self.amp):
                embeddings = model(visual, tactile)
            losses += float(nt_xent_loss(embeddings, self.temperature)) * len(visual)
            hits += retrieval_accuracy(embeddings) * len(visual)
            count += len(visual)
        return {'loss': losses / max(count, 1), 'retrieval': hits / max(count, 1)}

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
                    dino_weights: Path | None = None) -> Path:
    """Trains (or resumes) stage 1 in ``run_dir`` and returns the encoder checkpoint path.

    With ``stage1.epochs: 0`` the encoder is written as initialised (DINO weights when given).
    """
    seed_everything(config.runtime.seed)
    encoder = ContrastiveEncoder(model_config)
    if dino_weights is not None:
        load_dino_weights(encoder, dino_weights)
    model = SimCLRModel(encoder)
    preprocess = default_preprocess(model_config)
    size, mean, std = model_config.image_size, preprocess['mean'], preprocess['std']
    augment = FrameAugmentation.simclr() if config.stage1.augment else None
    task = ContrastiveTask(
        config, eval_loader(val_set, config.stage1.batch_size,
                            BatchCollator(size, mean, std, None, pairs=True),
                            config.data.num_workers), context)
    path = Path(run_dir) / ENCODER_FILE
    if config.stage1.epochs == 0:
        if context.is_main:
            task.export(model, path, {'epochs': 0, 'steps': 0})
        return path
    trainer = Trainer(run_dir, model, task, train_set,
                      BatchCollator(size, mean, std, augment, pairs=True), config.stage1,
                      config.runtime, context, num_workers=config.data.num_workers)
    summary = trainer.fit(resume=resume)
    if summary['stopped']:
        raise RunStopped(f'stage 1 stopped after {summary["steps"]} steps (stop_after_steps)')
    return path


def main(argv: list[str] | None = None) -> Path:
    """Command-line entry point; returns the encoder checkpoint path."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    add_run_arguments(parser)
    args = parser.parse_args(argv)
    config, run_dir, resume = prepare_run(args)
    context = init_distributed(config.runtime.device)
    try:
        train_set, val_set = train_and_val(config.data, config.runtime.seed,
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
