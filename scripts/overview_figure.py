"""Draws the README's picture: the node's debug image for a few synthetic test touches.

Each panel is what ``convitac/debug_image`` shows for one touch (the camera frame and the tactile
frame with the CEC attention laid over them, and the answer per head), with the true labels
written under it. The touches come from a synthetic world the checkpoint never saw.

Usage::

    python scripts/overview_figure.py          # the demo checkpoint -> docs/overview.png
    python scripts/overview_figure.py --checkpoint runs/x/best.safetensors --output fig.png
"""

from __future__ import annotations

import argparse
from pathlib import Path
import sys
import tempfile

import cv2
import numpy as np

from convitac_ros.data import build_dataset
from convitac_ros.data.synthetic import make_synthetic
from convitac_ros.inference import Predictor
from convitac_ros.ros.debug_image import render_debug_image
from convitac_ros.ros.parameters import demo_checkpoint

ROOT = Path(__file__).resolve().parents[1]


def figure(checkpoint: Path, rows: int, seed: int) -> np.ndarray:
    """Returns the picture: ``rows`` debug images side by side, uint8 RGB."""
    predictor = Predictor.from_checkpoint(checkpoint, device='cpu')
    with tempfile.TemporaryDirectory() as folder:
        make_synthetic(folder, 'touch_and_go', 240, seed)
        dataset = build_dataset('touch_and_go', folder, 'test')
        picked = np.random.default_rng(seed).choice(len(dataset), rows, replace=False)
        pictures = []
        for index in picked:
            sample = dataset[int(index)]
            probabilities, attention = predictor.predict_with_attention(sample.visual,
                                                                        sample.tactile)
            maps = None
            if attention is not None:
                maps = [attention.visual[-1] if attention.visual else None,
                        *[sensor[-1] if sensor else None for sensor in attention.tactile]]
            frames = [sample.visual[-1], *[sensor[-1] for sensor in sample.tactile]]
            picture = render_debug_image(frames, predictor.heads, probabilities, maps)
            truth = ', '.join(f'{head} {dataset.heads[head][label]}'
                              for head, label in sample.labels.items()
                              if head in dataset.heads and label >= 0)
            band = np.zeros((26, picture.shape[1], 3), np.uint8)
            cv2.putText(band, f'true: {truth}', (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5,
                        (160, 220, 160), 1, cv2.LINE_AA)
            pictures.append(np.concatenate([picture, band], axis=0))
    height = max(p.shape[0] for p in pictures)
    pictures = [np.pad(p, ((0, height - p.shape[0]), (0, 6), (0, 0))) for p in pictures]
    return np.concatenate(pictures, axis=1)[:, :-6]


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--checkpoint', type=Path, default=None,
                        help='checkpoint (default: the demo checkpoint)')
    parser.add_argument('--output', type=Path, default=ROOT / 'docs' / 'overview.png')
    parser.add_argument('--rows', type=int, default=3, help='touches shown, side by side')
    parser.add_argument('--seed', type=int, default=2024, help='synthetic world seed')
    args = parser.parse_args(argv)
    picture = figure(args.checkpoint or demo_checkpoint(), args.rows, args.seed)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(args.output), cv2.cvtColor(picture, cv2.COLOR_RGB2BGR))
    print(f'wrote {args.output} ({picture.shape[1]}x{picture.shape[0]})')
    return 0


if __name__ == '__main__':
    sys.exit(main())
