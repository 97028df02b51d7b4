"""`convitac_evaluate`: score a model on a bag, offline or through a running node.

- `offline`: pairs the bag's images as the node would (`SetStream`), runs the `Predictor` on
  the window ending at each evaluation point as it reads the bag (memory does not grow with the
  recording). No ROS graph needed.
- `online`: replays the bag into a running `convitac_node` at the recorded pace and scores the
  answers it publishes (latency, drops and pairing under real timing).
- `online --lock-step`: publishes one synchronized set at a time and, at each evaluation point,
  waits for the node's answer before going on, so nothing is dropped and the accuracy is exactly
  the offline accuracy of the node's model.

Topics are found as `convitac_ros.bags.topic_mapping` says (the package's own names and `ros2 bag
record` of the node's default topics by default; `--camera-topic`, `--tactile-topic` map others);
`--labels FILE` scores a recording against a labels file
(`convitac_ros.bags.labels_file`) instead of
ground-truth topics.

Both print a table and write `report.json` (accuracy per head; ROC AUC, Brier score and ECE:
`convitac_ros.evaluation.metrics`), `confusion_<head>.png` and `reliability_<head>.png` into
`--output-dir`.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
import os
from pathlib import Path
import sys
import time
from typing import Any

from tqdm import tqdm

from convitac_ros.bags.bagfile import BagError, BagReader
from convitac_ros.bags.labels_file import LabelsFile, read_labels
from convitac_ros.bags.samples import (
    DEFAULT_QUEUE_SIZE,
    DEFAULT_SLOP_S,
    evaluation_points,
    index_bag,
    no_label_error,
    SetStream,
    StreamFacts,
)
from convitac_ros.bags.topic_mapping import add_topic_arguments, TRANSPORTS
from convitac_ros.evaluation.metrics import (
    EvaluationRecorder,
    format_table,
    REPORT_FILE,
    save_report,
)
from convitac_ros.ros.pipeline import window_inputs


def evaluate_offline(bag: str | os.PathLike, predictor: Any, *,
                     labels: LabelsFile | None = None, slop: float = DEFAULT_SLOP_S,
                     queue_size: int = DEFAULT_QUEUE_SIZE, camera_topic: str | None = None,
                     tactile_topics: Sequence[str] | None = None, batch_size: int = 8,
                     progress: bool = True) -> EvaluationRecorder:
    """Run a `Predictor` on the node's window at every evaluation point of a bag.

    The bag is read set by set (`SetStream`, `evaluation_points`): a recording of any length is
    scored with the memory of a few windows.

    Args:
        bag: The bag (its tactile topics must match `predictor.num_tactile`).
        predictor: A `convitac_ros.inference.Predictor`.
        labels: A labels file, in place of the bag's ground-truth topics.
        slop: Synchronizer slop in seconds (the node's `sync_slop`).
        queue_size: Synchronizer queue size (the node's `sync_queue_size`).
        camera_topic: Camera topic (`convitac_ros.bags.topic_mapping` rules; None: default).
        tactile_topics: Tactile topics in sensor order (None: the defaults).
        batch_size: Windows per `predict_batch` call.
        progress: Show a progress bar.

    Returns:
        The filled recorder (with the bag's facts in ``extra``); latency is the Predictor's wall
        time per window (batch time divided by the batch size).

    Raises:
        BagError: Missing or corrupt bag, no usable topics, or no ground truth at its images.
        LabelsError: The labels file covers none of the bag's sets.
    """
    classes = {h: list(names) for h, names in predictor.heads.items()}
    recorder = EvaluationRecorder(classes, mode='offline')
    length = max(predictor.visual_len, predictor.tactile_len)
    facts = StreamFacts()
    batch: list[tuple[int, Any]] = []

    def flush() -> None:
        if not batch:
            return
        started = time.perf_counter()
        outputs = predictor.predict_batch([inputs for _, inputs in batch])
        elapsed = (time.perf_counter() - started) / len(batch)
        for (stamp, _), probabilities in zip(batch, outputs):
            recorder.latencies_s.append(elapsed)
            recorder.record(stamp, probabilities)
        batch.clear()

    predictor.warmup()  # first-call costs (allocation, kernel selection) stay out of the timings
    with SetStream(bag, predictor.num_tactile, slop, queue_size, camera_topic, tactile_topics,
                   read_truth=labels is None) as stream, \
            tqdm(total=stream.camera_messages, desc='offline', unit='set',
                 disable=not progress) as bar:
        for stamp, truth, window in evaluation_points(stream, length, labels, facts):
            recorder.truths[stamp] = truth
            if window is not None:
                batch.append((stamp, window_inputs(window, predictor.visual_len,
                                                   predictor.tactile_len, predictor.image_size)))
                if len(batch) == batch_size:
                    flush()
            bar.update(stream.sets - bar.n)
        flush()
        bar.update(stream.sets - bar.n)
    if not recorder.truths:
        if labels is not None:
            raise no_label_error(labels, facts.last_offset_ns)
        raise no_truth_error(bag)
    recorder.truths = dict(sorted(recorder.truths.items()))
    recorder.published_sets = stream.camera_messages
    recorder.paired_sets = stream.sets
    recorder.extra.update(bag_facts(bag, stream.topics, stream.sets, stream.unpaired, facts))
    return recorder


def no_truth_error(bag: str | os.PathLike) -> BagError:
    """The error for a bag without ground truth at its images."""
    return BagError(f'bag {bag} has no ground truth matching its images '
                    f'([/namespace/]ground_truth/<head> at the stamps of the image sets)')


def bag_facts(bag: str | os.PathLike, image_topics: list[str], sets: int, unpaired: int,
              facts: StreamFacts) -> dict[str, Any]:
    """What the report says about the bag itself (offline and online alike)."""
    return {'bag': str(bag), 'image_topics': image_topics, 'sets': sets,
            'unpaired_messages': unpaired, 'unmatched_ground_truth': facts.unmatched_truth,
            'label_rows_without_frames': facts.label_rows_unused}


def build_parser() -> argparse.ArgumentParser:
    """Command-line interface of `convitac_evaluate`."""
    parser = argparse.ArgumentParser(
        prog='convitac_evaluate', description=__doc__.split('\n\n')[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument('bag', help='rosbag2 directory with images and ground_truth/<head> '
                        '(or --labels)')
    add_topic_arguments(parser)
    parser.add_argument('--labels', metavar='FILE',
                        help='labels file (CSV: start,end,<heads>) in place of ground-truth '
                        'topics')
    parser.add_argument('--mode', choices=('offline', 'online'), default='offline',
                        help='offline: run the Predictor here; online: replay into a node')
    parser.add_argument('--checkpoint', help='model checkpoint (required offline; online: '
                        "optional, gives the class names of the node's model)")
    parser.add_argument('--device', default='auto', help='offline inference device')
    parser.add_argument('--no-calibration', action='store_true',
                        help="offline: score the uncalibrated softmax (without the checkpoint's "
                        'temperatures; the node: calibration:=false)')
    parser.add_argument('--lock-step', action='store_true',
                        help='online: one set at a time, wait for each answer (exact accuracy)')
    parser.add_argument('--node', default='/convitac_node',
                        help='online: fully qualified name of the running node')
    parser.add_argument('--rate', type=float, default=1.0, help='online: replay speed factor')
    parser.add_argument('--node-transport', choices=TRANSPORTS, default='raw',
                        help="online: the node's image_transport; images recorded in the other "
                        'form are converted (same pixels)')
    parser.add_argument('--timeout', type=float, default=10.0,
                        help='online: seconds to wait for the node, for an answer (lock-step) '
                        'and for the last answers')
    parser.add_argument('--slop', type=float, default=DEFAULT_SLOP_S,
                        help="pairing slop in seconds (the node's sync_slop)")
    parser.add_argument('--queue-size', type=int, default=DEFAULT_QUEUE_SIZE,
                        help="pairing queue size (the node's sync_queue_size)")
    parser.add_argument('--output-dir', default=None,
                        help='folder for report.json and the figures (default: a new folder '
                        'evaluation/<bag>_<mode>[_<checkpoint>][_N] that no earlier report '
                        'uses)')
    parser.add_argument('--print-predictions', action='store_true',
                        help='online: print every answer as it arrives')
    parser.add_argument('--quiet', action='store_true', help='no progress bars')
    parser.add_argument('--force', action='store_true',
                        help='replace a report already in --output-dir')
    return parser


def check_output_dir(output_dir: str | os.PathLike, force: bool = False) -> None:
    """Refuse, before any work, an output folder that could not receive the report.

    Raises:
        ValueError: The path is an existing file, holds a report already (without `force`),
            or its nearest existing ancestor is not a writable folder.
    """
    out = Path(output_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f'--output-dir {out} exists and is not a folder')
    if (out / REPORT_FILE).exists() and not force:
        raise ValueError(f'--output-dir {out} holds a report already; give another folder, '
                         'or --force to replace it')
    existing = next(p for p in (out, *out.parents) if p.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f'--output-dir {out}: cannot write into {existing}')


def default_output_dir(bag: str | os.PathLike, mode: str, checkpoint: str | None,
                       parent: str | os.PathLike = 'evaluation') -> Path:
    """A report folder of its own: ``<parent>/<bag>_<mode>[_<checkpoint>]``, then ``_2``, ...

    So that the before, after and online reports of a walkthrough never overwrite each other.
    """
    name = f'{Path(bag).name or "bag"}_{mode}'
    if checkpoint:
        name += f'_{Path(checkpoint).parent.name}-{Path(checkpoint).stem}' \
            if Path(checkpoint).parent.name not in ('', '.') else f'_{Path(checkpoint).stem}'
    folder, number = Path(parent) / name, 1
    while folder.exists():
        number += 1
        folder = Path(parent) / f'{name}_{number}'
    return folder


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Evaluate as the parsed arguments say; return the report (also printed and saved)."""
    if args.output_dir is None:
        args.output_dir = default_output_dir(args.bag, args.mode, args.checkpoint)
    check_output_dir(args.output_dir, getattr(args, 'force', False))
    with BagReader(args.bag) as bag:  # a missing or corrupt bag is reported before anything else
        bag.info()
    predictor = None
    if args.checkpoint:
        from convitac_ros.predictor import open_predictor

        predictor = open_predictor(args.checkpoint, device=args.device,
                                   calibrated=not args.no_calibration)
    elif args.mode == 'offline':
        raise ValueError('offline evaluation needs --checkpoint')
    labels = read_labels(args.labels) if args.labels else None
    if labels is not None and predictor is not None:
        labels.check_classes(predictor.heads, f'checkpoint {args.checkpoint}')
    if args.mode == 'offline':
        recorder = evaluate_offline(
            args.bag, predictor, labels=labels, slop=args.slop, queue_size=args.queue_size,
            camera_topic=args.camera_topic, tactile_topics=args.tactile_topic,
            progress=not args.quiet)
    else:
        from convitac_ros.evaluation.online import evaluate_online

        index = index_bag(args.bag, predictor.num_tactile if predictor else None, args.slop,
                          args.queue_size, args.camera_topic, args.tactile_topic, labels)
        if not index.points:
            raise no_truth_error(args.bag)
        recorder = evaluate_online(
            index, node=args.node, rate=args.rate, lock_step=args.lock_step,
            timeout=args.timeout, predictor=predictor, live=args.print_predictions,
            progress=not args.quiet, ros_args=getattr(args, 'ros_args', None),
            transport=args.node_transport)
        recorder.extra.update(bag_facts(index.path, index.image_topics,
                                        len(index.set_stamps), index.unpaired, index.facts))
    report = recorder.report()
    print(format_table(report))
    paths = save_report(report, args.output_dir)
    print(f'report: {paths[0]} (+ {len(paths) - 1} confusion matrices)')
    return report


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `convitac_evaluate`."""
    from rclpy.utilities import remove_ros_args

    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(remove_ros_args(argv))
    args.ros_args = argv
    try:
        run(args)
    except (BagError, ValueError, FileNotFoundError) as exc:
        print(f'convitac_evaluate: error: {exc}', file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == '__main__':
    sys.exit(main())
