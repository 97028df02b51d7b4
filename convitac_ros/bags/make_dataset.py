"""`convitac_make_dataset`: labelled recordings -> a training dataset (Touch and Go layout).

Each bag is paired as the node pairs it (`SetStream`) and written set by set, so a recording
of any length needs memory for one set and the synchronizer's queue only. Every synchronized
set becomes one frame pair of a session (one session per recording, so that splits by session
are splits by recording), and every set inside a labelled interval of the bag's labels file
becomes a sample. Sets in contact (found as the node finds it: `ContactDetector` against the
recording's first tactile frame, the node's default `contact_threshold`) are listed in
`label.txt` as -2 (`UNLABELLED_CONTACT`), the others as -1, so that stage 1 learns from every
contact set, labelled or not; `--unlabelled` recordings add only such frames (no labels file).
The layout is the one `convitac_ros.data.TouchAndGo` reads, so training needs no new loader::

    DIR/category_reference.txt        material classes (`<name>: <index>`)
    DIR/label.txt                     every frame of every session (sequence context)
    DIR/train.txt, DIR/test.txt       `<session>/<frame>.png,<material index>` per sample
    DIR/train_rough.txt, test_rough   the same for roughness (0 smooth, 1 rough), when labelled
    DIR/<session>/video_frame/<frame>.png, DIR/<session>/gelsight_frame/<frame>.png
    DIR/dataset.yaml                  the `data` section for `training/train.py --config`

The loader's sequences are the preceding frames of the session, so a sample's frames are the
node's window at that set. Frames are stored as PNG: the pixels the node would see, also for
JPEG-compressed recordings. Hard/soft is a property of the material in this layout: the
materials labelled soft are written into `dataset.yaml` (`soft_materials`), and a material
labelled both hard and soft is refused. The layout holds one tactile sensor and no grasp
outcome. The last `--val-recordings` bags go to `test.txt` and validate the run
(recording-disjoint); evaluate on recordings kept out of the dataset altogether.

Grasp recordings (two fingers, labelled with `grasp_success` in the labels files or by
`--outcome-topic`) are written in the Feeling of Success layout instead:
`convitac_ros.bags.grasp_dataset`.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
import shutil
import sys

import cv2
import numpy as np
from tqdm import tqdm
import yaml

from convitac_ros.bags.bagfile import BagError
from convitac_ros.bags.contact_episodes import add_contact_arguments, contact_options
from convitac_ros.bags.grasp_dataset import is_grasp_labels, make_grasp_dataset
from convitac_ros.bags.labels_file import LabelsError, LabelsFile, read_labels
from convitac_ros.bags.samples import label_at, no_label_error, session_name, SetStream
from convitac_ros.bags.topic_mapping import add_topic_arguments, one_tactile_topic
from convitac_ros.data.sample import HARDNESS_CLASSES, ROUGHNESS_CLASSES
from convitac_ros.data.touch_and_go import parse_reference_line, UNLABELLED_CONTACT
from convitac_ros.fileio import atomic_write_text
from convitac_ros.output_paths import check_new_folder, make_new_folder
from convitac_ros.ros.contact import CONTACT_THRESHOLD, ContactDetector

UNSUPPORTED_HEADS = ('grasp_success',)
CONFIG_FILE = 'dataset.yaml'


@dataclass
class DatasetSummary:
    """What was written.

    Attributes:
        root: The dataset folder.
        sessions: Session -> (split, frames, samples).
        materials: Material classes in index order.
        soft_materials: Materials labelled soft.
        task: `material` or `roughness` (which list defines the samples).
        contact_frames: Frame sets in contact (stage 1's frames), labelled or not.
    """

    root: Path
    sessions: dict[str, tuple[str, int, int]] = field(default_factory=dict)
    materials: list[str] = field(default_factory=list)
    soft_materials: list[str] = field(default_factory=list)
    task: str = 'material'
    contact_frames: int = 0


def material_classes(labels: Sequence[LabelsFile], classes_from: dict[str, list[str]] | None
                     ) -> list[str]:
    """The material class list: a checkpoint's (so its head is reused) or first-use order.

    Raises:
        LabelsError: A labelled material is not among the checkpoint's classes.
    """
    used: list[str] = []
    for file in labels:
        used += [name for name in file.classes().get('material', []) if name not in used]
    for file in labels:
        for row in file.rows:
            name = row.labels.get('material')
            if name is not None and parse_reference_line(f'{name}: 0') != (name, 0):
                raise LabelsError(f'{file.path}:{row.line}: material {name!r} cannot be kept in '
                                  'category_reference.txt (no quotes at its ends); rename it')
    if classes_from is None or 'material' not in classes_from:
        return used
    known = list(classes_from['material'])
    unusable = [name for name in known if parse_reference_line(f'{name}: 0') != (name, 0)]
    if unusable:
        raise LabelsError(f'the checkpoint material class {unusable[0]!r} cannot be kept in '
                          'category_reference.txt (no quotes at its ends)')
    for file in labels:
        for row in file.rows:
            name = row.labels.get('material')
            if name is not None and name not in known:
                raise LabelsError(f'{file.path}:{row.line}: material {name!r} is not a class of '
                                  f'the checkpoint (it has {", ".join(known)})')
    return known


def soft_materials(labels: Sequence[LabelsFile]) -> list[str]:
    """Materials labelled soft, checking that each material has one hardness.

    Raises:
        LabelsError: Hardness without material, or a material labelled hard and soft.
    """
    hardness_of: dict[str, tuple[str, str]] = {}
    for file in labels:
        for row in file.rows:
            hardness = row.labels.get('hardness')
            if hardness is None:
                continue
            where = f'{file.path}:{row.line}'
            if hardness not in HARDNESS_CLASSES:
                raise LabelsError(f'{where}: hardness {hardness!r} is not one of '
                                  f'{HARDNESS_CLASSES}')
            material = row.labels.get('material')
            if material is None:
                raise LabelsError(f'{where}: hardness without material; in the Touch and Go '
                                  'layout hardness follows from the material')
            seen = hardness_of.setdefault(material, (hardness, where))
            if seen[0] != hardness:
                raise LabelsError(f'{where}: {material} is {hardness} here and {seen[0]} at '
                                  f'{seen[1]}; the layout gives a material one hardness')
    return sorted(m for m, (h, _) in hardness_of.items() if h == 'soft')


def check_heads(labels: Sequence[LabelsFile]) -> str:
    """The layout's task for these labels (`material` or `roughness`).

    Raises:
        LabelsError: A head the layout cannot hold, a bad roughness, or nothing to train on.
    """
    if not labels:  # unlabelled recordings only: frames for stage 1
        return 'material'
    heads = {h for file in labels for h in file.heads}
    for file in labels:
        unsupported = [h for h in file.heads if h in UNSUPPORTED_HEADS]
        if unsupported:
            raise LabelsError(f'{file.path}: head(s) {unsupported} cannot be written in the '
                              'Touch and Go layout (material, hardness, roughness)')
        for row in file.rows:
            rough = row.labels.get('roughness')
            if rough is not None and rough not in ROUGHNESS_CLASSES:
                raise LabelsError(f'{file.path}:{row.line}: roughness {rough!r} is not one of '
                                  f'{ROUGHNESS_CLASSES}')
    if 'material' in heads:
        return 'material'
    if 'roughness' in heads:
        return 'roughness'
    raise LabelsError('the labels files label neither material nor roughness: nothing to train')


def write_frame(path: Path, rgb: np.ndarray) -> None:
    """Store a uint8 RGB frame as PNG (lossless)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), np.ascontiguousarray(rgb[..., ::-1])):
        raise OSError(f'cannot write {path}')


def make_dataset(bags: Sequence[str | Path], labels: Sequence[str | Path], output: str | Path,
                 *, camera_topic: str | None = None, tactile_topic: str | None = None,
                 val_recordings: int = 0, classes_from: dict[str, list[str]] | None = None,
                 progress: bool = True, unlabelled: Sequence[str | Path] = (),
                 contact_threshold: float = CONTACT_THRESHOLD) -> DatasetSummary:
    """Write labelled recordings as a Touch and Go layout dataset (see the module docstring).

    Args:
        bags: The recordings.
        labels: One labels file per bag, in the same order.
        output: Folder to create (must not exist).
        camera_topic: Camera topic (mapping rules of `convitac_ros.bags.topic_mapping`).
        tactile_topic: The tactile topic (one sensor).
        val_recordings: The last this many bags form the `test` split, used for validation.
        classes_from: A checkpoint's heads: its material class order is kept.
        progress: Show a progress bar.
        unlabelled: Recordings without labels (their contact frames, training split only).
        contact_threshold: Contact score threshold (the node's ``contact_threshold``).

    Returns:
        What was written.

    Raises:
        BagError: A bag is missing, corrupt or lacks the topics.
        LabelsError: A labels file is bad, does not fit the layout or covers no frame.
        ValueError: Bad arguments or an existing output.
    """
    output = check_new_folder(output, inputs=[*bags, *labels, *unlabelled])
    if len(bags) != len(labels) or not (bags or unlabelled):
        raise ValueError(f'give one labels file per bag: {len(bags)} bag(s), '
                         f'{len(labels)} labels file(s)')
    if val_recordings and not 0 <= val_recordings < len(bags):
        raise ValueError(f'--val-recordings must leave at least one of the {len(bags)} '
                         f'recordings for training, got {val_recordings}')
    files = [read_labels(path) for path in labels]
    task = check_heads(files)
    summary = DatasetSummary(output, materials=material_classes(files, classes_from),
                             soft_materials=soft_materials(files), task=task)
    make_new_folder(output)  # exclusively: a folder that appeared meanwhile is refused
    recordings = [*zip(bags, files), *((bag, None) for bag in unlabelled)]
    try:
        _write(recordings, summary, camera_topic, tactile_topic, val_recordings, progress,
               contact_threshold)
    except BaseException:
        shutil.rmtree(output, ignore_errors=True)  # made above by this call, and only it
        raise
    return summary


def _write(recordings: Sequence[tuple[str | Path, LabelsFile | None]], summary: DatasetSummary,
           camera_topic: str | None, tactile_topic: str | None, val_recordings: int,
           progress: bool, contact_threshold: float) -> None:
    """Writes the recordings set by set (a recording is never held in memory as a whole)."""
    root = summary.root
    lists: dict[str, list[str]] = {name: [] for name in
                                   ('label', 'train', 'test', 'train_rough', 'test_rough')}
    index_of = {name: i for i, name in enumerate(summary.materials)}
    tactile = None if tactile_topic is None else [tactile_topic]
    labelled_bags = sum(file is not None for _, file in recordings)
    for number, (bag, file) in enumerate(recordings):
        split = 'test' if labelled_bags - val_recordings <= number < labelled_bags else 'train'
        session = session_name(number, Path(bag))
        folder, count, labelled, offset = root / session, 0, 0, None
        contact = ContactDetector()
        with SetStream(bag, 1, camera_topic=camera_topic, tactile_topics=tactile,
                       read_truth=False) as stream, \
                tqdm(total=stream.camera_messages, unit='frame', desc=session,
                     disable=not progress) as bar:
            for frame_set, _ in stream:
                camera, touch = frame_set.rgb()[:2]
                frame = f'{count:06d}.png'
                write_frame(folder / 'video_frame' / frame, camera)
                write_frame(folder / 'gelsight_frame' / frame, touch)
                entry = f'{session}/{frame}'
                touching = contact.update([touch], contact_threshold).in_contact
                lists['label'].append(f'{entry},{UNLABELLED_CONTACT if touching else -1}')
                summary.contact_frames += touching
                offset = frame_set.stamp_ns - stream.start_ns
                row = None if file is None else label_at(file, offset)
                point = {} if row is None else row.labels
                labelled += row is not None
                if 'material' in point:
                    lists[split].append(f'{entry},{index_of[point["material"]]}')
                if 'roughness' in point:
                    lists[f'{split}_rough'].append(
                        f'{entry},{ROUGHNESS_CLASSES.index(point["roughness"])}')
                count += 1
                bar.update(1)
        if file is not None and not labelled:
            raise no_label_error(file, offset)
        summary.sessions[session] = (split, count, labelled)
    for name, lines in lists.items():
        if lines:
            atomic_write_text(root / f'{name}.txt', '\n'.join(lines))
    atomic_write_text(root / 'category_reference.txt',
                      ''.join(f'{name}: {i}\n' for i, name in enumerate(summary.materials)))
    data = {'dataset': 'touch_and_go', 'root': str(root.resolve()), 'train_split': 'train',
            'val_split': 'test' if val_recordings else 'holdout', 'test_split': 'test',
            'options': {'task': summary.task, 'soft_materials': summary.soft_materials}}
    atomic_write_text(
        root / CONFIG_FILE,
        '# Written by convitac_make_dataset: the data section for training/train.py --config\n'
        + yaml.safe_dump({'name': root.name, 'data': data}, sort_keys=False))


def build_parser() -> argparse.ArgumentParser:
    """Command-line interface of `convitac_make_dataset`."""
    parser = argparse.ArgumentParser(
        prog='convitac_make_dataset', description=__doc__.split('\n\n')[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument('bags', nargs='*', metavar='BAG', help='labelled recordings (rosbag2 '
                        'folders)')
    parser.add_argument('--labels', nargs='+', default=[], metavar='FILE',
                        help='one labels file per bag, same order')
    parser.add_argument('--outcome-topic', metavar='TOPIC',
                        help='grasps: std_msgs/Bool outcome published once after each grasp; '
                        'it labels the contact episode before it (in place of --labels)')
    parser.add_argument('--unlabelled', nargs='+', default=[], metavar='BAG',
                        help='recordings nobody labelled: their contact frames for stage 1 '
                        '(train.py --init-from CHECKPOINT --stage1)')
    parser.add_argument('--output', '-o', required=True, help='dataset folder to create')
    add_topic_arguments(parser)
    parser.add_argument('--val-recordings', type=int, default=0,
                        help='the last N recordings form the test split that validates '
                        'training (0: a seeded holdout of the training frames)')
    parser.add_argument('--classes-from', metavar='CHECKPOINT',
                        help="keep this checkpoint's material class order (its head is then "
                        'reused by train.py --init-from)')
    add_contact_arguments(parser)
    parser.add_argument('--quiet', action='store_true', help='no progress bar')
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `convitac_make_dataset`."""
    args = build_parser().parse_args(argv)
    try:
        if args.outcome_topic or (args.labels and is_grasp_labels(
                [read_labels(path) for path in args.labels])):
            return _grasp_main(args)
        if not args.labels and not args.unlabelled:
            raise ValueError('label the recordings: --labels FILE ... (one per bag) or, for '
                             'grasps, --outcome-topic TOPIC; or give --unlabelled BAG ...')
        threshold = contact_options(args).threshold
        if threshold is None:
            raise ValueError('--threshold auto finds grasp episodes; a material dataset needs '
                             "the node's contact_threshold as a number (default "
                             f'{CONTACT_THRESHOLD:g})')
        tactile_topic = one_tactile_topic(args, 'the Touch and Go layout holds one tactile '
                                          'sensor')
        classes = None
        if args.classes_from:
            from convitac_ros.checkpoint import read_metadata

            classes = read_metadata(args.classes_from)['heads']
        summary = make_dataset(
            args.bags, args.labels, args.output, camera_topic=args.camera_topic,
            tactile_topic=tactile_topic, val_recordings=args.val_recordings, classes_from=classes,
            progress=not args.quiet, unlabelled=args.unlabelled,
            contact_threshold=threshold)
    except (BagError, ValueError, OSError) as exc:
        print(f'convitac_make_dataset: error: {exc}', file=sys.stderr)
        return 1
    samples = sum(s for _, _, s in summary.sessions.values())
    frames = sum(f for _, f, _ in summary.sessions.values())
    print(f'wrote {samples} labelled samples ({frames} frames, {summary.contact_frames} in '
          f'contact) from {len(summary.sessions)} recording(s) to {summary.root}; train with: '
          f'python training/train.py --config finetune {summary.root / CONFIG_FILE} '
          f'--init-from CHECKPOINT [--stage1]')
    return 0


def _grasp_main(args: argparse.Namespace) -> int:
    """`main` for grasp recordings (`convitac_ros.bags.grasp_dataset`)."""
    summary = make_grasp_dataset(
        args.bags, args.labels, args.output, camera_topic=args.camera_topic,
        tactile_topics=args.tactile_topic, outcome_topic=args.outcome_topic,
        contact=contact_options(args), val_recordings=args.val_recordings,
        progress=not args.quiet)
    grasps = sum(g for *_, g in summary.sessions.values())
    print(f'wrote {summary.successes + summary.failures} grasp trials ({summary.successes} '
          f'success, {summary.failures} failure) of {grasps} grasps from '
          f'{len(summary.sessions)} recording(s) to {summary.root} (Feeling of Success layout); '
          f'train with: python training/train.py --config demo {summary.root / CONFIG_FILE}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
