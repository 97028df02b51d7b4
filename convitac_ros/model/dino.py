"""Initialise backbones from local weight files (never from a hub): DINO for E^c, any timm file.

Accepted layouts:
- the official DINO release (`dino_deitsmall16_pretrain.pth`: plain ViT keys);
- a DINO training checkpoint (`checkpoint.pth`: `{'student', 'teacher', 'optimizer', 'epoch',
  'args': argparse.Namespace, 'dino_loss', ...}`, keys with `module.` / `backbone.` prefixes;
  the teacher is used);
- timm files, `.safetensors` or `.pth` (`vit_small_patch16_224.dino`, `resnet18.a1_in1k`, ...),
  optionally wrapped in `state_dict` / `model`.

`.pth` files are read with `torch.load(weights_only=True)`: only tensors, containers and the
allow-listed `argparse.Namespace` are rebuilt, nothing else is unpickled. Loading is strict:
every backbone key must be in the file and every file key used (except the file's classifier or
DINO projection head). Every failure is one line that names the file and says what it holds.
"""

from __future__ import annotations

import argparse
from pathlib import Path
import pickle
from typing import Any, Union

from safetensors import SafetensorError
from safetensors.torch import load_file
from timm.layers import resample_abs_pos_embed
import torch
from torch import nn

from convitac_ros.model.contrastive import ContrastiveEncoder

_WRAPPERS = ('teacher', 'student', 'state_dict', 'model')
_PREFIXES = ('module.', 'backbone.')
_HEADS = ('head.', 'fc.', 'classifier.')  # classifiers and the DINO head: not backbone weights
SAFE_GLOBALS = (argparse.Namespace,)  # what a DINO training checkpoint pickles besides tensors
_SHOWN = 3  # key names quoted per kind of mismatch


def _read(path: Path) -> Any:
    try:
        if path.suffix == '.safetensors':
            return load_file(str(path))
        with torch.serialization.safe_globals(list(SAFE_GLOBALS)):
            return torch.load(path, map_location='cpu', weights_only=True)
    except (SafetensorError, pickle.UnpicklingError, RuntimeError, EOFError, OSError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(f'{path}: not a weight file that can be read safely ({reason})'
                         ) from error


def read_backbone_state_dict(path: Union[str, Path]) -> dict[str, torch.Tensor]:
    """Tensors of a local weight file with timm key names (wrappers and prefixes removed).

    Raises:
        FileNotFoundError: no such file.
        ValueError: unreadable, unsafe to unpickle, or holding no tensors (one line).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f'weight file not found: {path}')
    state = _read(path)
    for wrapper in _WRAPPERS:
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict) and state[wrapper]:
            state = state[wrapper]
            break
    if not isinstance(state, dict):
        raise ValueError(f'{path}: holds a {type(state).__name__}, not a dict of tensors')
    renamed = {}
    for key, value in state.items():
        for prefix in _PREFIXES:
            key = key[len(prefix):] if key.startswith(prefix) else key
        if not key.startswith(_HEADS) and isinstance(value, torch.Tensor):
            renamed[key] = value
    if not renamed:
        raise ValueError(f'{path}: no backbone tensors (top-level keys: '
                         f'{", ".join(map(str, list(state)[:8]))})')
    return renamed


def describe_state(state: dict[str, torch.Tensor]) -> str:
    """What a state dict looks like, in a few words (for error messages)."""
    blocks = {key.split('.')[1] for key in state if key.startswith('blocks.')}
    if 'patch_embed.proj.weight' in state:
        width, _, patch, _ = state['patch_embed.proj.weight'].shape
        return f'a ViT with {len(blocks)} blocks, width {width}, patch {patch}'
    if 'conv1.weight' in state:
        return f'a CNN with a {tuple(state["conv1.weight"].shape)} stem'
    return f'{len(state)} tensors such as {", ".join(sorted(state)[:_SHOWN])}'


def _few(names: list[str]) -> str:
    more = f' and {len(names) - _SHOWN} more' if len(names) > _SHOWN else ''
    return ', '.join(names[:_SHOWN]) + more


def load_backbone_weights(backbone: nn.Module, path: Union[str, Path], what: str) -> None:
    """Load a local weight file into a timm backbone, strictly.

    The absolute position embedding of a ViT is resampled when the configured image size
    differs from the one the weights were trained at.

    Args:
        backbone: The timm model (no classifier).
        path: The weight file.
        what: What the backbone is, for messages ('the contrastive encoder E^c').

    Raises:
        FileNotFoundError: no such file.
        ValueError: one line naming the file, what it holds and what does not fit.
    """
    state = read_backbone_state_dict(path)
    own = backbone.state_dict()
    if 'pos_embed' in state and 'pos_embed' in own and state['pos_embed'].shape != \
            own['pos_embed'].shape and state['pos_embed'].ndim == 3:
        prefix = getattr(backbone, 'num_prefix_tokens', 1)
        state['pos_embed'] = resample_abs_pos_embed(
            state['pos_embed'], list(backbone.patch_embed.grid_size), num_prefix_tokens=prefix)
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    mismatched = sorted(f'{key} {tuple(state[key].shape)} vs {tuple(own[key].shape)}'
                        for key in set(own) & set(state) if state[key].shape != own[key].shape)
    if missing or unexpected or mismatched:
        raise ValueError(
            f'{path} does not fit {what} ({describe_state(own)}): the file holds '
            f'{describe_state(state)}; {len(missing)} missing keys ({_few(missing)}), '
            f'{len(unexpected)} unexpected ({_few(unexpected)}), {len(mismatched)} shape '
            f'mismatches ({_few(mismatched)})')
    backbone.load_state_dict(state, strict=True)


def load_dino_weights(encoder: Union[ContrastiveEncoder, nn.Module], path: Union[str, Path]
                      ) -> None:
    """Load DINO ViT weights into E^c's backbone (or a bare timm ViT), strictly.

    Raises:
        FileNotFoundError: no such file.
        ValueError: one line naming the file, what it holds and what does not fit.
    """
    backbone = encoder.backbone if isinstance(encoder, ContrastiveEncoder) else encoder
    load_backbone_weights(backbone, path, 'the contrastive encoder E^c')
