"""Stage 2: train the fusion encoders, CEC blocks and task heads with E^c frozen.

Without ``--contrastive-checkpoint`` the run first pretrains E^c (stage 1, into
``RUN_DIR/stage1/``) and then trains stage 2 in ``RUN_DIR``. Missing labels (-1) are masked out
of the cross-entropy; the loss is the sum over heads of each head's mean over its labelled
samples. ``RUN_DIR/best.safetensors`` (best mean validation accuracy) and
``RUN_DIR/last.safetensors`` are ``convitac`` checkpoints the node and ``evaluate.py`` load.
``--init-from CHECKPOINT`` fine-tunes: stage 2 starts from that checkpoint (see
``training/finetune.py``) and the new checkpoints record it in their provenance; with
``--stage1`` stage 1 first continues the checkpoint's E^c on every contact frame of the
dataset's recordings, labelled or not (with no labelled frame at all, stage 1 only).
With ``stage2.calibrate`` (the default) every checkpoint also carries one temperature per head
fitted on the validation split (``convitac_ros/calibration.py``).

Usage::

    python training/train.py --config demo --run-dir runs/demo
    python training/train.py --resume runs/demo
    python training/train.py --config finetune DATASET/dataset.yaml \
        --init-from models/convitac_demo.safetensors [--stage1] [--freeze fusion]
    torchrun --nproc_per_node 2 training/train.py --config touch_and_go --data-root DATA
"""

from __future__ import annotations

import argparse
from dataclasses import replace
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
from convitac_ros.data.files import DataError
from convitac_ros.data.transforms import FrameAugmentation
from convitac_ros.evaluation.metrics import calibration_scores
from convitac_ros.model import ConViTac, ModelConfig
from convitac_ros.model.dino import load_backbone_weights
from training.checks import check_fusion_from_stage1, check_sessions, check_stage2
from training.command import run_command
from training.data import augment_on_device, BatchCollator, train_and_val, unlabelled_frames
from training.distributed import (
    DistContext,
    init_distributed,
    launched_as_main,
    shutdown_distributed,
)
from training.drift_reference import write_drift_reference
from training.engine import amp_dtype, autocast, RunStopped, Trainer
from training.finetune import (
    finetune_model_config,
    FREEZE_PARTS,
    freeze_parts,
    initialise_from,
    loaded_lr_scale,
    read_init_checkpoint,
    remember_init,
    remembered_init,
    sequence_lengths,
    set_frozen_eval,
    start_wins,
)
from training.predictions import head_accuracies, predict_logits
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
from training.train_config import ConfigError, TrainConfig

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
                 init_from: dict[str, Any] | None = None, frozen: tuple[str, ...] = ()) -> None:
        self.config, self.val_loader, self.context = config, val_loader, context
        self.heads, self.preprocess, self.init_from = heads, preprocess, init_from
        self.frozen = frozen
        self.amp = amp_dtype(config.runtime.amp, context.device)
        self.calibration: dict[str, Any] | None = None  # fitted by validate, written by export

    def train_mode(self, model: nn.Module) -> None:
        """Training mode; ``ConViTac.train`` keeps the frozen E^c (and frozen parts) in eval."""
        model.train()
        set_frozen_eval(getattr(model, 'module', model), self.frozen)

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


def init_fusion_from_encoder(model: ConViTac, encoder_path: Path) -> list[str]:
    """Initialise every fusion encoder's tokenizer from a stage-1 E^c (the same-size control).

    The equal-compute control of the ablation: a model without the condition whose trainable
    fusion encoders start from what stage 1 learned. Needs fusion encoders of E^c's size
    (same backbone and arguments, ``feature_grid ** 2 == num_pooled_tokens``).

    Returns:
        The streams initialised ('visual', 'tactile').

    Raises:
        CheckpointError: When the encoder does not fit a fusion encoder of the model.
    """
    from convitac_ros.checkpoint import CheckpointError, load_checkpoint

    loaded = load_checkpoint(encoder_path, kind='contrastive_encoder')
    state = loaded.model.tokenizer.state_dict()
    done = []
    for side in ('visual', 'tactile'):
        encoder = getattr(model, f'{side}_encoder')
        if encoder is None:
            continue
        try:
            encoder.tokenizer.load_state_dict(state, strict=True)
        except RuntimeError as error:
            raise CheckpointError(f'{encoder_path}: E^c does not fit the {side} fusion encoder '
                                  f"(give it E^c's backbone and grid): "
                                  f'{str(error).splitlines()[0]}') from error
        done.append(side)
    return done


def run_supervised(config: TrainConfig, run_dir: Path, train_set: Dataset, val_set: Dataset,
                   model_config: ModelConfig, context: DistContext, encoder_path: Path | None,
                   resume: bool = False, init: LoadedCheckpoint | None = None,
                   visual_weights: Path | None = None,
                   tactile_weights: Path | None = None,
                   fusion_from_encoder: Path | None = None) -> dict[str, Any]:
    """Trains (or resumes) stage 2 in ``run_dir``; returns the trainer's summary.

    With ``init`` (fine-tuning) the model starts from that checkpoint's weights and keeps its
    preprocessing (E^c from ``encoder_path`` when given: a continued stage 1), loaded weights
    learn at ``finetune.loaded_lr_scale`` times the rate, ``finetune.freeze`` parts stay fixed,
    and the starting checkpoint is validated too: when it validates at least as well as the
    best fine-tuned epoch (``finetune.keep_start``), ``best.safetensors`` is the starting model.
    Otherwise the fusion encoders start from ``visual_weights`` / ``tactile_weights`` when given
    (their learning rate is ``stage2.backbone_lr`` when set), or both from the stage-1 encoder
    ``fusion_from_encoder`` (:func:`init_fusion_from_encoder`). At the end both checkpoints get
    the reference statistics of their inputs (``training/drift_reference.py``).

    Raises:
        RunStopped: When ``runtime.stop_after_steps`` ended the stage early.
    """
    check_stage2(config, train_set, val_set)
    seed_everything(config.runtime.seed + 1)
    model = ConViTac(model_config)
    init_record, frozen, lr_scale = None, (), None
    if init is not None:
        init_record = initialise_from(model, init, dict(train_set.heads))
        if encoder_path is not None:
            load_contrastive_encoder(encoder_path, model)
        frozen = freeze_parts(model, config.finetune.freeze)
        lr_scale = loaded_lr_scale(init_record, config.finetune.loaded_lr_scale)
        init_record.update(stage1=encoder_path is not None, freeze=config.finetune.freeze,
                           loaded_lr_scale=config.finetune.loaded_lr_scale)
        preprocess = dict(init.preprocess)
    else:
        if encoder_path is not None:
            load_contrastive_encoder(encoder_path, model)
        load_fusion_weights(model, visual_weights, tactile_weights)
        if fusion_from_encoder is not None:
            init_fusion_from_encoder(model, fusion_from_encoder)
        preprocess = default_preprocess(model_config)
    size, mean, std = model_config.image_size, preprocess['mean'], preprocess['std']
    augment = FrameAugmentation.light() if config.stage2.augment else None
    val_loader = eval_loader(val_set, config.stage2.batch_size,
                             BatchCollator(size, mean, std, None), config.data.num_workers)
    task = SupervisedTask(config, val_loader, context, dict(train_set.heads), preprocess,
                          init_record, frozen)
    start = None
    if init is not None and config.finetune.keep_start and context.is_main:
        start = ConViTac(model_config)
        initialise_from(start, init, dict(train_set.heads))
        start_val = task.validate(start.to(context.device))
    collate = BatchCollator(size, mean, std, augment,
                            on_device=augment_on_device(config.data, context.device))
    trainer = Trainer(run_dir, model, task, train_set, collate,
                      config.stage2, config.runtime, context,
                      num_workers=config.data.num_workers, lr_scale=lr_scale)
    summary = trainer.fit(resume=resume)
    if summary['stopped']:
        raise RunStopped(f'stage 2 stopped after {summary["steps"]} steps (stop_after_steps)')
    if start is not None:
        summary = keep_better_start(task, start, start_val, summary, Path(run_dir))
    if context.is_main:
        write_drift_reference([Path(run_dir) / 'best.safetensors',
                               Path(run_dir) / 'last.safetensors'], train_set, val_set,
                              config.runtime.seed)
    return summary


def keep_better_start(task: SupervisedTask, start: ConViTac, start_val: dict[str, float],
                      summary: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    """Compare the fine-tuned best with the starting checkpoint on validation; say which won.

    When the start wins, it becomes ``best.safetensors`` (its provenance says
    ``init_from.start_wins``; ``last.safetensors`` stays the last fine-tuned epoch).

    Returns:
        The summary with ``start`` (the starting model's validation) and ``start_wins``.
    """
    metric = task.best_metric
    wins = start_wins(start_val[metric], summary['best'])
    summary = {**summary, 'start': start_val, 'start_wins': wins}
    best = 'n/a' if summary['best'] is None else f'{summary["best"]:.4f}'
    if wins:
        task.init_from = {**(task.init_from or {}), 'start_wins': True}
        task.export(start, run_dir / 'best.safetensors', {**summary, 'val': start_val})
        print(f'fine-tune: the starting checkpoint wins on validation ({metric} '
              f'{start_val[metric]:.4f} >= {best}, the best fine-tuned epoch): '
              f'{run_dir / "best.safetensors"} is the starting model', flush=True)
    else:
        print(f'fine-tune: validation {metric} {start_val[metric]:.4f} (starting checkpoint) -> '
              f'{best} (best fine-tuned epoch): the fine-tuned model wins', flush=True)
    return summary


def continued_stage1(config: TrainConfig, run_dir: Path, train_set: Dataset | None,
                     val_set: Dataset | None, init: LoadedCheckpoint, context: DistContext,
                     resume: bool) -> Path:
    """Stage 1 continued from ``init``'s E^c on every contact frame of the dataset.

    Without labelled samples (``train_set`` None) the frames come from
    :func:`training.data.unlabelled_frames` (whole sessions held out for retrieval).

    Raises:
        ConfigError: The checkpoint has no E^c.
    """
    encoder = init.model.contrastive_encoder
    if encoder is None:
        raise ConfigError(f'--stage1: {init.path} has no contrastive encoder '
                          f'(fusion={init.config.fusion!r})')
    if train_set is None:
        train_set, val_set = unlabelled_frames(config.data, config.runtime.seed)
        config = replace(config, data=replace(config.data, stage1_frames='labelled'))
    return run_pretraining(config, Path(run_dir) / STAGE1_DIR, train_set, val_set, init.config,
                           context, resume, start_from=encoder)


def run_finetuning(config: TrainConfig, run_dir: Path, init_from: Path, context: DistContext,
                   resume: bool = False, stage1: bool = False) -> dict[str, Any]:
    """``--init-from``: optionally a continued stage 1, then stage 2 from the checkpoint.

    Returns:
        The stage-2 summary; with ``stage1`` and no labelled sample, the stage-1 encoder's path
        under ``encoder`` (stage 2 is skipped with one line saying why).
    """
    init = read_init_checkpoint(init_from)
    try:
        train_set, val_set = train_and_val(config.data, config.runtime.seed,
                                           frame_cache_size(config, init.preprocess),
                                           **sequence_lengths(init))
        unlabelled = None
    except (DataError, FileNotFoundError) as error:
        if not stage1:
            raise
        train_set = val_set = None
        unlabelled = error
    encoder_path = None
    if stage1:
        encoder_path = continued_stage1(config, run_dir, train_set, val_set, init, context,
                                        resume)
    if train_set is None:
        if context.is_main:
            print(f'stage 2: skipped, no labelled samples ({unlabelled}); the stage-1 encoder '
                  f'is {encoder_path}', flush=True)
        return {'stage': 'stage1', 'encoder': str(encoder_path)}
    return run_supervised(config, run_dir, train_set, val_set,
                          finetune_model_config(init, train_set), context, encoder_path, resume,
                          init)


def run_training(config: TrainConfig, run_dir: Path, resume: bool = False,
                 contrastive_checkpoint: Path | None = None,
                 dino_weights: Path | None = None, init_from: Path | None = None,
                 visual_weights: Path | None = None,
                 tactile_weights: Path | None = None, stage1: bool = False) -> dict[str, Any]:
    """Both stages (stage 1 only when needed) for an already prepared run folder.

    Args:
        config: The run's config.
        run_dir: The prepared run folder.
        resume: Continue the run in ``run_dir``.
        contrastive_checkpoint: A stage-1 encoder to use instead of running stage 1.
        dino_weights: A local DINO weight file that initialises stage 1.
        init_from: Fine-tune from this ``convitac`` checkpoint: its architecture and sequence
            lengths, its weights (``training/finetune.py``), no stage 1 unless ``stage1``.
        visual_weights: A local timm file that initialises the visual fusion encoder.
        tactile_weights: The same for the tactile fusion encoder.
        stage1: With ``init_from``: continue its E^c with stage 1 on the dataset's frames.

    Returns:
        The stage-2 summary (best and last validation metrics, steps, skipped steps).
    """
    context = init_distributed(config.runtime.device)
    try:
        if init_from is not None:
            if config.model.fusion_from_stage1:
                raise ConfigError("model.fusion_from_stage1 starts a new model's fusion "
                                  'encoders from stage 1; --init-from starts from a checkpoint: '
                                  'give one of them')
            return run_finetuning(config, run_dir, init_from, context, resume, stage1)
        train_set, val_set = train_and_val(config.data, config.runtime.seed,
                                           frame_cache_size(config),
                                           **sequence_overrides(config))
        model_config = build_model_config(config, train_set)
        from_stage1 = config.model.fusion_from_stage1
        if from_stage1:
            check_fusion_from_stage1(model_config)
        encoder_path = contrastive_checkpoint
        if (model_config.uses_condition or from_stage1) and encoder_path is None:
            check_sessions(config, train_set)  # before stage 1 spends its time
            check_stage2(config, train_set, val_set)
            encoder_path = run_pretraining(config, Path(run_dir) / STAGE1_DIR, train_set,
                                           val_set, model_config, context, resume, dino_weights)
        # A stage-1 encoder run only to initialise the fusion is not the model's condition.
        condition = None if from_stage1 and not model_config.uses_condition else encoder_path
        return run_supervised(config, run_dir, train_set, val_set, model_config, context,
                              condition, resume, visual_weights=visual_weights,
                              tactile_weights=tactile_weights,
                              fusion_from_encoder=encoder_path if from_stage1 else None)
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
                        'heads; no stage 1 unless --stage1)')
    parser.add_argument('--stage1', action='store_true',
                        help='with --init-from: first continue its contrastive encoder (stage 1) '
                        "on every contact frame of the dataset's recordings, labelled or not")
    parser.add_argument('--freeze', choices=sorted(FREEZE_PARTS),
                        help='with --init-from: keep these loaded parts fixed (sets '
                        'finetune.freeze; fusion: train only the heads)')
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
    if (args.stage1 or args.freeze) and not (args.init_from or args.resume):
        parser.error('--stage1 and --freeze go with --init-from (without it stage 1 always '
                     'runs, on every contact frame)')
    if args.freeze:
        args.overrides = [*(args.overrides or []), f'finetune.freeze={args.freeze}']
    config, run_dir, resume = prepare_run(args)
    fresh = not resume and launched_as_main()
    before = {entry.name for entry in run_dir.iterdir()} - {CONFIG_FILE} if fresh else set()
    try:
        init_from, stage1 = remembered_init(run_dir) if resume else (args.init_from, args.stage1)
        if init_from is not None and fresh:
            remember_init(run_dir, init_from, stage1)
        summary = run_training(config, run_dir, resume, args.contrastive_checkpoint,
                               args.dino_weights, init_from, args.visual_weights,
                               args.tactile_weights, stage1)
    except BaseException:
        if fresh:
            discard_unstarted(run_dir, before)
        raise
    if launched_as_main() and 'best_metric' in summary:
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
