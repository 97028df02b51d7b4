"""Generate the synthetic visual-tactile world in the layout of a real dataset.

Example:
    python training/make_synthetic.py --output out/synthetic/touch_and_go --samples 800 --seed 0
"""

import argparse
import json
from pathlib import Path
import sys
import time

from tqdm import tqdm

from convitac_ros.data.synthetic import FORMATS, make_synthetic, work_units


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--output', required=True, type=Path, help='directory to write')
    parser.add_argument('--format', default='touch_and_go', choices=FORMATS,
                        help='layout: touch_and_go (materials) or feeling_of_success (grasps)')
    parser.add_argument('--samples', type=int, default=800,
                        help='labelled samples: frames (touch_and_go) or trials (grasps)')
    parser.add_argument('--seed', type=int, default=0, help='random seed (same seed, same files)')
    parser.add_argument('--fingers', type=int, default=1, choices=(1, 2),
                        help='touch_and_go: 2 also renders the opposite finger of a pinch '
                        '(gelsight_b_frame/; the grasp world always has two)')
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Generate the dataset with a progress bar and print what was written."""
    args = parse_args(argv)
    start = time.perf_counter()
    total = work_units(args.format, args.samples)
    with tqdm(total=total, desc=f'{args.format} seed {args.seed}', unit='scene') as bar:
        counts = make_synthetic(args.output, args.format, args.samples, args.seed, bar.update,
                                args.fingers)
    print(json.dumps({'output': str(args.output), 'format': args.format, 'seed': args.seed,
                      'fingers': 2 if args.format == 'feeling_of_success' else args.fingers,
                      **counts, 'seconds': round(time.perf_counter() - start, 1)}))
    return 0


if __name__ == '__main__':
    sys.exit(main())
