"""Initialise E^c's ViT from a local DINO weight file (never from a hub).

Accepts the official DINO release (`dino_deitsmall16_pretrain.pth`: plain ViT keys), a full
DINO training checkpoint (`{'teacher': ..., 'student': ...}` with `module.backbone.` prefixes)
and timm's `vit_small_patch16_224.dino` safetensors file. Loading is strict: any backbone key
missing from the file or any unused file key (other than DINO's projection head) is an error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Union

from safetensors.torch import load_file
from timm.layers import resample_abs_pos_embed
import torch
from torch import nn

from convitac_ros.model.contrastive import ContrastiveEncoder

_WRAPPERS = ('teacher', 'student', 'state_dict', 'model')
_PREFIXES = ('module.', 'backbone.')
_IGNORED = ('head.',)  # the DINO projection head: not part of the backbone


def read_dino_state_dict(path: Union[str, Path]) -> dict[str, torch.Tensor]:
    """Tensors of a DINO weight file with timm ViT key names (no pickle code is run)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f'DINO weight file not found: {path}')
    if path.suffix == '.safetensors':
        state = load_file(str(path))
    else:
        state = torch.load(path, map_location='cpu', weights_only=True)
    for wrapper in _WRAPPERS:
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
            break
    renamed = {}
    for key, value in state.items():
        for prefix in _PREFIXES:
            key = key[len(prefix):] if key.startswith(prefix) else key
        if not key.startswith(_IGNORED) and isinstance(value, torch.Tensor):
            renamed[key] = value
    return renamed


def load_dino_weights(encoder: Union[ContrastiveEncoder, nn.Module], path: Union[str, Path]
                      ) -> None:
    """Load DINO ViT weights into E^c's backbone (or a bare timm ViT), strictly.

    The absolute position embedding is resampled when the configured image size differs
    from the one the weights were trained at.

    Raises:
        FileNotFoundError: no such file.
        ValueError: missing, unexpected or mis-shaped keys, listed by name.
    """
    backbone = encoder.backbone if isinstance(encoder, ContrastiveEncoder) else encoder
    state = read_dino_state_dict(path)
    own = backbone.state_dict()
    if 'pos_embed' in state and 'pos_embed' in own and state['pos_embed'].shape != \
            own['pos_embed'].shape:
        prefix = getattr(backbone, 'num_prefix_tokens', 1)
        state['pos_embed'] = resample_abs_pos_embed(
            state['pos_embed'], list(backbone.patch_embed.grid_size), num_prefix_tokens=prefix)
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    mismatched = sorted(f'{key}: file {tuple(state[key].shape)} vs model {tuple(own[key].shape)}'
                        for key in set(own) & set(state) if state[key].shape != own[key].shape)
    if missing or unexpected or mismatched:
        raise ValueError(f'{path} does not fit the contrastive encoder '
                         f'({type(backbone).__name__}): missing keys {missing}, unexpected '
                         f'keys {unexpected}, shape mismatches {mismatched}')
    backbone.load_state_dict(state, strict=True)
