"""`convitac_label`: a first labels file for a recording, one row per contact episode.

Contact is what the node publishes on `convitac/contact` for the same frames: the recording is
paired as the node pairs it, and a `convitac_ros.ros.contact.ContactDetector` scores every
frame set's tactile frames (all the sensors the bag has, or those mapped with `--tactile-topic`)
against the first set's (so a recording must start with the gel untouched). A set is in
contact when its score exceeds `--threshold`, by default the node's own `contact_threshold`
default, so that the episodes are the node's contact; `--threshold auto` sets it from the rest
frames instead (the highest score of the first `--rest-frames` sets, i.e. the sensor noise,
plus `--min-contrast` grey levels) and prints the value to give the node as
`contact_threshold`. Runs of sets in contact, joined across gaps shorter than `--min-gap` and
kept when at least `--min-duration` long, are the episodes.

The file has their times and empty label cells for the team to fill in (format:
`convitac_ros.bags.labels_file`). For grasps, `--outcome-topic TOPIC` (std_msgs/Bool, published
per grasp after it, e.g. by a lift check) fills the `grasp_success` column: each message labels
the contact episode before it (up to the message), `success` when true.
"""

from __future__ import annotations

import argparse
import array
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
import sys

import numpy as np
from tqdm import tqdm

from convitac_ros.bags.bagfile import BagError, BagReader
from convitac_ros.bags.labels_file import HEADS, LabelsError, write_labels
from convitac_ros.bags.samples import SetStream
from convitac_ros.bags.topic_mapping import add_topic_arguments, topic_matches
from convitac_ros.output_paths import check_output_file
from convitac_ros.ros.contact import ContactDetector, thumbnail
from convitac_ros.ros.image_limits import message_to_rgb
from convitac_ros.ros.parameters import SPECS

NODE_THRESHOLD = float(SPECS['contact_threshold'].default)
OUTCOME_TYPE = 'std_msgs/msg/Bool'
GRASP_HEAD = 'grasp_success'


@dataclass(frozen=True)
class Episode:
    """One contact episode.

    Attributes:
        start_s: First frame set in contact, seconds from the bag's start.
        end_s: Last frame set in contact, seconds from the bag's start.
        frames: Frame sets in contact.
        peak: Highest contact score in the episode (grey levels).
    """

    start_s: float
    end_s: float
    frames: int
    peak: float


@dataclass(frozen=True)
class ContactOptions:
    """How contact and episodes are found (the command-line options of the module docstring).

    Attributes:
        threshold: Score above which a set is in contact; None: automatic from the rest sets.
        rest_frames: Leading sets that show the untouched gel (automatic threshold).
        min_contrast: Automatic threshold: the least rise above the rest level that counts.
        min_gap_s: Episodes closer than this are joined.
        min_duration_s: Shorter episodes are dropped.
    """

    threshold: float | None = NODE_THRESHOLD
    rest_frames: int = 5
    min_contrast: float = 0.5
    min_gap_s: float = 0.2
    min_duration_s: float = 0.0


DEFAULT_CONTACT = ContactOptions()


@dataclass
class ContactTrace:
    """The contact score of every frame set of a recording, and what else was read.

    Attributes:
        times_s: Set times (camera stamp), seconds from the bag's start: (N,).
        scores: `ContactState.score` of each set (0 for the reference set): (N,).
        threshold: The threshold used (automatic or given).
        outcomes: (seconds from the bag's start, success) of each outcome message.
        outcome_topic: The bag topic the outcomes came from (None without).
    """

    times_s: np.ndarray
    scores: np.ndarray
    threshold: float
    outcomes: list[tuple[float, bool]]
    outcome_topic: str | None = None

    @property
    def in_contact(self) -> np.ndarray:
        """Per set, what the node publishes on `convitac/contact` with this threshold: (N,)."""
        return self.scores > self.threshold


def contact_trace(bag: str | Path, *, camera_topic: str | None = None,
                  tactile_topics: Sequence[str] | None = None,
                  num_tactile: int | None = None, outcome_topic: str | None = None,
                  options: ContactOptions = DEFAULT_CONTACT,
                  progress: bool = True) -> ContactTrace:
    """Score the contact of every frame set of a recording as the node does.

    The recording is read set by set; only the score of each set is kept, so memory does not
    grow with the images.

    Args:
        bag: The recording.
        camera_topic: Camera topic (`convitac_ros.bags.topic_mapping` rules).
        tactile_topics: Tactile topics (None: the defaults, as many as the bag has).
        num_tactile: Tactile sensors required (None: all found).
        outcome_topic: A std_msgs/Bool topic of grasp outcomes to read along.
        options: Threshold and episode rules.
        progress: Show a progress bar.

    Raises:
        BagError: Missing or corrupt bag, no usable topics, or an outcome topic that is not
            in the bag or never publishes.
        ValueError: Fewer sets than `rest_frames` for an automatic threshold.
    """
    detector = ContactDetector()
    # A set costs its score and its time (16 bytes): a recording of any length fits.
    scores, times = array.array('d'), array.array('d')
    outcome = None
    if outcome_topic is not None:
        with BagReader(bag) as reader:
            outcome = resolve_outcome_topic(reader.info().topics, outcome_topic, bag)
    with SetStream(bag, num_tactile, camera_topic=camera_topic, tactile_topics=tactile_topics,
                   read_truth=False, other_topics=[outcome] if outcome else ()) as stream, \
            tqdm(total=stream.camera_messages, unit='set', desc='contact',
                 disable=not progress) as bar:
        for frame_set, _ in stream:
            thumbnails = [thumbnail(message_to_rgb(msg)) for msg in frame_set.msgs[1:]]
            scores.append(detector.update_thumbnails(thumbnails, 0.0).score)
            times.append((frame_set.stamp_ns - stream.start_ns) / 1e9)
            bar.update(1)
        outcomes = [((r.time_ns - stream.start_ns) / 1e9, bool(r.decode().data))
                    for r in stream.others]
    scores_array, times_array = np.frombuffer(scores), np.frombuffer(times)
    threshold = options.threshold
    if threshold is None:
        if len(scores) < max(options.rest_frames, 2):
            raise ValueError(f'{bag}: {len(scores)} frame sets; --threshold auto needs at '
                             f'least --rest-frames {max(options.rest_frames, 2)}')
        threshold = float(scores_array[:options.rest_frames].max()) + options.min_contrast
    return ContactTrace(times_array, scores_array, float(threshold), outcomes, outcome)


def resolve_outcome_topic(topics: dict[str, tuple[str, int]], wanted: str,
                          bag: str | Path) -> str:
    """The bag topic of the grasp outcomes (`convitac_ros.bags.topic_mapping` name rules).

    Raises:
        BagError: No such std_msgs/Bool topic, several, or one without messages.
    """
    found = [t for t, (msgtype, _) in topics.items()
             if msgtype == OUTCOME_TYPE and topic_matches(t, wanted)]
    if len(found) > 1:
        raise BagError(f'{bag}: outcome topic {wanted} matches {sorted(found)}; give the full '
                       'name')
    if not found:
        bools = sorted(t for t, (msgtype, _) in topics.items() if msgtype == OUTCOME_TYPE)
        raise BagError(f'{bag}: no {OUTCOME_TYPE} topic {wanted} (its Bool topics: '
                       f'{bools or "none"})')
    if topics[found[0]][1] == 0:
        raise BagError(f'{bag}: outcome topic {found[0]} never publishes (0 messages)')
    return found[0]


def find_episodes(trace: ContactTrace, min_gap_s: float = 0.2,
                  min_duration_s: float = 0.0) -> list[Episode]:
    """Contact episodes: runs of sets in contact, joined across short gaps, long enough.

    Args:
        trace: The recording's contact scores.
        min_gap_s: Episodes closer than this are joined.
        min_duration_s: Shorter episodes are dropped.
    """
    runs: list[list[int]] = []
    for index in np.flatnonzero(trace.in_contact):
        if runs and trace.times_s[index] - trace.times_s[runs[-1][-1]] <= min_gap_s:
            runs[-1].append(int(index))
        else:
            runs.append([int(index)])
    episodes = [Episode(float(trace.times_s[r[0]]), float(trace.times_s[r[-1]]), len(r),
                        float(trace.scores[r].max())) for r in runs]
    return [e for e in episodes if e.end_s - e.start_s >= min_duration_s]


def outcome_rows(trace: ContactTrace, episodes: Sequence[Episode], where: str
                 ) -> list[tuple[float, float, dict[str, str]]]:
    """One labels row per outcome message: the contact episode before it, up to the message.

    Args:
        trace: The recording's contact scores and outcomes.
        episodes: Its contact episodes.
        where: The bag, for messages.

    Returns:
        (start_s, end_s, {'grasp_success': 'success' | 'failure'}) per outcome, in time order.

    Raises:
        LabelsError: An outcome with no contact episode before it, or two outcomes for one
            episode.
    """
    rows: list[tuple[float, float, dict[str, str]]] = []
    claimed: dict[int, float] = {}
    for when, success in sorted(trace.outcomes):
        before = [k for k, e in enumerate(episodes) if e.start_s < when]
        if not before:
            raise LabelsError(f'{where}: outcome on {trace.outcome_topic} at {when:.3f} s has no '
                              'contact episode before it (no tactile contact since the start)')
        episode = before[-1]
        if episode in claimed:
            raise LabelsError(
                f'{where}: outcomes on {trace.outcome_topic} at {claimed[episode]:.3f} s and '
                f'{when:.3f} s both follow the contact episode at '
                f'{episodes[episode].start_s:.3f} s with no contact between them')
        claimed[episode] = when
        sets = trace.times_s[(trace.times_s >= episodes[episode].start_s)
                             & (trace.times_s <= min(episodes[episode].end_s, when))
                             & trace.in_contact]
        rows.append((float(sets[0]), float(sets[-1]),
                     {GRASP_HEAD: 'success' if success else 'failure'}))
    return rows


def label_bag(bag: str | Path, *, camera_topic: str | None = None,
              tactile_topics: Sequence[str] | None = None, num_tactile: int | None = None,
              outcome_topic: str | None = None, options: ContactOptions = DEFAULT_CONTACT,
              progress: bool = True
              ) -> tuple[ContactTrace, list[Episode], list[tuple[float, float, dict[str, str]]]]:
    """Find a recording's contact episodes, and with an outcome topic its labelled grasps.

    Returns:
        The contact trace, the episodes, and the rows to write (one per episode, empty labels;
        or one per outcome with `grasp_success`).

    Raises:
        BagError: As `contact_trace`.
        LabelsError: Outcomes that do not fit the episodes (`outcome_rows`).
        ValueError: Too few frame sets for an automatic threshold.
    """
    trace = contact_trace(bag, camera_topic=camera_topic, tactile_topics=tactile_topics,
                          num_tactile=num_tactile, outcome_topic=outcome_topic, options=options,
                          progress=progress)
    episodes = find_episodes(trace, options.min_gap_s, options.min_duration_s)
    if outcome_topic is None:
        return trace, episodes, [(e.start_s, e.end_s, {}) for e in episodes]
    return trace, episodes, outcome_rows(trace, episodes, str(bag))


def add_contact_arguments(parser: argparse.ArgumentParser) -> None:
    """The contact options of every tool that finds contact episodes in a recording."""
    parser.add_argument('--threshold', default=str(NODE_THRESHOLD), metavar='GREY|auto',
                        help='contact score (grey levels) above which a set is in contact; the '
                        "default is the node's contact_threshold default; auto: from the rest "
                        'frames (see the description)')
    parser.add_argument('--rest-frames', type=int, default=5,
                        help='--threshold auto: leading frame sets that show the untouched gel')
    parser.add_argument('--min-contrast', type=float, default=0.5,
                        help='--threshold auto: least rise above the rest level that counts')
    parser.add_argument('--min-gap', type=float, default=0.2,
                        help='seconds: closer episodes are joined')
    parser.add_argument('--min-duration', type=float, default=0.0,
                        help='seconds: shorter episodes are dropped')


def contact_options(args: argparse.Namespace) -> ContactOptions:
    """The parsed `add_contact_arguments`.

    Raises:
        ValueError: A threshold that is neither a number nor `auto`.
    """
    if args.threshold == 'auto':
        threshold = None
    else:
        try:
            threshold = float(args.threshold)
        except ValueError:
            raise ValueError(f'--threshold must be a number of grey levels or auto, got '
                             f'{args.threshold!r}') from None
    return ContactOptions(threshold, args.rest_frames, args.min_contrast, args.min_gap,
                          args.min_duration)


def build_parser() -> argparse.ArgumentParser:
    """Command-line interface of `convitac_label`."""
    parser = argparse.ArgumentParser(
        prog='convitac_label', description=__doc__.split('\n\n')[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument('bag', help='the recording (rosbag2 folder)')
    parser.add_argument('--output', '-o', required=True, help='labels file to create (CSV)')
    add_topic_arguments(parser)
    parser.add_argument('--heads', default=None,
                        help=f'comma-separated label columns, any of {", ".join(HEADS)} '
                        '(default: material,hardness,roughness; grasp_success with '
                        '--outcome-topic)')
    parser.add_argument('--outcome-topic', metavar='TOPIC',
                        help='std_msgs/Bool grasp outcomes (one per grasp, after it): fill in '
                        'grasp_success for the contact episode before each')
    add_contact_arguments(parser)
    parser.add_argument('--quiet', action='store_true', help='no progress bar')
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `convitac_label`."""
    args = build_parser().parse_args(argv)
    try:
        default = GRASP_HEAD if args.outcome_topic else 'material,hardness,roughness'
        heads = [h.strip() for h in (args.heads or default).split(',') if h.strip()]
        if args.outcome_topic and GRASP_HEAD not in heads:
            raise LabelsError(f'--outcome-topic fills the {GRASP_HEAD} column: add it to --heads')
        check_output_file(args.output, inputs=[args.bag])
        trace, episodes, rows = label_bag(
            args.bag, camera_topic=args.camera_topic, tactile_topics=args.tactile_topic,
            outcome_topic=args.outcome_topic, options=contact_options(args),
            progress=not args.quiet)
        what = ('grasps labelled by ' + trace.outcome_topic + ' (check them)'
                if args.outcome_topic else 'contact episodes (fill in the labels)')
        write_labels(args.output, heads, rows,
                     comment=f'{what} of {args.bag}, found by convitac_label with contact '
                     f'threshold {trace.threshold:.3f}\n'
                     'times: seconds from the start of the bag (inclusive)')
    except (BagError, ValueError, OSError) as exc:
        print(f'convitac_label: error: {exc}', file=sys.stderr)
        return 1
    note = ('' if args.threshold != 'auto' else
            f'; contact threshold {trace.threshold:.3f} (give the node contact_threshold:='
            f'{trace.threshold:.3f} so that convitac/contact agrees)')
    if args.outcome_topic:
        print(f'{len(rows)} grasp(s) ({sum(r[2][GRASP_HEAD] == "success" for r in rows)} '
              f'successes) of {len(episodes)} contact episode(s) written to {args.output}'
              + note)
    else:
        print(f'{len(episodes)} contact episode(s) written to {args.output}; fill in the '
              'labels' + note)
    return 0


if __name__ == '__main__':
    sys.exit(main())
