"""Resume state without pickle: one ``.safetensors`` file, tensors plus a JSON tree.

Nested Python state (optimizer and scheduler ``state_dict()``s, RNG states, loop counters) is
split into its tensors, stored as safetensors entries named by their path, and a JSON tree in
the file's metadata in which every tensor is replaced by a reference. Tuples, dicts with
non-string keys (optimizer state is keyed by parameter index) and NumPy arrays (NumPy's RNG
state) are tagged so that loading gives back exactly the objects that were saved.

Every write goes to a temporary file in the target folder first and is renamed over the target,
so a run killed at any moment leaves either the previous or the new state, never half a file.
"""

from __future__ import annotations

import json
from pathlib import Path
import random
from typing import Any

import numpy as np
from safetensors import safe_open, SafetensorError
from safetensors.torch import save
import torch

from convitac_ros.fileio import atomic_write_bytes

STATE_FORMAT = 'convitac-train-state/1'


class TrainingStateError(ValueError):
    """A resume state that cannot be used (unreadable, corrupt, non-finite weights)."""


def split_tensors(tree: Any, tensors: dict[str, torch.Tensor], path: str = '') -> Any:
    """Returns a JSON-ready copy of ``tree``; its tensors and arrays are moved to ``tensors``.

    Args:
        tree: Nested dicts, lists, tuples, scalars, strings, tensors and NumPy arrays.
        tensors: Receives ``{path: tensor}`` (CPU, contiguous, not sharing storage).
        path: Name prefix of this subtree.

    Returns:
        The tree with tensors replaced by ``{'__tensor__': path}`` and arrays by
        ``{'__ndarray__': path, 'dtype': ...}``.
    """
    if isinstance(tree, torch.Tensor):
        tensors[path] = tree.detach().to('cpu', copy=True).contiguous()
        return {'__tensor__': path}
    if isinstance(tree, np.ndarray):
        tensors[path] = torch.from_numpy(tree.astype(np.int64 if tree.dtype.kind in 'iub' else
                                                     np.float64))
        return {'__ndarray__': path, 'dtype': str(tree.dtype)}
    if isinstance(tree, dict):
        if all(isinstance(key, str) for key in tree):
            return {key: split_tensors(value, tensors, f'{path}/{key}')
                    for key, value in tree.items()}
        return {'__items__': [[key, split_tensors(value, tensors, f'{path}/{key}')]
                              for key, value in tree.items()]}
    if isinstance(tree, tuple):
        return {'__tuple__': [split_tensors(item, tensors, f'{path}/{index}')
                              for index, item in enumerate(tree)]}
    if isinstance(tree, list):
        return [split_tensors(item, tensors, f'{path}/{index}') for index, item in enumerate(tree)]
    if isinstance(tree, np.generic):
        return tree.item()
    return tree


def join_tensors(tree: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Inverse of :func:`split_tensors`."""
    if isinstance(tree, list):
        return [join_tensors(item, tensors) for item in tree]
    if not isinstance(tree, dict):
        return tree
    if '__tensor__' in tree:
        return tensors[tree['__tensor__']]
    if '__ndarray__' in tree:
        return tensors[tree['__ndarray__']].numpy().astype(tree['dtype'])
    if '__items__' in tree:
        return {key: join_tensors(value, tensors) for key, value in tree['__items__']}
    if '__tuple__' in tree:
        return tuple(join_tensors(item, tensors) for item in tree['__tuple__'])
    return {key: join_tensors(value, tensors) for key, value in tree.items()}


def save_state(path: Path, state: dict[str, Any]) -> None:
    """Atomically writes a nested state (see :func:`split_tensors`) to one safetensors file."""
    tensors: dict[str, torch.Tensor] = {}
    tree = split_tensors(state, tensors)
    atomic_write_bytes(path, save(tensors, metadata={'format': STATE_FORMAT,
                                                     'state': json.dumps(tree)}))


def load_state(path: Path) -> dict[str, Any]:
    """Reads a file written by :func:`save_state`.

    Raises:
        TrainingStateError: When the file is missing, unreadable, corrupt or of another
            format; one line naming the file.
    """
    try:
        with safe_open(str(path), framework='pt', device='cpu') as stream:
            metadata = stream.metadata() or {}
            tensors = {key: stream.get_tensor(key) for key in stream.keys()}
    except (OSError, SafetensorError) as error:
        raise TrainingStateError(f'{path}: cannot read training state: {error}') from None
    if metadata.get('format') != STATE_FORMAT:
        raise TrainingStateError(f'{path}: not a training state (format '
                                 f'{str(metadata.get("format"))[:50]!r}, expected '
                                 f'{STATE_FORMAT!r})')
    try:
        return join_tensors(json.loads(metadata['state']), tensors)
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise TrainingStateError(f'{path}: corrupt training state '
                                 f'({type(error).__name__}: {str(error)[:100]})') from None


def non_finite_tensors(tensors: dict[str, torch.Tensor]) -> list[str]:
    """Names of the floating-point tensors that hold a NaN or an inf."""
    return [name for name, tensor in tensors.items()
            if tensor.is_floating_point() and not torch.isfinite(tensor).all()]


def capture_rng() -> dict[str, Any]:
    """Returns the RNG states of Python, NumPy, torch (CPU) and every CUDA device."""
    state = {
        'python': random.getstate(),
        'numpy': np.random.get_state(),
        'torch': torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    """Restores the states returned by :func:`capture_rng`."""
    version, internal, gauss = state['python']
    random.setstate((version, tuple(internal), gauss))
    np.random.set_state(state['numpy'])
    torch.set_rng_state(state['torch'])
    if 'cuda' in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(list(state['cuda']))


def seed_everything(seed: int) -> None:
    """Seeds Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
