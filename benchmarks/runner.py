"""`python -m benchmarks`: measure the model, the Predictor, the live node and training.

Each part prints markdown tables and, with ``--output DIR``, writes ``DIR/<part>-<tag>.json``
and ``.md`` holding the date, the machine and the exact command. Examples::

    python -m benchmarks model --configs tiny,paper --device all
    python -m benchmarks predictor --checkpoint models/convitac_demo.safetensors
    python -m benchmarks onnx --device cpu --threads 2
    python -m benchmarks node --checkpoint models/convitac_demo.safetensors --rate 30
    python -m benchmarks training --steps 20
    python -m benchmarks all --output docs/benchmarks

Benchmarks are not tests: on a shared machine the absolute numbers move with the load, so
every table also reports ratios measured in the same run.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
import os
from pathlib import Path
import sys

import torch

from benchmarks.report import command_line, machine_info, Report, write_report
from convitac_ros.ros.dds_profile import use_fastdds_profile

CHECK_FAILED = 3  # exit status: every part ran and wrote its report, but a check failed
PARTS = ('model', 'predictor', 'onnx', 'node', 'training')
DEFAULT_CHECKPOINT = Path('models/convitac_demo.safetensors')


def _csv(kind: Callable[[str], object]) -> Callable[[str], list]:
    return lambda text: [kind(item) for item in text.split(',') if item]


def _size(text: str) -> tuple[int, int]:
    """Parse 'WIDTHxHEIGHT' into (height, width)."""
    width, height = (int(value) for value in text.lower().split('x'))
    return height, width


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface (one option set shared by every part)."""
    parser = argparse.ArgumentParser(
        prog='python -m benchmarks', description=__doc__.split('\n\n')[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument('part', choices=(*PARTS, 'all'), help='what to measure')
    parser.add_argument('--checkpoint', type=Path, default=None,
                        help='convitac checkpoint for the tiny config, the predictor and the node '
                             f'(default: {DEFAULT_CHECKPOINT} when it exists)')
    parser.add_argument('--device', default='all', choices=('all', 'cpu', 'cuda', 'auto'),
                        help='all = the CPU and, when present, CUDA; auto = CUDA if present')
    parser.add_argument('--output', type=Path, default=None,
                        help='folder for <part>-<tag>.json/.md (nothing written without it)')
    parser.add_argument('--tag', default=None, help='file-name tag (default: cpu or gpu)')
    parser.add_argument('--runs', type=int, default=50, help='timed calls per measurement')
    parser.add_argument('--warmup', type=int, default=5, help='untimed calls first')
    parser.add_argument('--threads', type=int, default=0,
                        help='torch intra-op CPU threads here and OMP_NUM_THREADS of the node '
                             'process (0: torch default)')
    parser.add_argument('--budget-s', type=float, default=8.0,
                        help='time budget per measurement; slow calls get fewer runs (min 3)')
    group = parser.add_argument_group('model / predictor / onnx')
    group.add_argument('--configs', type=_csv(str), default=['tiny', 'paper'],
                       help="model configs: tiny (the checkpoint's), paper (random weights)")
    group.add_argument('--variants', type=_csv(str), default=['all'],
                       help='model variants: eager, channels_last, autocast, compile, '
                            'cuda_graph (CUDA) or all; predictor: eager (its defaults), '
                            'compile, no_graph, host_resize, bf16, bf16_no_graph, fp16 (CUDA) '
                            'or all')
    group.add_argument('--batch-sizes', type=_csv(int), default=[8, 32],
                       help='batch sizes for throughput')
    group.add_argument('--camera-size', type=_size, default=(480, 640), help='WxH')
    group.add_argument('--tactile-size', type=_size, default=(240, 320), help='WxH')
    group = parser.add_argument_group('node')
    group.add_argument('--rate', type=float, default=30.0,
                       help='input rate (pairs/s) of the latency run')
    group.add_argument('--duration-s', type=float, default=20.0, help='latency run length')
    group.add_argument('--rates', type=_csv(float), default=None,
                       help='rates to step through for the sustainable rate (default: doubling)')
    group.add_argument('--step-s', type=float, default=6.0, help='length of each rate step')
    group.add_argument('--reliable', action='store_true',
                       help='RELIABLE QoS on the image topics (node parameter qos_reliability) '
                            'instead of the best-effort default')
    group.add_argument('--compressed', action='store_true',
                       help='publish sensor_msgs/CompressedImage (JPEG of a smooth synthetic '
                            'scene) and run the node with image_transport: compressed')
    group.add_argument('--input-rounds', type=int, default=2,
                       help='interleaved rounds comparing direct and executor input (0: skip)')
    group.add_argument('--overload-factor', type=float, default=3.0,
                       help='overload rate = factor x the highest sustained rate')
    group.add_argument('--overload-s', type=float, default=60.0, help='overload run length')
    group = parser.add_argument_group('training')
    group.add_argument('--steps', type=int, default=30, help='timed steps per stage')
    group.add_argument('--batch-size', type=int, default=16, help='training batch size')
    group.add_argument('--frame-cache', action='store_true',
                       help='also time the steps with the frame cache (training/frame_cache.py)')
    group.add_argument('--num-workers', type=int, default=0, help='DataLoader workers')
    group.add_argument('--train-preset', default='tiny', choices=('tiny', 'paper'),
                       help='model preset trained (paper: ViT-S/16 E^c, ResNet-18s, 224 px)')
    return parser


def devices_for(choice: str) -> list[torch.device]:
    """The devices to measure on."""
    cuda = torch.cuda.is_available()
    if choice == 'cuda' and not cuda:
        raise SystemExit('benchmarks: --device cuda but CUDA is not available')
    if choice == 'all':
        return [torch.device('cpu')] + ([torch.device('cuda')] if cuda else [])
    if choice == 'auto':
        return [torch.device('cuda' if cuda else 'cpu')]
    return [torch.device(choice)]


def resolve_checkpoint(path: Path | None) -> Path | None:
    """The checkpoint to use: the given one (must exist) or the demo checkpoint if present."""
    if path is not None:
        if not path.is_file():
            raise SystemExit(f'benchmarks: checkpoint {path} does not exist')
        return path
    return DEFAULT_CHECKPOINT if DEFAULT_CHECKPOINT.is_file() else None


def predictor_settings(wanted: list[str]) -> list[dict[str, object]]:
    """Predictor options to compare: its defaults, then the optional speed-ups asked for."""
    choices: dict[str, dict[str, object]] = {'eager': {}, 'compile': {'compile': True}}
    if torch.cuda.is_available():
        # The CUDA defaults are fp32 with CUDA-graph replay; these rows test that choice.
        choices.update(no_graph={'cuda_graph': False},
                       host_resize={'resize_on_device': False},
                       bf16={'precision': 'bf16'},
                       bf16_no_graph={'precision': 'bf16', 'cuda_graph': False},
                       fp16={'precision': 'fp16'},
                       compile={'compile': True, 'cuda_graph': False})
    if 'all' in wanted:
        return list(choices.values())
    return [choices[name] for name in choices if name in wanted] or [{}]


def run_part(part: str, args: argparse.Namespace) -> Report:
    """Run one part with the parsed options."""
    options = {'runs': args.runs, 'warmup': args.warmup, 'budget_s': args.budget_s}
    devices = devices_for(args.device)
    checkpoint = resolve_checkpoint(args.checkpoint)
    if part in ('model', 'predictor', 'onnx'):
        from benchmarks import model as bench_model

        subjects = bench_model.load_subjects(args.configs, checkpoint)
        sizes = {'camera': args.camera_size, 'tactile': args.tactile_size}
        if part == 'onnx':
            from benchmarks.onnx import run_onnx

            return run_onnx(subjects, devices, sizes, options)
        if part == 'model':
            return bench_model.run_model(subjects, devices, args.variants, args.batch_sizes,
                                         options)
        settings = predictor_settings(args.variants)
        return bench_model.run_predictor(subjects, devices, settings, sizes, options)
    if part == 'node':
        from benchmarks import node_latency as bench_node

        return bench_node.run_node(args, checkpoint, devices[-1])
    from benchmarks import train_steps as bench_training

    return bench_training.run_training(args, devices[-1])


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `python -m benchmarks`: 0, or `CHECK_FAILED` when a check failed."""
    args = build_parser().parse_args(argv)
    use_fastdds_profile()  # for the node process and the in-process client that sends images
    command = command_line(argv)
    tag = args.tag or ('gpu' if torch.cuda.is_available() and args.device != 'cpu' else 'cpu')
    if args.threads > 0:
        os.environ['OMP_NUM_THREADS'] = str(args.threads)  # inherited by the node process
        torch.set_num_threads(args.threads)
    failed = False
    for part in PARTS if args.part == 'all' else (args.part,):
        machine = machine_info()  # before the run: the load average says how busy it was
        report = run_part(part, args)
        text = write_report(report, args.output, f'{part}-{tag}', command, machine)
        print(text, flush=True)
        failed |= not all(check.passed for check in report.checks)
    if args.output is not None:
        print(f'wrote {os.fspath(args.output)}/<part>-{tag}.json and .md', file=sys.stderr)
    return CHECK_FAILED if failed else 0


if __name__ == '__main__':
    sys.exit(main())
