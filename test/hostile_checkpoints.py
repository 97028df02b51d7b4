"""Crafted checkpoints: the real demo checkpoint with one metadata field or one tensor changed.

Each case is (edit of the decoded metadata, edit of the tensors, text the refusal must contain).
"""

from __future__ import annotations

from collections.abc import Callable
import json
from pathlib import Path
from typing import Any

from safetensors import safe_open
from safetensors.torch import save_file
import torch

DEMO = Path(__file__).resolve().parents[1] / 'models' / 'convitac_demo.safetensors'

Edit = Callable[[dict[str, Any]], None]


def rewrite(target: Path, metadata: Edit | None = None, tensors: Edit | None = None,
            source: Path = DEMO) -> Path:
    """Copy ``source`` to ``target`` with its metadata and tensors edited in place."""
    with safe_open(str(source), framework='pt') as handle:
        meta = {key: json.loads(value) for key, value in handle.metadata().items()}
        data = {key: handle.get_tensor(key) for key in handle.keys()}
    if metadata is not None:
        metadata(meta)
    if tensors is not None:
        tensors(data)
    save_file(data, str(target), {key: json.dumps(value) for key, value in meta.items()})
    return target


def _config(**changes: Any) -> Edit:
    return lambda meta: meta['model_config'].update(changes)


def _append(field: str, item: list[Any]) -> Edit:
    return lambda meta: meta['model_config'][field].append(item)


def _preprocess(**changes: Any) -> Edit:
    return lambda meta: meta['preprocess'].update(changes)


def _both_sizes(meta: dict[str, Any]) -> None:
    meta['model_config']['image_size'] = meta['preprocess']['image_size'] = 100_000


def _nan_bias(data: dict[str, torch.Tensor]) -> None:
    data['heads.classifiers.material.bias'][0] = float('nan')


def overflow_weights(data: dict[str, torch.Tensor]) -> None:
    """Finite weights so large that every material logit overflows (NaN probabilities)."""
    data['heads.classifiers.material.weight'].fill_(3e38)


HOSTILE: dict[str, tuple[Edit | None, Edit | None, str]] = {
    'heads_disagree_with_head_sizes': (
        lambda meta: meta['heads'].update(material=meta['heads']['material'][:3]), None,
        'heads'),
    'heads_without_class_names': (
        lambda meta: meta['heads'].update(hardness=[1, 2]), None, 'heads must map'),
    'std_zero': (_preprocess(std=[0.0, 0.0, 0.0]), None, 'preprocess std'),
    'mean_huge': (_preprocess(mean=[1e6, 0.5, 0.5]), None, 'preprocess mean'),
    'dim_8192': (_config(dim=8192), None, 'tensors do not fit the model_config'),
    'image_size_100000': (_both_sizes, None, 'tensors do not fit the model_config'),
    'timm_checkpoint_path': (
        _append('contrastive_kwargs', ['checkpoint_path', '/etc/passwd']), None,
        "contrastive_kwargs: 'checkpoint_path'"),
    'timm_pretrained_cfg_overlay': (
        _append('visual_kwargs', ['pretrained_cfg_overlay', {'hf_hub_id': 'owner/model'}]),
        None, "visual_kwargs: 'pretrained_cfg_overlay'"),
    'string_argument': (
        _append('tactile_kwargs', ['depth', 'hf-hub:owner/model']), None,
        'tactile_kwargs: depth must be a number'),
    'hub_architecture': (
        _config(contrastive_arch='hf-hub:owner/model'), None, 'contrastive_arch'),
    'unknown_architecture': (_config(tactile_arch='resnet18d'), None, 'tactile_arch'),
    'unknown_config_key': (_config(evil=1), None, 'unknown ModelConfig keys'),
    'nan_weight': (None, _nan_bias, 'non-finite (NaN or inf) values in tensors '
                                    "['heads.classifiers.material.bias']"),
}
