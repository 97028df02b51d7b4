"""`convitac_label`: a first labels file for a recording, one row per contact episode.

Contact is found from the tactile frames alone: each frame is reduced to a small grey image and
compared with the untouched gel, the median of the recording's first `--rest-frames` frames
(so a recording must start with the sensor untouched). Its contact score is the 95th
percentile of the absolute grey-level differences (0-255): a contact changes a patch of the
gel, not all of it, so a high percentile separates it from sensor noise better than the mean.
A frame is in contact when its score exceeds the rest level (the highest score of the rest
frames, i.e. the noise) by more than `--min-contrast` grey levels, unless `--threshold` sets
the score directly. Runs of frames above the threshold,
joined across gaps shorter than `--min-gap` and kept when at least `--min-duration` long, are
the episodes. The file has their times and empty label cells for the team to fill in (format:
`convitac_ros.bags.labels`).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
import sys

import cv2
import numpy as np
from tqdm import tqdm

from convitac_ros.bags.bagfile import BagError
from convitac_ros.bags.labels import HEADS, LabelsError, write_labels
from convitac_ros.bags.samples import SetStream
from convitac_ros.bags.topics import add_topic_arguments, one_tactile_topic
from convitac_ros.ros.image_limits import message_to_rgb

SCORE_SIZE = (32, 32)  # (W, H) of the grey images compared


@dataclass(frozen=True)
class Episode:
    """One contact episode.

    Attributes:
        start_s: First frame in contact, seconds from the bag's start.
        end_s: Last frame in contact, seconds from the bag's start.
        frames: Frame sets in contact.
        peak: Highest contact score in the episode (grey levels).
    """

    start_s: float
    end_s: float
    frames: int
    peak: float


def grey(rgb: np.ndarray) -> np.ndarray:
    """A uint8 RGB frame as a float32 (32, 32) grey image (0-255, not rounded)."""
    small = cv2.resize(rgb.astype(np.float32), SCORE_SIZE, interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)


def contact_scores(frames: Sequence[np.ndarray], rest_frames: int) -> np.ndarray:
    """Contact score of each frame (95th percentile of its grey difference from rest): (N,).

    Raises:
        ValueError: Fewer frames than `rest_frames`.
    """
    if len(frames) < max(rest_frames, 1):
        raise ValueError(f'{len(frames)} tactile frames; at least --rest-frames '
                         f'{rest_frames} are needed')
    return grey_scores(np.stack([grey(f) for f in frames]), rest_frames)


def grey_scores(greys: np.ndarray, rest_frames: int) -> np.ndarray:
    """:func:`contact_scores` of frames already reduced by :func:`grey`: (N, 32, 32) -> (N,)."""
    rest = np.median(greys[:rest_frames], axis=0)
    return np.percentile(np.abs(greys - rest).reshape(len(greys), -1), 95, axis=1)


def find_episodes(times_s: np.ndarray, scores: np.ndarray, rest_frames: int,
                  threshold: float | None = None, min_contrast: float = 0.5,
                  min_gap_s: float = 0.2, min_duration_s: float = 0.0) -> list[Episode]:
    """Contact episodes from per-frame scores (rules in the module docstring).

    Args:
        times_s: Frame times, seconds from the bag's start, increasing: (N,).
        scores: Contact scores: (N,).
        rest_frames: Leading frames that show the untouched gel.
        threshold: Score above which a frame is in contact; None: automatic.
        min_contrast: Automatic threshold only: the least rise above the rest level that
            counts (grey levels).
        min_gap_s: Episodes closer than this are joined.
        min_duration_s: Shorter episodes are dropped.
    """
    if threshold is None:
        rest_level = float(scores[:rest_frames].max())
        threshold = rest_level + min_contrast
    runs: list[list[int]] = []
    for index in np.flatnonzero(scores > threshold):
        if runs and times_s[index] - times_s[runs[-1][-1]] <= min_gap_s:
            runs[-1].append(int(index))
        else:
            runs.append([int(index)])
    episodes = [Episode(float(times_s[r[0]]), float(times_s[r[-1]]), len(r),
                        float(scores[r].max())) for r in runs]
    return [e for e in episodes if e.end_s - e.start_s >= min_duration_s]


def label_bag(bag: str | Path, *, camera_topic: str | None = None,
              tactile_topic: str | None = None, rest_frames: int = 5,
              threshold: float | None = None, min_contrast: float = 0.5,
              min_gap_s: float = 0.2, min_duration_s: float = 0.0,
              progress: bool = True) -> list[Episode]:
    """Find the contact episodes of a recording (first tactile sensor, frames as paired).

    Raises:
        BagError: Missing or corrupt bag, or no usable topics.
        ValueError: Too few frames.
    """
    tactile = None if tactile_topic is None else [tactile_topic]
    # The recording is read set by set and only the tactile frame is kept, reduced to 32x32
    # grey as it is decoded: a long recording's frames would not fit in memory.
    greys, times = [], []
    with SetStream(bag, 1, camera_topic=camera_topic, tactile_topics=tactile,
                   read_truth=False) as stream, \
            tqdm(total=stream.camera_messages, unit='frame', desc='contact',
                 disable=not progress) as bar:
        for frame_set, _ in stream:
            greys.append(grey(message_to_rgb(frame_set.msgs[1])))
            times.append((frame_set.stamp_ns - stream.start_ns) / 1e9)
            bar.update(1)
    if len(greys) < max(rest_frames, 1):
        raise ValueError(f'{len(greys)} tactile frames; at least --rest-frames '
                         f'{rest_frames} are needed')
    greys, times = np.stack(greys), np.array(times)
    scores = grey_scores(greys, rest_frames)
    return find_episodes(times, scores, rest_frames, threshold, min_contrast, min_gap_s,
                         min_duration_s)


def build_parser() -> argparse.ArgumentParser:
    """Command-line interface of `convitac_label`."""
    parser = argparse.ArgumentParser(
        prog='convitac_label', description=__doc__.split('\n\n')[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument('bag', help='the recording (rosbag2 folder)')
    parser.add_argument('--output', '-o', required=True, help='labels file to create (CSV)')
    add_topic_arguments(parser)
    parser.add_argument('--heads', default='material,hardness,roughness',
                        help=f'comma-separated label columns, any of {", ".join(HEADS)}')
    parser.add_argument('--rest-frames', type=int, default=5,
                        help='leading frames that show the untouched gel')
    parser.add_argument('--threshold', type=float, default=None,
                        help='contact score (grey levels) above which a frame is in contact; '
                        'default: from the rest frames (see the description)')
    parser.add_argument('--min-contrast', type=float, default=0.5,
                        help='automatic threshold: least rise above the rest level that counts')
    parser.add_argument('--min-gap', type=float, default=0.2,
                        help='seconds: closer episodes are joined')
    parser.add_argument('--min-duration', type=float, default=0.0,
                        help='seconds: shorter episodes are dropped')
    parser.add_argument('--quiet', action='store_true', help='no progress bar')
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `convitac_label`."""
    args = build_parser().parse_args(argv)
    try:
        tactile_topic = one_tactile_topic(args, 'contact is found from one tactile sensor')
        heads = [h.strip() for h in args.heads.split(',') if h.strip()]
        if Path(args.output).exists():
            raise LabelsError(f'{args.output} exists already; labels files are never '
                              'overwritten')
        episodes = label_bag(
            args.bag, camera_topic=args.camera_topic, tactile_topic=tactile_topic,
            rest_frames=args.rest_frames, threshold=args.threshold,
            min_contrast=args.min_contrast, min_gap_s=args.min_gap,
            min_duration_s=args.min_duration, progress=not args.quiet)
        write_labels(args.output, heads, [(e.start_s, e.end_s, {}) for e in episodes],
                     comment=f'contact episodes of {args.bag} found by convitac_label; fill in '
                     'the labels.\ntimes: seconds from the start of the bag (inclusive)')
    except (BagError, ValueError, OSError) as exc:
        print(f'convitac_label: error: {exc}', file=sys.stderr)
        return 1
    print(f'{len(episodes)} contact episode(s) written to {args.output}; fill in the labels')
    return 0


if __name__ == '__main__':
    sys.exit(main())
