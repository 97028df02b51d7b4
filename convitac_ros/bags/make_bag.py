"""`convitac_make_bag`: write a dataset as a rosbag2 bag that looks like real drivers' output.

How a sample becomes messages. A sample holds T_v camera frames and, per tactile sensor, T_t
frames (a press-in sequence, oldest first). It is written as T = max(T_v, T_t) consecutive
*ticks*, one tick per frame period (`--fps`). At every tick each image topic gets one message
and all messages of a tick carry the same `header.stamp`, equal to their log time, so the node's
synchronizer pairs them into one set. Streams shorter than T are aligned to the end (their first
frame repeats), so the last T_v camera frames and the last T_t tactile frames of the sample are
exactly the newest window the node holds when the sample's last tick arrives. The ground truth
of each labelled head is written once per sample on `ground_truth/<head>` (std_msgs/String, the
class name) at the stamp of that last tick: these stamps are the evaluation points. Samples
follow each other without a gap (`--gap-ticks` adds silent ticks between them).
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
import itertools
from pathlib import Path
import sys
from typing import Any

import numpy as np
from std_msgs.msg import String
from tqdm import tqdm

from convitac_ros.bags.bagfile import (
    BagError,
    BagWriter,
    COMPRESSED_SUFFIX,
    GROUND_TRUTH_PREFIX,
    STORAGE_PLUGINS,
)
from convitac_ros.output_paths import check_new_folder
from convitac_ros.ros.image_messages import encode_frame
from convitac_ros.ros.topics import CAMERA_TOPIC, TACTILE_TOPICS

ENCODINGS = ('rgb8', 'bgr8', 'mono8')
COMPRESSIONS = ('none', 'jpeg', 'png')
DEFAULT_START_NS = 1_700_000_000 * 1_000_000_000


@dataclass(frozen=True)
class BagLayout:
    """How samples are laid out as messages (stored in the bag metadata).

    Attributes:
        fps: Ticks per second (frame rate of every image topic).
        camera_encoding: `rgb8` or `bgr8`.
        tactile_encoding: `rgb8`, `bgr8` or `mono8`.
        compression: `none` (sensor_msgs/Image), `jpeg` or `png` (sensor_msgs/CompressedImage
            on `<topic>/compressed`, as image_transport publishes it).
        start_ns: Stamp of the first tick, integer nanoseconds.
        gap_ticks: Silent ticks between samples.
        ticks_per_sample: T = max(T_v, T_t); filled in from the data.
        num_tactile: Tactile sensors; filled in from the data.
        heads: Head -> ordered class names; filled in from the dataset.
    """

    fps: float = 10.0
    camera_encoding: str = 'rgb8'
    tactile_encoding: str = 'rgb8'
    compression: str = 'none'
    start_ns: int = DEFAULT_START_NS
    gap_ticks: int = 0
    ticks_per_sample: int = 0
    num_tactile: int = 0
    heads: dict[str, list[str]] | None = None

    def validate(self) -> None:
        """Raise ValueError for a setting no driver would produce."""
        if not self.fps > 0:
            raise ValueError(f'fps must be positive, got {self.fps}')
        if self.camera_encoding not in ENCODINGS[:2]:
            raise ValueError(f'camera encoding must be rgb8 or bgr8, got {self.camera_encoding}')
        if self.tactile_encoding not in ENCODINGS:
            raise ValueError(f'tactile encoding must be one of {ENCODINGS}, '
                             f'got {self.tactile_encoding}')
        if self.compression not in COMPRESSIONS:
            raise ValueError(f'compression must be one of {COMPRESSIONS}, got {self.compression}')
        if self.gap_ticks < 0 or self.start_ns < 0:
            raise ValueError('gap_ticks and start_ns must not be negative')

    @property
    def period_ns(self) -> int:
        """Time between ticks in nanoseconds."""
        return int(round(1e9 / self.fps))

    def image_topics(self, num_tactile: int) -> list[str]:
        """Camera topic then one topic per tactile sensor, with `/compressed` when compressed."""
        if num_tactile > len(TACTILE_TOPICS):
            raise ValueError(f'at most {len(TACTILE_TOPICS)} tactile sensors, got {num_tactile}')
        suffix = '' if self.compression == 'none' else COMPRESSED_SUFFIX
        return [t + suffix for t in (CAMERA_TOPIC, *TACTILE_TOPICS[:num_tactile])]


def _aligned(frames: Sequence[np.ndarray], ticks: int, name: str) -> list[np.ndarray]:
    """Stretch a stream to `ticks` frames by repeating its first frame (end-aligned)."""
    if not frames or len(frames) > ticks:
        raise ValueError(f'sample has {len(frames)} {name} frames; the bag has {ticks} per '
                         'sample (set by the first sample)')
    return [frames[0]] * (ticks - len(frames)) + list(frames)


def sample_messages(sample: Any, heads: dict[str, list[str]], layout: BagLayout,
                    first_tick: int) -> list[tuple[str, int, Any]]:
    """All messages of one sample as (topic, stamp_ns, message), in tick order.

    Args:
        sample: A `convitac_ros.data.Sample`.
        heads: Head -> class names of the dataset.
        layout: The bag layout (its `ticks_per_sample` must be set).
        first_tick: Global index of the sample's first tick.
    """
    ticks = layout.ticks_per_sample
    topics = layout.image_topics(len(sample.tactile))
    streams = [_aligned(sample.visual, ticks, 'camera')]
    streams += [_aligned(s, ticks, f'tactile {i}') for i, s in enumerate(sample.tactile)]
    encodings = [layout.camera_encoding] + [layout.tactile_encoding] * len(sample.tactile)
    out = []
    for i in range(ticks):
        stamp = layout.start_ns + (first_tick + i) * layout.period_ns
        for topic, stream, encoding in zip(topics, streams, encodings):
            frame_id = topic.split('/')[0]
            out.append((topic, stamp, encode_frame(stream[i], encoding, layout.compression,
                                                   stamp, frame_id)))
    last = layout.start_ns + (first_tick + ticks - 1) * layout.period_ns
    for head, label in sample.labels.items():
        if head in heads and 0 <= label < len(heads[head]):
            out.append((GROUND_TRUTH_PREFIX + head, last, String(data=heads[head][label])))
    return out


def write_bag(samples: Iterable[Any], heads: dict[str, list[str]], path: str | Path,
              layout: BagLayout = BagLayout(), storage: str = 'mcap',
              total: int | None = None, progress: bool = True) -> BagLayout:
    """Write samples into a new bag.

    Args:
        samples: `Sample` items (all with the same number of tactile sensors).
        heads: Head -> ordered class names.
        path: Bag directory to create.
        layout: Encodings, rate and start stamp.
        storage: `mcap` or `sqlite3`.
        total: Number of samples, for the progress bar.
        progress: Show a progress bar on stderr.

    Returns:
        The layout with `ticks_per_sample`, `num_tactile` and `heads` filled in.

    Raises:
        ValueError: Bad layout, or samples that disagree in shape.
        BagError: The bag cannot be created.
    """
    layout.validate()
    iterator = iter(samples)
    first = next(iterator, None)
    if first is None:
        raise ValueError('no samples to write')
    ticks = max([len(first.visual)] + [len(s) for s in first.tactile])
    layout = BagLayout(**{**asdict(layout), 'ticks_per_sample': ticks,
                          'num_tactile': len(first.tactile), 'heads': dict(heads)})
    layout.image_topics(layout.num_tactile)
    bar = tqdm(total=total, desc=f'writing {Path(path).name}', unit='sample', disable=not progress)
    with BagWriter(path, storage, layout=asdict(layout)) as writer, bar:
        for index, sample in enumerate(itertools.chain([first], iterator)):
            if len(sample.tactile) != layout.num_tactile:
                raise ValueError(f'sample {index} has {len(sample.tactile)} tactile sensors, '
                                 f'the first had {layout.num_tactile}')
            first_tick = index * (layout.ticks_per_sample + layout.gap_ticks)
            for topic, stamp, msg in sample_messages(sample, heads, layout, first_tick):
                writer.write(topic, stamp, msg)
            bar.update(1)
    return layout


def _parse_kwargs(pairs: Sequence[str]) -> dict[str, Any]:
    """`key=value` strings to a dict; values parsed as int, float or bool where they look so."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition('=')
        if not sep:
            raise ValueError(f'expected key=value, got {pair!r}')
        lowered = value.lower()
        if lowered in ('true', 'false'):
            out[key] = lowered == 'true'
            continue
        for cast in (int, float):
            try:
                out[key] = cast(value)
                break
            except ValueError:
                continue
        else:
            out[key] = value
    return out


def build_parser() -> argparse.ArgumentParser:
    """Command-line interface of `convitac_make_bag`."""
    parser = argparse.ArgumentParser(
        prog='convitac_make_bag', description=__doc__.split('\n\n')[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument('--dataset', required=True,
                        help='dataset loader name, as accepted by convitac_ros.data.build_dataset')
    parser.add_argument('--root', required=True, help='dataset root folder')
    parser.add_argument('--split', default='test', help='dataset split')
    parser.add_argument('--dataset-arg', action='append', default=[], metavar='KEY=VALUE',
                        help='extra keyword argument for the loader (repeatable)')
    parser.add_argument('--output', '-o', required=True, help='bag directory to create')
    parser.add_argument('--storage', choices=sorted(STORAGE_PLUGINS), default='mcap')
    parser.add_argument('--fps', type=float, default=BagLayout.fps, help='frames per second')
    parser.add_argument('--camera-encoding', choices=ENCODINGS[:2], default='rgb8')
    parser.add_argument('--tactile-encoding', choices=ENCODINGS, default='rgb8')
    parser.add_argument('--compression', choices=COMPRESSIONS, default='none')
    parser.add_argument('--gap-ticks', type=int, default=0, help='silent ticks between samples')
    parser.add_argument('--start-time', type=float, default=DEFAULT_START_NS / 1e9,
                        help='stamp of the first frame, seconds since the epoch')
    parser.add_argument('--max-samples', type=int, default=None,
                        help='write at most this many samples')
    parser.add_argument('--quiet', action='store_true', help='no progress bar')
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `convitac_make_bag`."""
    args = build_parser().parse_args(argv)
    from convitac_ros.data import build_dataset

    try:
        check_new_folder(args.output, inputs=[args.root])
        dataset = build_dataset(args.dataset, args.root, args.split,
                                **_parse_kwargs(args.dataset_arg))
        count = len(dataset) if args.max_samples is None else min(args.max_samples, len(dataset))
        layout = BagLayout(fps=args.fps, camera_encoding=args.camera_encoding,
                           tactile_encoding=args.tactile_encoding, compression=args.compression,
                           start_ns=int(round(args.start_time * 1e9)), gap_ticks=args.gap_ticks)
        layout = write_bag((dataset[i] for i in range(count)), dataset.heads, args.output,
                           layout, args.storage, total=count, progress=not args.quiet)
    except (BagError, ValueError, OSError) as exc:
        print(f'convitac_make_bag: error: {exc}', file=sys.stderr)
        return 1
    print(f'wrote {count} samples ({layout.ticks_per_sample} frames each, '
          f'{layout.num_tactile} tactile) to {args.output} [{args.storage}]')
    return 0


if __name__ == '__main__':
    sys.exit(main())
