"""The one-command demo: synthetic bag -> `convitac_node` -> live predictions -> accuracy.

1. generate a small synthetic visual-tactile world (a seed the demo model never saw),
2. write its test split as a rosbag2 bag (`convitac_make_bag`'s writer),
3. start `convitac_node` with the demo checkpoint in a subprocess (evaluation settings:
   reliable inputs, every synchronized set processed),
4. replay the bag into it at the recorded pace, print each answer as it arrives, then the
   accuracy, latency and drop table (`convitac_evaluate`'s online mode), and stop the node.

With ``--grasp`` the robot is a two-finger gripper (a GelSight on each finger) and one checkpoint
(``models/convitac_demo_both.safetensors``) answers every head: the bag holds material touches
pinched by both fingers and grasps (both synthetic worlds, seeds the model never saw, read as one
`mixed` dataset), each with its own ground truth; the node publishes ``convitac/material/label``
and ``convitac/grasp_success/probability`` for every set, and the table scores material on the
touches and grasp success (accuracy, ROC AUC, ECE) on the grasps.

DDS stays on loopback (`ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST`) in a private domain.
Run it with `scripts/demo.sh` (sets the environment up first) or `python -m
convitac_ros.demo`.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
import os
from pathlib import Path
import shutil
import sys
import time

from tqdm import tqdm

from convitac_ros.ros.dds_profile import use_fastdds_profile
from convitac_ros.ros.node_process import loopback_dds, NodeProcess

NODE_NAME = 'convitac_demo_node'
# Evaluation settings: reliable inputs, every synchronized set processed.
NODE_PARAMETERS = {'qos_reliability': 'reliable', 'qos_depth': 100, 'process_every_pair': True}
BOTH_CHECKPOINT = 'convitac_demo_both.safetensors'
# The two worlds of `--grasp`, as training/configs/demo_both.yaml reads them.
BOTH_PARTS = ({'dataset': 'touch_and_go', 'root': 'material',
               'options': {'task': 'material', 'num_tactile': 2}},
              {'dataset': 'feeling_of_success', 'root': 'grasp'})


def make_demo_bag(work: Path, samples: int, seed: int, fps: float, grasps: int = 0) -> Path:
    """Generate the synthetic world(s) and write the test split as an mcap bag.

    With ``grasps`` > 0: the two-finger material world (``samples`` frames) and the grasp world
    (``grasps`` trials), whose test splits are written one after the other.
    """
    from convitac_ros.bags.make_bag import BagLayout, write_bag
    from convitac_ros.data import build_dataset
    from convitac_ros.data.synthetic import make_synthetic, work_units

    worlds = [('', 'touch_and_go', samples, 1)]
    if grasps:
        worlds = [('material', 'touch_and_go', samples, 2),
                  ('grasp', 'feeling_of_success', grasps, 2)]
    for folder, fmt, count, fingers in worlds:
        with tqdm(total=work_units(fmt, count), desc=f'synthetic {folder or "material"} world',
                  unit='scene') as bar:
            make_synthetic(work / 'data' / folder, fmt, count, seed, bar.update, fingers)
    dataset = (build_dataset('mixed', work / 'data', 'test', parts=BOTH_PARTS) if grasps
               else build_dataset('touch_and_go', work / 'data', 'test'))
    bag = work / 'demo_bag'
    write_bag((dataset[i] for i in range(len(dataset))), dataset.heads, bag,
              BagLayout(fps=fps), total=len(dataset))
    return bag


def build_parser() -> argparse.ArgumentParser:
    """Command-line options of the demo."""
    parser = argparse.ArgumentParser(prog='convitac_demo', description=__doc__.split('\n\n')[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument('--checkpoint', type=Path, default=None,
                        help='checkpoint for the node (default: the shipped demo checkpoint; '
                        f'with --grasp models/{BOTH_CHECKPOINT})')
    parser.add_argument('--grasp', action='store_true',
                        help='two-finger demo: material touches and grasps, one checkpoint '
                        'publishing convitac/material/label and '
                        'convitac/grasp_success/probability')
    parser.add_argument('--grasps', type=int, default=300,
                        help='with --grasp: synthetic grasp trials to generate (about 1 in 5 '
                        'is on a test object and replayed)')
    parser.add_argument('--device', default='auto', help='node inference device')
    parser.add_argument('--samples', type=int, default=600,
                        help='synthetic samples to generate (about 1 in 7 lands in the test '
                        'split that is replayed)')
    parser.add_argument('--seed', type=int, default=2024, help='synthetic world seed')
    parser.add_argument('--fps', type=float, default=10.0, help='frame rate of the bag')
    parser.add_argument('--rate', type=float, default=1.0, help='replay speed factor')
    parser.add_argument('--lock-step', action='store_true',
                        help='publish one set at a time and wait for each answer')
    parser.add_argument('--timeout', type=float, default=120.0,
                        help='seconds to wait for the node to come up and answer')
    parser.add_argument('--work-dir', type=Path, default=Path('runs/demo'),
                        help='folder for the data, the bag, the node log and the report '
                        '(their previous contents are replaced)')
    parser.add_argument('--domain-id', type=int, default=None,
                        help='ROS domain (default: a private one derived from the pid)')
    return parser


def run(args: argparse.Namespace, work: Path) -> int:
    """The demo proper, inside a work folder; returns the exit code."""
    from convitac_ros.bags.samples import index_bag
    from convitac_ros.evaluation.metrics import format_table, save_report
    from convitac_ros.evaluation.online import evaluate_online
    from convitac_ros.ros.parameters import demo_checkpoint
    from convitac_ros.share import share_file

    default = share_file('models', BOTH_CHECKPOINT) if args.grasp else demo_checkpoint()
    checkpoint = (args.checkpoint or default).resolve()
    if not checkpoint.is_file():
        print(f'demo: checkpoint {checkpoint} not found (models/README.md says how to build '
              'it)', file=sys.stderr)
        return 1
    started = time.monotonic()
    worlds = 'material and grasp worlds' if args.grasp else 'world'
    print(f'[1/3] synthetic {worlds} (seed {args.seed}) -> rosbag2', flush=True)
    bag = make_demo_bag(work, args.samples, args.seed, args.fps,
                        args.grasps if args.grasp else 0)
    index = index_bag(bag)
    print(f'      {len(index.points)} samples, {len(index.set_stamps)} frame sets at '
          f'{args.fps:g} fps in {bag}', flush=True)
    print(f'[2/3] starting convitac_node ({checkpoint.name}, device {args.device}, '
          f'ROS_DOMAIN_ID={os.environ["ROS_DOMAIN_ID"]}, loopback only)', flush=True)
    node = NodeProcess({'checkpoint': str(checkpoint), 'device': args.device, **NODE_PARAMETERS},
                       work / 'node.log', name=NODE_NAME)
    try:
        print('[3/3] replaying; the node answers (label per head, "ok" when right):', flush=True)
        recorder = evaluate_online(index, node=f'/{NODE_NAME}', rate=args.rate,
                                   lock_step=args.lock_step, timeout=args.timeout,
                                   live=True, progress=False)
    except Exception:
        if not node.alive():
            print(f'demo: the node exited ({node.returncode}); its log:\n'
                  + node.log()[-3000:], file=sys.stderr)
        raise
    finally:
        code = node.stop()
    recorder.extra['checkpoint'] = str(checkpoint)
    report = recorder.report()
    print('\n' + format_table(report))
    paths = save_report(report, work / 'report')
    print(f'node stopped (exit code {code}); report in {paths[0].parent}; '
          f'demo took {time.monotonic() - started:.0f} s')
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: `python -m convitac_ros.demo`."""
    args = build_parser().parse_args(argv)
    loopback_dds(args.domain_id, private=True)
    use_fastdds_profile()  # the demo publishes images: the robot-wide profile, here too
    from convitac_ros.bags.bagfile import BagError

    work = args.work_dir.resolve()
    for previous in ('data', 'demo_bag', 'report', 'node.log'):
        path = work / previous
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    try:
        return run(args, work)
    except (BagError, ValueError, OSError) as exc:
        print(f'demo: error: {exc}', file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == '__main__':
    sys.exit(main())
