"""Checks of the training data before anything trains: one clear line instead of a traceback.

Both stages are checked before stage 1 starts, so a dataset that stage 2 cannot use does not
cost a stage 1 first. A failed check raises :class:`DataError` (the scripts print it as one line
and :func:`training.runs.discard_new_run` removes the run folder they had just created).
"""

from __future__ import annotations

import sys

import numpy as np
from torch.utils.data import Dataset, Subset

from convitac_ros.data import MISSING_LABEL
from convitac_ros.data.files import DataError
from convitac_ros.model import ModelConfig
from training.data import HOLDOUT, targets
from training.train_config import ConfigError, StageConfig, TrainConfig


def session_count(dataset: Dataset) -> int | None:
    """Recording sessions (or objects) of a dataset's source, None when it cannot tell."""
    while isinstance(dataset, Subset):
        dataset = dataset.dataset
    if not hasattr(dataset, 'group_array'):
        return None
    return len(np.unique(dataset.group_array()))


def check_batch(stage: str, section: StageConfig, size: int) -> None:
    """Raises DataError when ``size`` training samples make no full batch of the stage."""
    if size < section.batch_size:
        raise DataError(f'{stage}: {size} training samples make no full batch of '
                        f'{section.batch_size}; lower {stage}.batch_size (or add data)')


def single_session(config: TrainConfig, train: Dataset) -> bool:
    """Whether the validation holdout had to take single frames of one recording session."""
    return config.data.val_split == HOLDOUT and session_count(train) == 1


def check_sessions(config: TrainConfig, train: Dataset) -> None:
    """Stage 1 is judged on held-out sessions: one session only is a DataError."""
    if single_session(config, train):
        raise DataError(f'stage 1: {config.data.root} holds one recording session, so no '
                        'held-out session can judge retrieval; record two or more sessions or '
                        'name a validation split (data.val_split)')


def check_stage1(config: TrainConfig, train_pairs: int, train: Dataset, val: Dataset) -> None:
    """Stage 1 needs full batches, >= 2 held-out pairs and, for a holdout, >= 2 sessions.

    Args:
        config: The run's config.
        train_pairs: How many (camera, tactile) pairs stage 1 trains on.
        train: Stage 2's training set (its source tells the number of sessions).
        val: The validation set (held-out retrieval).
    """
    check_sessions(config, train)
    check_batch('stage1', config.stage1, train_pairs)
    if len(val) < 2:
        raise DataError(f'stage 1: held-out retrieval needs at least 2 validation pairs, got '
                        f'{len(val)}; raise data.val_fraction or add sessions')


def check_stage2(config: TrainConfig, train: Dataset, val: Dataset) -> None:
    """Stage 2 needs full batches, labels for every head and a validation sample.

    A class without a training sample, and a validation set of single frames of the one
    training session, are reported on one line each (stderr) but are no error.
    """
    check_batch('stage2', config.stage2, len(train))
    if len(val) == 0:
        raise DataError('stage 2: the validation set is empty; raise data.val_fraction or name '
                        'a validation split')
    if single_session(config, train):
        print(f'stage 2: WARNING: {config.data.root} holds one session: validation holds out '
              'single frames of it (optimistic: near-duplicates of the training frames); name '
              'a validation split (data.val_split) where you can', file=sys.stderr, flush=True)
    heads: dict[str, list[str]] = dict(train.heads)
    unlabelled = []
    for head, classes in heads.items():
        labels = targets(train, head)
        known = labels[labels != MISSING_LABEL]
        if known.size == 0:
            unlabelled.append(head)
            continue
        missing = [name for index, name in enumerate(classes) if not np.any(known == index)]
        if missing:
            print(f'stage 2: WARNING: head {head!r} has no training sample of class(es) '
                  f'{missing[:10]}: the model cannot learn to predict them', file=sys.stderr,
                  flush=True)
    if len(unlabelled) == len(heads):
        raise DataError(f'stage 2: all {len(train)} training samples are unlabelled (no label '
                        f'for any of {sorted(heads)}); label some frames, or train stage 1 '
                        'alone (training/pretrain.py)')
    if unlabelled:
        print(f'stage 2: WARNING: head(s) {unlabelled} have no labelled training sample and '
              'will not learn', file=sys.stderr, flush=True)


def check_fusion_from_stage1(model: ModelConfig) -> None:
    """``model.fusion_from_stage1`` needs fusion encoders that E^c's weights fit (before stage 1).

    Raises:
        ConfigError: A fusion encoder of another backbone, other arguments or another grid.
    """
    for stream in ('visual', 'tactile'):
        arch, kwargs = getattr(model, f'{stream}_arch'), getattr(model, f'{stream}_kwargs')
        if (arch, kwargs) != (model.contrastive_arch, model.contrastive_kwargs) or (
                model.feature_grid ** 2 != model.num_pooled_tokens):
            raise ConfigError(
                f'model.fusion_from_stage1: the {stream} fusion encoder ({arch} '
                f"{dict(kwargs)}, grid {model.feature_grid}) must be E^c's "
                f'({model.contrastive_arch} {dict(model.contrastive_kwargs)}, '
                f'{model.num_pooled_tokens} tokens) to start from it; see '
                'training/configs/stage1_init.yaml')
