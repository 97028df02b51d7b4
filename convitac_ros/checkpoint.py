"""Self-describing checkpoints: one `.safetensors` file, JSON metadata, no pickle.

`__metadata__` holds JSON strings: `format` (`convitac/1`), `kind` (`convitac` or
`contrastive_encoder`), `model_config` (`ModelConfig.to_dict()`), `heads` (head -> ordered class
names), `preprocess` (image size, mean, std, channel order, sequence lengths, tactile sensors),
`training` (free-form summary) and `created` (UTC time). Loading rebuilds the model from that
metadata alone and loads the tensors strictly; every failure names the file and the problem.

A checkpoint is data, never instructions: before any model is built, the metadata is checked
against sane ranges (mean and std, heads against the config's head sizes, known backbones and
constructor arguments only, see ``ModelConfig``) and the tensor shapes in the file header are
compared with those of the model the metadata describes, built on the ``meta`` device (no
memory). So a small file cannot make the loader allocate gigabytes, read other files or reach
the network, and a file that loads gives finite weights and well-formed heads.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
import os
from pathlib import Path
from typing import Any

import safetensors
from safetensors import safe_open
from safetensors.torch import load_file, save
import torch
from torch import nn

from convitac_ros import __version__
from convitac_ros.fileio import atomic_write_bytes
from convitac_ros.model import ContrastiveEncoder, ConViTac, ModelConfig
from convitac_ros.preprocess import IMAGENET_MEAN, IMAGENET_STD

FORMAT = 'convitac/1'
KINDS = ('convitac', 'contrastive_encoder')
PREPROCESS_KEYS = ('image_size', 'mean', 'std', 'channel_order', 'visual_len', 'tactile_len',
                   'num_tactile')
# ModelConfig fields that define E^c: a stage-1 encoder fits a stage-2 model only if they agree.
ENCODER_FIELDS = ('image_size', 'contrastive_arch', 'contrastive_kwargs', 'num_pooled_tokens',
                  'dim', 'projection_dim', 'projection_head')
_METADATA_KEYS = ('format', 'kind', 'model_config', 'heads', 'preprocess', 'training')
# Pixels are scaled to [0, 1] before normalisation: a mean outside it or a tiny std is an
# error in the file, not a choice (std 0 turned every output into NaN).
MEAN_RANGE = (0.0, 1.0)
STD_RANGE = (1e-3, 10.0)


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or does not fit; the message names the file."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """The checkpoint file does not exist."""


@dataclasses.dataclass
class LoadedCheckpoint:
    """A model rebuilt from a checkpoint, with the metadata it carried."""

    model: nn.Module
    config: ModelConfig
    kind: str
    heads: dict[str, list[str]]
    preprocess: dict[str, Any]
    training: dict[str, Any]
    path: Path
    created: str | None = None
    convitac_ros_version: str | None = None


def default_preprocess(config: ModelConfig, mean: tuple[float, ...] = IMAGENET_MEAN,
                       std: tuple[float, ...] = IMAGENET_STD) -> dict[str, Any]:
    """Build the preprocessing record for a config (ImageNet/DINO mean and std by default)."""
    return {'image_size': config.image_size, 'mean': list(mean), 'std': list(std),
            'channel_order': 'RGB', 'visual_len': config.visual_len,
            'tactile_len': config.tactile_len, 'num_tactile': config.num_tactile}


def save_checkpoint(path: str | os.PathLike, model: nn.Module, *, kind: str = 'convitac',
                    heads: dict[str, list[str]] | None = None,
                    preprocess: dict[str, Any] | None = None,
                    training: dict[str, Any] | None = None) -> Path:
    """Write a model and its metadata to one `.safetensors` file, atomically.

    The file is written to a temporary file in the same folder, flushed to disk and renamed
    over `path`, so a crash never leaves a half-written checkpoint at `path`.

    Args:
        path: destination file.
        model: a `ConViTac` (kind 'convitac') or a `ContrastiveEncoder` (kind
            'contrastive_encoder'); both carry their `config`.
        kind: 'convitac' or 'contrastive_encoder'.
        heads: head -> ordered class names, matching `model.config.heads` (default: the class
            indices as names; always empty for a contrastive encoder).
        preprocess: the preprocessing record (default: `default_preprocess(model.config)`).
        training: JSON-serialisable training summary (dataset, epochs, metrics, commit, ...).

    Returns:
        The path written.

    Raises:
        ValueError: kind, heads or preprocess do not fit the model.
    """
    path = Path(path)
    config = _model_config(model, kind)
    if kind == 'contrastive_encoder':
        heads = {}
    elif heads is None:
        heads = {name: [str(index) for index in range(size)] for name, size in config.heads}
    _check_heads(heads, config, kind, path)
    preprocess = default_preprocess(config) if preprocess is None else dict(preprocess)
    _check_preprocess(preprocess, config, path)
    metadata = {
        'format': FORMAT, 'kind': kind, 'model_config': config.to_dict(), 'heads': heads,
        'preprocess': preprocess, 'training': training or {},
        'created': datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'),
        'convitac_ros_version': __version__,
    }
    # Copies break any storage sharing (tied weights), which safetensors refuses.
    tensors = {key: value.detach().to('cpu', copy=True).contiguous()
               for key, value in model.state_dict().items()}
    header = {key: json.dumps(value) for key, value in metadata.items()}
    atomic_write_bytes(path, save(tensors, header))
    return path


def save_contrastive_encoder(path: str | os.PathLike, encoder: ContrastiveEncoder, *,
                             preprocess: dict[str, Any] | None = None,
                             training: dict[str, Any] | None = None) -> Path:
    """Save a stage-1 contrastive encoder (kind 'contrastive_encoder')."""
    return save_checkpoint(path, encoder, kind='contrastive_encoder', preprocess=preprocess,
                           training=training)


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """Read and decode a checkpoint's metadata without loading tensors.

    Raises:
        CheckpointNotFoundError: no such file.
        CheckpointError: not a safetensors file, truncated, unknown format or missing entries.
    """
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f'{path} is a directory, not a checkpoint file')
    if not path.is_file():
        raise CheckpointNotFoundError(f'checkpoint not found: {path}')
    try:
        with safe_open(str(path), framework='pt') as handle:
            raw = handle.metadata() or {}
    except (safetensors.SafetensorError, OSError) as error:
        raise CheckpointError(f'{path}: not a readable .safetensors file (corrupted or '
                              f'truncated?): {error}') from error
    if raw.get('format') is None:
        raise CheckpointError(f'{path}: no "format" metadata; not a convitac checkpoint')
    try:
        metadata = {key: json.loads(value) for key, value in raw.items()}
    except json.JSONDecodeError as error:
        raise CheckpointError(f'{path}: metadata is not valid JSON: {error}') from error
    if metadata['format'] != FORMAT:
        raise CheckpointError(f'{path}: unknown checkpoint format {metadata["format"]!r} '
                              f'(this version reads {FORMAT!r})')
    missing = [key for key in _METADATA_KEYS if key not in metadata]
    if missing:
        raise CheckpointError(f'{path}: metadata lacks {missing}')
    if metadata['kind'] not in KINDS:
        raise CheckpointError(f'{path}: unknown checkpoint kind {metadata["kind"]!r}; '
                              f'expected one of {KINDS}')
    return metadata


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = 'cpu',
                    kind: str | None = None) -> LoadedCheckpoint:
    """Rebuild a model from a checkpoint's metadata and load its tensors strictly.

    Args:
        path: the `.safetensors` file.
        map_location: device to put the model on.
        kind: if given, the kind the caller expects ('convitac' or 'contrastive_encoder').

    Returns:
        The model (in eval mode) and the checkpoint's metadata.

    Raises:
        CheckpointNotFoundError: no such file.
        CheckpointError: unreadable file, unknown format, kind mismatch, bad config, missing or
            unexpected tensors, shape mismatches (all found before the model is built), metadata
            that disagrees with the config or is out of range, non-finite weights.
    """
    path = Path(path)
    metadata = read_metadata(path)
    if kind is not None and metadata['kind'] != kind:
        raise CheckpointError(f'{path}: holds a {metadata["kind"]!r} checkpoint, expected '
                              f'{kind!r}')
    if not isinstance(metadata['model_config'], dict):
        raise CheckpointError(f'{path}: invalid model_config: not a mapping')
    try:
        config = ModelConfig.from_dict(metadata['model_config'])
    except (TypeError, ValueError) as error:
        raise CheckpointError(f'{path}: invalid model_config: {error}') from error
    try:
        _check_heads(metadata['heads'], config, metadata['kind'], path)
        _check_preprocess(metadata['preprocess'], config, path)
    except ValueError as error:
        raise CheckpointError(str(error)) from error
    build = ConViTac if metadata['kind'] == 'convitac' else ContrastiveEncoder
    _check_tensor_header(path, build, config)
    model = build(config)
    _load_tensors_into(model, path)
    return LoadedCheckpoint(model=model.to(map_location).eval(), config=config,
                            kind=metadata['kind'], heads=metadata['heads'],
                            preprocess=metadata['preprocess'], training=metadata['training'],
                            path=path, created=metadata.get('created'),
                            convitac_ros_version=metadata.get('convitac_ros_version'))


def load_contrastive_encoder(path: str | os.PathLike, target: ConViTac | ContrastiveEncoder
                             ) -> LoadedCheckpoint:
    """Load a stage-1 encoder checkpoint into a ConViTac's E^c (or a bare ContrastiveEncoder).

    Raises:
        CheckpointError: the file is not a contrastive encoder or its E^c fields differ from
            the target's config (naming the fields).
    """
    loaded = load_checkpoint(path, kind='contrastive_encoder')
    encoder = target.contrastive_encoder if isinstance(target, ConViTac) else target
    if encoder is None:
        raise CheckpointError(f'{path}: the target model has no contrastive encoder '
                              f'(fusion={target.config.fusion!r})')
    differing = [name for name in ENCODER_FIELDS
                 if getattr(loaded.config, name) != getattr(target.config, name)]
    if differing:
        raise CheckpointError(
            f'{path}: contrastive encoder does not fit the model; fields differ: '
            + ', '.join(f'{name} (file {getattr(loaded.config, name)!r}, model '
                        f'{getattr(target.config, name)!r})' for name in differing))
    encoder.load_state_dict(loaded.model.state_dict(), strict=True)
    return loaded


def _model_config(model: nn.Module, kind: str) -> ModelConfig:
    expected = {'convitac': ConViTac, 'contrastive_encoder': ContrastiveEncoder}
    if kind not in expected:
        raise ValueError(f'kind must be one of {KINDS}, got {kind!r}')
    if not isinstance(model, expected[kind]):
        raise ValueError(f'kind {kind!r} needs a {expected[kind].__name__}, got '
                         f'{type(model).__name__}')
    return model.config


def _check_heads(heads: dict[str, list[str]], config: ModelConfig, kind: str, path: Path
                 ) -> None:
    if kind == 'contrastive_encoder':
        return
    if not isinstance(heads, dict) or not all(
            isinstance(classes, list) and classes and all(
                isinstance(name, str) and name for name in classes)
            for classes in heads.values()):
        raise ValueError(f'{path}: heads must map each head to a list of class names')
    declared = [(name, len(classes)) for name, classes in heads.items()]
    if declared != list(config.heads):
        raise ValueError(f'{path}: heads {declared} (name, number of class names) do not match '
                         f'the model config heads {list(config.heads)}')


def _check_preprocess(preprocess: dict[str, Any], config: ModelConfig, path: Path) -> None:
    if not isinstance(preprocess, dict):
        raise ValueError(f'{path}: preprocess must be a mapping')
    missing = [key for key in PREPROCESS_KEYS if key not in preprocess]
    if missing:
        raise ValueError(f'{path}: preprocess lacks {missing}')
    for key in ('image_size', 'visual_len', 'tactile_len', 'num_tactile'):
        if preprocess[key] != getattr(config, key):
            raise ValueError(f'{path}: preprocess {key}={preprocess[key]!r} differs from the '
                             f'model config ({getattr(config, key)!r})')
    for key, (low, high) in (('mean', MEAN_RANGE), ('std', STD_RANGE)):
        values = preprocess[key]
        if not isinstance(values, (list, tuple)) or len(values) != 3 or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                and low <= v <= high for v in values):
            raise ValueError(f'{path}: preprocess {key} must be 3 (RGB) numbers within '
                             f'[{low}, {high}], got {str(values)[:100]}')
    if preprocess['channel_order'] != 'RGB':
        raise ValueError(f'{path}: channel_order must be "RGB"')


def _check_tensor_header(path: Path, build: type[nn.Module], config: ModelConfig) -> None:
    """Compare the tensor names and shapes in the file header with the model ``config`` makes.

    The model is built on the ``meta`` device (shapes only, no memory), so metadata that
    describes a huge model is refused before anything is allocated.
    """
    try:
        with safe_open(str(path), framework='pt') as handle:
            stored = {key: tuple(handle.get_slice(key).get_shape()) for key in handle.keys()}
    except (safetensors.SafetensorError, OSError) as error:
        raise CheckpointError(f'{path}: cannot read tensors (corrupted or truncated?): '
                              f'{error}') from error
    with torch.device('meta'):
        expected = {key: tuple(value.shape) for key, value in build(config).state_dict().items()}
    missing = sorted(set(expected) - set(stored))
    unexpected = sorted(set(stored) - set(expected))
    mismatched = [f'{key}: file {stored[key]} vs model {expected[key]}'
                  for key in sorted(set(expected) & set(stored)) if stored[key] != expected[key]]
    if missing or unexpected or mismatched:
        raise CheckpointError(
            f'{path}: tensors do not fit the model_config in its metadata: '
            f'missing {missing[:10]}{" ..." if len(missing) > 10 else ""}, unexpected '
            f'{unexpected[:10]}, shape mismatches {mismatched[:10]}'
            f'{" ..." if len(mismatched) > 10 else ""}')


def _load_tensors_into(model: nn.Module, path: Path) -> None:
    """Load the (header-checked) tensors strictly; refuse non-finite weights by name."""
    try:
        tensors = load_file(str(path))
    except (safetensors.SafetensorError, OSError) as error:
        raise CheckpointError(f'{path}: cannot read tensors (corrupted or truncated?): '
                              f'{error}') from error
    broken = [key for key, value in tensors.items()
              if value.is_floating_point() and not bool(torch.isfinite(value).all())]
    if broken:
        raise CheckpointError(f'{path}: non-finite (NaN or inf) values in tensors '
                              f'{broken[:10]}{" ..." if len(broken) > 10 else ""}')
    model.load_state_dict(tensors, strict=True)
