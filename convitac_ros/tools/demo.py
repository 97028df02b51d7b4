"""The one-command demo: synthetic bag -> `convitac_node` -> live predictions -> accuracy.

1. generate a small synthetic visual-tactile world (a seed the demo model never saw),
2. write its test split as a rosbag2 bag (`convitac_make_bag`'s writer),
3. start `convitac_node` with the demo checkpoint in a subprocess (evaluation settings:
   reliable inputs, every synchronized set processed),
4. replay the bag into it at the recorded pace, print each answer as it arrives, then the
   accuracy, latency and drop table (`convitac_evaluate`'s online mode), and stop the node.

DDS stays on loopback (`ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST`) in a private domain.
Run it with `scripts/demo.sh` (sets the environment up first) or `python -m
convitac_ros.tools.demo`.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
import os
from pathlib import Path
import shutil
import signal
import subprocess
import sys
import time
from typing import IO

from tqdm import tqdm

from convitac_ros.ros.dds_profile import use_fastdds_profile

NODE_NAME = 'convitac_demo_node'
STOP_TIMEOUT_S = 20.0


def loopback_environment(domain_id: int | None = None) -> None:
    """Keep DDS discovery on this machine, in a private domain (inherited by subprocesses)."""
    os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
    if os.environ.get('ROS_DISTRO') == 'humble':  # Humble predates the discovery range
        os.environ['ROS_LOCALHOST_ONLY'] = '1'
    else:  # deprecated from Jazzy on; unset, it stays silent
        os.environ.pop('ROS_LOCALHOST_ONLY', None)
    if domain_id is None:
        domain_id = int(os.environ.get('CONVITAC_DEMO_DOMAIN_ID', 1 + os.getpid() % 100))
    os.environ['ROS_DOMAIN_ID'] = str(domain_id)
    os.environ.setdefault('HF_HUB_OFFLINE', '1')


def start_node(checkpoint: Path, device: str, log: IO[str]) -> subprocess.Popen:
    """Start `convitac_node` with the checkpoint and evaluation settings; output goes to `log`."""
    params = {'checkpoint': str(checkpoint), 'device': device, 'qos_reliability': 'reliable',
              'qos_depth': '100', 'process_every_pair': 'true'}
    command = [sys.executable, '-m', 'convitac_ros.ros.node', '--ros-args',
               '-r', f'__node:={NODE_NAME}']
    for name, value in params.items():
        command += ['-p', f'{name}:={value}']
    return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=os.environ.copy())


def stop_node(process: subprocess.Popen) -> int:
    """Ctrl-C the node, as a user would; kill it if it does not exit in time."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


def make_demo_bag(work: Path, samples: int, seed: int, fps: float) -> Path:
    """Generate the synthetic world and write its test split as an mcap bag."""
    from convitac_ros.data import build_dataset
    from convitac_ros.data.synthetic import make_synthetic, work_units
    from convitac_ros.tools.make_bag import BagLayout, write_bag

    with tqdm(total=work_units('touch_and_go', samples), desc='synthetic world',
              unit='scene') as bar:
        make_synthetic(work / 'data', 'touch_and_go', samples, seed, bar.update)
    dataset = build_dataset('touch_and_go', work / 'data', 'test')
    bag = work / 'demo_bag'
    write_bag((dataset[i] for i in range(len(dataset))), dataset.heads, bag,
              BagLayout(fps=fps), total=len(dataset))
    return bag


def build_parser() -> argparse.ArgumentParser:
    """Command-line options of the demo."""
    parser = argparse.ArgumentParser(prog='convitac_demo', description=__doc__.split('\n\n')[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument('--checkpoint', type=Path, default=None,
                        help='checkpoint for the node (default: the shipped demo checkpoint)')
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
    from convitac_ros.ros.parameters import demo_checkpoint
    from convitac_ros.tools.bag_samples import load_bag_samples
    from convitac_ros.tools.metrics import format_table, save_report
    from convitac_ros.tools.online import evaluate_online

    checkpoint = (args.checkpoint or demo_checkpoint()).resolve()
    if not checkpoint.is_file():
        print(f'demo: checkpoint {checkpoint} not found (models/README.md says how to build '
              'it)', file=sys.stderr)
        return 1
    started = time.monotonic()
    print(f'[1/3] synthetic world (seed {args.seed}) -> rosbag2', flush=True)
    bag = make_demo_bag(work, args.samples, args.seed, args.fps)
    samples = load_bag_samples(bag)
    print(f'      {len(samples.points)} samples, {len(samples.sets)} frame sets at '
          f'{args.fps:g} fps in {bag}', flush=True)
    print(f'[2/3] starting convitac_node ({checkpoint.name}, device {args.device}, '
          f'ROS_DOMAIN_ID={os.environ["ROS_DOMAIN_ID"]}, loopback only)', flush=True)
    log_path = work / 'node.log'
    with log_path.open('w') as log:
        node = start_node(checkpoint, args.device, log)
        try:
            print('[3/3] replaying; the node answers (label per head, "ok" when right):',
                  flush=True)
            recorder = evaluate_online(samples, node=f'/{NODE_NAME}', rate=args.rate,
                                       lock_step=args.lock_step, timeout=args.timeout,
                                       live=True, progress=False)
        except Exception:
            if node.poll() is not None:
                log.flush()
                print(f'demo: the node exited ({node.returncode}); its log:\n'
                      + log_path.read_text()[-3000:], file=sys.stderr)
            raise
        finally:
            code = stop_node(node)
    recorder.extra['checkpoint'] = str(checkpoint)
    report = recorder.report()
    print('\n' + format_table(report))
    paths = save_report(report, work / 'report')
    print(f'node stopped (exit code {code}); report in {paths[0].parent}; '
          f'demo took {time.monotonic() - started:.0f} s')
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: `python -m convitac_ros.tools.demo`."""
    args = build_parser().parse_args(argv)
    loopback_environment(args.domain_id)
    use_fastdds_profile()  # the demo publishes images: the robot-wide profile, here too
    from convitac_ros.tools.bagio import BagError

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
