"""Reference statistics of a model's training inputs, for the node's drift score.

At the end of stage 2, ``train.py`` summarises the newest frame of every input (camera, each
tactile sensor) of a sample of training sets, and calibrates the thresholds on the validation
sets (held out from training): see ``convitac_ros/drift.py``. The summary is written into
``best.safetensors`` and ``last.safetensors``. For a checkpoint trained before this existed::

    python training/drift_reference.py CHECKPOINT --config demo [DATASET.yaml] [--set ...]

adds it from the dataset of the config (its training split, validation as in training).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
import sys

import numpy as np
from torch.utils.data import Dataset

from convitac_ros.checkpoint import add_drift_reference, load_checkpoint
from convitac_ros.drift import (
    DriftReference,
    image_features,
    IMAGE_GROUPS,
    IMAGE_STD_FLOOR,
    input_names,
    InputReference,
    summarise,
)
from convitac_ros.inference import Predictor
from training.command import run_command
from training.train_config import load_config

MAX_SETS = 256  # sets summarised per side: enough for stable means, seconds on a CPU


def newest_frames(dataset: Dataset, limit: int, seed: int) -> list[list[np.ndarray]]:
    """The newest frame per input (camera first) of up to ``limit`` seeded random samples."""
    count = min(limit, len(dataset))
    order = np.random.default_rng(seed).permutation(len(dataset))[:count]
    result = []
    for index in sorted(order.tolist()):
        sample = dataset[index]
        result.append([sample.visual[-1], *(sensor[-1] for sensor in sample.tactile)])
    return result


def input_arrays(predictor: Predictor, sets: Sequence[Sequence[np.ndarray]]
                 ) -> dict[str, tuple[np.ndarray, np.ndarray | None]]:
    """Image features ``(N, F)`` and embeddings ``(N, D)`` (None without E^c) per input."""
    names = input_names(predictor.num_tactile)
    has_encoder = predictor.model.contrastive_encoder is not None
    result = {}
    for position, name in enumerate(names):
        frames = [s[position] for s in sets]
        features = np.stack([image_features(frame, predictor.image_size) for frame in frames])
        embeddings = None
        if has_encoder:
            embeddings = np.concatenate([
                predictor.contrasted_embeddings(frames[i:i + 64], int(position > 0))
                for i in range(0, len(frames), 64)])
        result[name] = (features, embeddings)
    return result


def write_drift_reference(paths: Sequence[Path], train_set: Dataset, held_out: Dataset,
                          seed: int = 0) -> dict[Path, DriftReference]:
    """Add a reference to every checkpoint in ``paths`` that exists (each with its own E^c).

    Returns:
        The reference written per checkpoint.
    """
    train = newest_frames(train_set, MAX_SETS, seed)
    held = newest_frames(held_out, MAX_SETS, seed + 1)
    written = {}
    for path in map(Path, paths):
        if not path.is_file():
            continue
        loaded = load_checkpoint(path, kind='convitac')
        predictor = Predictor(loaded.model, loaded.heads, loaded.preprocess, device='cpu')
        written[path] = reference_of(input_arrays(predictor, train), input_arrays(predictor, held))
        add_drift_reference(path, written[path])
    return written


def reference_of(train: dict[str, tuple[np.ndarray, np.ndarray | None]],
                 held: dict[str, tuple[np.ndarray, np.ndarray | None]]) -> DriftReference:
    """Statistics of the training arrays, thresholds from the held-out ones, per input."""
    inputs = {}
    for name, (features, embeddings) in train.items():
        held_features, held_embeddings = held[name]
        inputs[name] = InputReference(
            summarise(features, held_features, IMAGE_GROUPS, IMAGE_STD_FLOOR),
            None if embeddings is None else summarise(embeddings, held_embeddings))
    return DriftReference(inputs)


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point: add a drift reference to an existing checkpoint."""
    from training.data import train_and_val

    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('checkpoint', type=Path)
    parser.add_argument('--config', nargs='+', default=['demo'], metavar='NAME')
    parser.add_argument('--set', dest='overrides', action='append', default=[],
                        metavar='KEY=VALUE')
    args = parser.parse_args(argv)
    config = load_config(args.config, args.overrides)
    loaded = load_checkpoint(args.checkpoint, kind='convitac')  # errors name the file
    train_set, val_set = train_and_val(
        config.data, config.runtime.seed, visual_len=loaded.config.visual_len,
        tactile_len=loaded.config.tactile_len)
    reference = write_drift_reference([args.checkpoint], train_set, val_set,
                                      config.runtime.seed)[args.checkpoint]
    embeddings = all(ref.embedding is not None for ref in reference.inputs.values())
    print(f'{args.checkpoint}: drift reference added for {", ".join(reference.inputs)} '
          f'(image statistics{" and E^c embeddings" if embeddings else ""}; '
          f'{len(train_set)} training / {len(val_set)} held-out sets)')


if __name__ == '__main__':
    sys.exit(run_command('drift_reference.py', main))
