"""`python training/cache_frames.py --config CONFIG --set data.frame_cache=FOLDER`.

Builds (or confirms) the frame caches of a training config's splits (`training/frame_cache.py`)
before a run, so that the run's first epoch does not decode.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
import sys

import torch

from training.data import train_and_val
from training.runs import frame_cache_size
from training.train_config import ConfigError, load_config


def main(argv: Sequence[str] | None = None) -> int:
    """Build the frame caches of a config's training and validation splits."""
    parser = argparse.ArgumentParser(description='Build the frame caches of a training config.')
    parser.add_argument('--config', required=True, help='config name or YAML file')
    parser.add_argument('--set', action='append', default=[], metavar='KEY=VALUE',
                        help='config overrides, e.g. data.frame_cache=runs/frame_cache')
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config, args.set)
    except ConfigError as error:
        print(f'cache_frames: error: {error}', file=sys.stderr)
        return 2
    if not config.data.frame_cache:
        print('cache_frames: error: data.frame_cache is empty; set it to a folder',
              file=sys.stderr)
        return 2
    torch.set_num_threads(1)
    try:
        train, val = train_and_val(config.data, config.runtime.seed,
                                   image_size=frame_cache_size(config))
    except (ConfigError, ValueError, OSError) as error:  # DataError is a ValueError
        print(f'cache_frames: error: {error}', file=sys.stderr)
        return 1
    print(f'frame caches in {config.data.frame_cache}: {len(train)} training and {len(val)} '
          'validation samples')
    return 0


if __name__ == '__main__':
    sys.exit(main())
