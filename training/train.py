"""Stage 2: train the fusion encoders, CEC blocks and task heads with E^c frozen.

Without ``--contrastive-checkpoint`` the run first pretrains E^c (stage 1, into
``RUN_DIR/stage1/``) and then trains stage 2 in ``RUN_DIR``. Missing labels (-1) are masked out
of the cross-entropy; the loss is the sum over heads of each head's mean over its labelled
samples. ``RUN_DIR/best.safetensors`` (best mean validation accuracy) and
``RUN_DIR/last.safetensors`` are ``convitac`` checkpoints the node and ``evaluate.py`` load.
``--init-from CHECKPOINT`` fine-tunes: stage 2 starts from that checkpoint (see
``training/finetune.py``) and the new checkpoints record it in their provenance.
With ``stage2.calibrate`` (the default) every checkpoint also carries one temperature per head
fitted on the validation split (``convitac_ros/calibration.py``).

Usage::

    python training/train.py --config demo --run-dir runs/demo
    python training/train.py --resume runs/demo
    python training/train.py --config demo DATASET/dataset.yaml \
        --init-from models/convitac_demo.safetensors
    torchrun --nproc_per_node 2 training/train.py --config touch_and_go --data-root DATA
"""

from __future__ import annotations

import argparse
from pathlib import Path
import shutil
import sys
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, Dataset

from convitac_ros.calibration import fit_temperatures, softmax
from convitac_ros.calibration import KEY as CALIBRATION_KEY
from convitac_ros.checkpoint import (
    default_preprocess,
    load_contrastive_encoder,
    LoadedCheckpoint,
    save_checkpoint,
)
from convitac_ros.data import MISSING_LABEL
from convitac_ros.data.transforms import FrameAugmentation
from convitac_ros.evaluation.metrics import calibration_scores
from convitac_ros.model import ConViTac, ModelConfig
from convitac_ros.model.dino import load_backbone_weights
from training.command import run_command
from training.config import TrainConfig
from training.data import augment_on_device, BatchCollator, train_and_val
from training.distributed import (
    DistContext,
    init_distributed,
    launched_as_main,
    shutdown_distributed,
)
from training.engine import amp_dtype, autocast, RunStopped, Trainer
from training.finetune import (
    finetune_model_config,
    initialise_from,
    read_init_checkpoint,
    remember_init,
    remembered_init,
    sequence_lengths,
)
from training.metrics import head_accuracies, predict_logits
from training.pretrain import eval_loader, run_pretraining
from training.runs import (
    add_run_arguments,
    build_model_config,
    CONFIG_FILE,
    frame_cache_size,
    prepare_run,
    provenance,
    sequence_overrides,
)
from training.state import seed_everything

STAGE1_DIR = 'stage1'


def masked_cross_entropy(logits: dict[str, torch.Tensor], labels: dict[str, torch.Tensor],
                         label_smoothing: float = 0.0) -> tuple[torch.Tensor, dict[str, float]]:
    """Sum over heads of the mean cross-entropy over the samples labelled for that head.

    A head without any label in the batch contributes zero (with a graph, so that DDP still
    sees its parameters used).

    Args:
        logits: ``{head: (B, C)}``.
        labels: ``{head: (B,)}`` with MISSING_LABEL where unknown.
        label_smoothing: Passed to ``F.cross_entropy``.

    Returns:
        The scalar loss and the batch accuracy per head (``acc/<head>``, labelled samples).
    """
    total = torch.zeros((), device=next(iter(logits.values())).device)
    accuracies = {}
    for head, head_logits in logits.items():
        target = labels[head].to(head_logits.device)
        labelled = target != MISSING_LABEL
        count = labelled.sum()
        summed = F.cross_entropy(head_logits.float(), target, ignore_index=MISSING_LABEL,
                                 reduction='sum', label_smoothing=label_smoothing)
        total = total + summed / count.clamp_min(1)
        if bool(count > 0):
            hits = (head_logits.argmax(dim=1) == target) & labelled
            accuracies[f'acc/{head}'] = float(hits.sum() / count)
    return total, accuracies


class SupervisedTask:
    """The stage-2 task for :class:`training.engine.Trainer`."""

    name = 'stage2'
    best_metric = 'accuracy_mean'
    best_mode = 'max'

    def __init__(self, config: TrainConfig, val_loader: DataLoader, context: DistContext,
                 heads: dict[str, list[str]], preprocess: dict[str, Any],
                 init_from: dict[str, Any] | None = None) -> None:
        self.config, self.val_loader, self.context = config, val_loader, context
        self.heads, self.preprocess, self.init_from = heads, preprocess, init_from
        self.amp = amp_dtype(config.runtime.amp, context.device)
        self.calibration: dict[str, Any] | None = None  # fitted by validate, written by export

    def train_mode(self, model: nn.Module) -> None:
        """Training mode; ``ConViTac.train`` keeps the frozen E^c in eval mode."""
        model.train()

    def loss(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, dict[str, float]]:
        """Masked cross-entropy of one batch."""
        visual, tactile, labels = batch
        return masked_cross_entropy(model(visual, tactile), labels,
                                    self.config.stage2.label_smoothing)

    def validate(self, model: nn.Module) -> dict[str, float]:
        """Accuracy per head and their mean on the validation split (eval transform).

        With ``stage2.calibrate`` it also fits one temperature per head on these logits (the
        checkpoint written next carries them) and reports each head's ECE before and after
        (``ece/<head>``, ``ece_calibrated/<head>``).
        """
        logits = predict_logits(model, self.val_loader, self.context.device,
                                lambda: autocast(self.context.device, self.amp))
        metrics = head_accuracies({head: (values.argmax(axis=1), target)
                                   for head, (values, target) in logits.items()})
        self.calibration = fit_temperatures(logits) if self.config.stage2.calibrate else None
        for head, (values, target) in logits.items():
            labelled = target >= 0
            temperature = (self.calibration['temperatures'][head] if self.calibration else 1.0)
            for key, t in (('ece', 1.0), ('ece_calibrated', temperature)):
                ece = calibration_scores(softmax(values[labelled], t), target[labelled])['ece']
                metrics[f'{key}/{head}'] = float('nan') if ece is None else ece
        return metrics

    def export(self, model: nn.Module, path: Path, summary: dict[str, Any]) -> None:
        """Writes a ``convitac`` checkpoint with class names, preprocessing and temperatures."""
        training = provenance(self.config, 'stage2', summary, self.init_from)
        if self.calibration is not None:
            training[CALIBRATION_KEY] = self.calibration
        save_checkpoint(path, model, kind='convitac', heads=self.heads,
                        preprocess=self.preprocess, training=training)


def load_fusion_weights(model: ConViTac, visual: Path | None, tactile: Path | None) -> None:
    """Initialise the visual and/or tactile fusion encoder's backbone from local files.

    Raises:
        ValueError: For a file that does not fit (one line naming it), or weights for a stream
            the model does not have.
    """
    for name, path in (('visual', visual), ('tactile', tactile)):
        if path is None:
            continue
        encoder = getattr(model, f'{name}_encoder')
        if encoder is None:
            raise ValueError(f'--{name}-weights {path}: this model has no {name} stream '
                             f'(modalities={model.config.modalities})')
        load_backbone_weights(encoder.tokenizer.backbone, path, f'the {name} fusion encoder')


def run_supervised(config: TrainConfig, run_dir: Path, train_set: Dataset, val_set: Dataset,
                   model_config: ModelConfig, context: DistContext, encoder_path: Path | None,
                   resume: bool = False, init: LoadedCheckpoint | None = None,
                   visual_weights: Path | None = None,
                   tactile_weights: Path | None = None) -> dict[str, Any]:
    """Trains (or resumes) stage 2 in ``run_dir``; returns the trainer's summary.

    With ``init`` (fine-tuning) the model starts from that checkpoint's weights and keeps its
    preprocessing; ``encoder_path`` is then unused. Otherwise the fusion encoders start from
    ``visual_weights`` / ``tactile_weights`` when given (their learning rate is
    ``stage2.backbone_lr`` when set).

    Raises:
        RunStopped: When ``runtime.stop_after_steps`` ended the stage early.
    """
    seed_everything(config.runtime.seed + 1)
    model = ConViTac(model_config)
    init_record = None
    if init is not None:
        init_record = initialise_from(model, init, dict(train_set.heads))
        preprocess = dict(init.preprocess)
    else:
        if encoder_path is not None:
            load_contrastive_encoder(encoder_path, model)
        load_fusion_weights(model, visual_weights, tactile_weights)
        preprocess = default_preprocess(model_config)
    size, mean, std = model_config.image_size, preprocess['mean'], preprocess['std']
    augment = FrameAugmentation.light() if config.stage2.augment else None
    val_loader = eval_loader(val_set, config.stage2.batch_size,
                             BatchCollator(size, mean, std, None), config.data.num_workers)
    task = SupervisedTask(config, val_loader, context, dict(train_set.heads), preprocess,
                          init_record)
    collate = BatchCollator(size, mean, std, augment,
                            on_device=augment_on_device(config.data, context.device))
    trainer = Trainer(run_dir, model, task, train_set, collate,
                      config.stage2, config.runtime, context,
                      num_workers=config.data.num_workers)
    summary = trainer.fit(resume=resume)
    if summary['stopped']:
        raise RunStopped(f'stage 2 stopped after {summary["steps"]} steps (stop_after_steps)')
    return summary


def run_training(config: TrainConfig, run_dir: Path, resume: bool = False,
                 contrastive_checkpoint: Path | None = None,
                 dino_weights: Path | None = None, init_from: Path | None = None,
                 visual_weights: Path | None = None,
                 tactile_weights: Path | None = None) -> dict[str, Any]:
    """Both stages (stage 1 only when needed) for an already prepared run folder.

    Args:
        config: The run's config.
        run_dir: The prepared run folder.
        resume: Continue the run in ``run_dir``.
        contrastive_checkpoint: A stage-1 encoder to use instead of running stage 1.
        dino_weights: A local DINO weight file that initialises stage 1.
        init_from: Fine-tune from this ``convitac`` checkpoint: its architecture and sequence
            lengths, its weights (``training/finetune.py``), no stage 1.
        visual_weights: A local timm file that initialises the visual fusion encoder.
        tactile_weights: The same for the tactile fusion encoder.

    Returns:
        The stage-2 summary (best and last validation metrics, steps, skipped steps).
    """
    context = init_distributed(config.runtime.device)
    try:
        if init_from is not None:
            init = read_init_checkpoint(init_from)
            train_set, val_set = train_and_val(config.data, config.runtime.seed,
                                               frame_cache_size(config, init.preprocess),
                                               **sequence_lengths(init))
            return run_supervised(config, run_dir, train_set, val_set,
                                  finetune_model_config(init, train_set), context, None,
                                  resume, init)
        train_set, val_set = train_and_val(config.data, config.runtime.seed,
                                           frame_cache_size(config),
                                           **sequence_overrides(config))
        model_config = build_model_config(config, train_set)
        encoder_path = contrastive_checkpoint
        if model_config.uses_condition and encoder_path is None:
            encoder_path = run_pretraining(config, Path(run_dir) / STAGE1_DIR, train_set,
                                           val_set, model_config, context, resume, dino_weights)
        return run_supervised(config, run_dir, train_set, val_set, model_config, context,
                              encoder_path, resume, visual_weights=visual_weights,
                              tactile_weights=tactile_weights)
    finally:
        shutdown_distributed(context)


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``train.py``."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    add_run_arguments(parser)
    parser.add_argument('--contrastive-checkpoint', type=Path,
                        help='stage-1 encoder checkpoint; skips stage 1')
    parser.add_argument('--init-from', type=Path, metavar='CHECKPOINT',
                        help='fine-tune: start stage 2 from this convitac checkpoint (E^c, '
                        'fusion and the heads whose classes match; new class lists get new '
                        'heads; no stage 1)')
    parser.add_argument('--visual-weights', type=Path,
                        help='initialise the visual fusion encoder from a local timm file')
    parser.add_argument('--tactile-weights', type=Path,
                        help='initialise the tactile fusion encoder from a local timm file')
    return parser


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Command-line entry point; returns the stage-2 summary."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.contrastive_checkpoint and args.dino_weights:
        parser.error('--dino-weights initialises stage 1, which --contrastive-checkpoint skips')
    if args.init_from and (args.contrastive_checkpoint or args.dino_weights or args.resume):
        parser.error('--init-from takes E^c from the checkpoint: it goes with neither '
                     '--contrastive-checkpoint, --dino-weights nor --resume')
    if args.init_from and not args.init_from.is_file():
        parser.error(f'--init-from: no checkpoint at {args.init_from}')
    config, run_dir, resume = prepare_run(args)
    fresh = not resume and launched_as_main()
    before = {entry.name for entry in run_dir.iterdir()} - {CONFIG_FILE} if fresh else set()
    try:
        init_from = remembered_init(run_dir) if resume else args.init_from
        if init_from is not None and fresh:
            remember_init(run_dir, init_from)
        summary = run_training(config, run_dir, resume, args.contrastive_checkpoint,
                               args.dino_weights, init_from, args.visual_weights,
                               args.tactile_weights)
    except BaseException:
        if fresh:
            discard_unstarted(run_dir, before)
        raise
    if launched_as_main():
        print(f'run: {run_dir}  best {summary["best_metric"]} = {summary["best"]}  '
              f'last val: {summary["val"]}')
    return summary


def discard_unstarted(run_dir: Path, before: set[str]) -> None:
    """Remove what a new run wrote into ``run_dir`` when it failed before saving any weights.

    A failed ``--init-from`` (or any failure before the first state or checkpoint) must not
    leave a ``config.yaml`` that blocks the retry; entries that were there before the run are
    never touched, and a run that saved weights stays for ``--resume``.
    """
    if any(run_dir.rglob('*.safetensors')):
        return
    for entry in run_dir.iterdir():
        if entry.name in before:
            continue
        if entry.is_dir():
            shutil.rmtree(entry)
        else:
            entry.unlink()


# Errors in what the user gave (config, data on disk): one line and exit code 2. Anything else
# is a bug and keeps its traceback.
def cli(argv: list[str] | None = None) -> int:
    """Run :func:`main` as a command; return the exit code (2 for a user error)."""
    return run_command('train.py', main, argv)


if __name__ == '__main__':
    sys.exit(cli())
