"""Grasp recordings -> a grasp-success dataset in the Feeling of Success layout.

`convitac_make_dataset` comes here when the recordings are labelled with `grasp_success` (a
labels file with that column, `success`/`failure` or 1/0, one row per grasp) or by an outcome
topic (`--outcome-topic`, std_msgs/Bool after each grasp:
`convitac_ros.bags.contact_episodes`). Each
recording has a camera and two tactile streams (the fingers of a two-finger gripper, default
`tactile/image_raw` and `tactile_b/image_raw`), paired as the node pairs them
(`SetStream`). Every frame set inside a labelled grasp becomes one trial of the Feeling of
Success loader (`convitac_ros.data.FeelingOfSuccess`, no new loader)::

    DIR/<session>.h5        one per recording: /data/i0, /data/i1, ... one group per trial,
                            attributes object_name (`<session>/grasp<k>`, the grasp) and
                            is_gripping (the label); datasets kinectA_rgb_before|during,
                            gelsightA_before|during, gelsightB_before|during (uint8 RGB)
    DIR/dataset.yaml        the `data` section for `training/train.py --config`

`during` is the set itself and `before` the set before it, so a trial's frames are the node's
window of two sets at that set (with sequence length 1 the loader reads `during` only). The
sets of one grasp are one "object" for the loader: validation holds out whole grasps (the
`holdout` split) or whole recordings (`--val-recordings`: their grasps are the loader's
`test_objects`). Trials are written as the bag is read, so memory does not depend on the length
of a recording.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
import shutil

import h5py
import numpy as np
from tqdm import tqdm
import yaml

from convitac_ros.bags.contact_episodes import (
    ContactOptions,
    DEFAULT_CONTACT,
    GRASP_HEAD,
    label_bag,
)
from convitac_ros.bags.labels_file import LabelRow, LabelsError, LabelsFile, read_labels
from convitac_ros.bags.samples import label_at, no_label_error, session_name, SetStream
from convitac_ros.data.feeling_of_success import CAMERA, SENSORS
from convitac_ros.output_paths import check_new_folder, make_new_folder

CONFIG_FILE = 'dataset.yaml'
NUM_FINGERS = len(SENSORS)


@dataclass
class GraspSummary:
    """What was written.

    Attributes:
        root: The dataset folder.
        sessions: Session -> (split, frame sets, trials, grasps).
        successes: Trials labelled success.
        failures: Trials labelled failure.
    """

    root: Path
    sessions: dict[str, tuple[str, int, int, int]] = field(default_factory=dict)
    successes: int = 0
    failures: int = 0


def is_grasp_labels(files: Sequence[LabelsFile]) -> bool:
    """Whether labels files label grasps (and must be written in this layout)."""
    return any(GRASP_HEAD in file.heads for file in files)


def check_grasp_labels(files: Sequence[LabelsFile]) -> None:
    """Refuse labels files that mix grasp outcomes with other heads (one layout per dataset).

    Raises:
        LabelsError: Naming the file and the other heads.
    """
    for file in files:
        others = [h for h in file.heads if h != GRASP_HEAD]
        if GRASP_HEAD not in file.heads or others:
            raise LabelsError(f'{file.path}: a grasp dataset is labelled with grasp_success '
                              f'only (the Feeling of Success layout); this file has '
                              f'{list(file.heads)}')


def outcome_labels(bag: str | Path, outcome_topic: str, camera_topic: str | None,
                   tactile_topics: Sequence[str] | None, options: ContactOptions,
                   progress: bool) -> LabelsFile:
    """A recording's grasps labelled by its outcome topic, as a labels file in memory.

    Raises:
        BagError: Missing topics, or an outcome topic that never publishes.
        LabelsError: An outcome with no contact before it, or two for one episode.
    """
    _, _, rows = label_bag(bag, camera_topic=camera_topic, tactile_topics=tactile_topics,
                           num_tactile=NUM_FINGERS, outcome_topic=outcome_topic,
                           options=options, progress=progress)
    return LabelsFile(Path(f'{bag} ({outcome_topic})'), (GRASP_HEAD,),
                      tuple(LabelRow(k + 1, start, end, labels)
                            for k, (start, end, labels) in enumerate(rows)))


def write_grasp_dataset(bags: Sequence[str | Path], files: Sequence[LabelsFile],
                        output: str | Path, *, camera_topic: str | None = None,
                        tactile_topics: Sequence[str] | None = None, val_recordings: int = 0,
                        progress: bool = True) -> GraspSummary:
    """Write labelled grasp recordings in the Feeling of Success layout (module docstring).

    Args:
        bags: The recordings.
        files: One grasp labels file per bag (read from disk or from `outcome_labels`).
        output: Folder to create (must not exist).
        camera_topic: Camera topic (`convitac_ros.bags.topic_mapping` rules).
        tactile_topics: The two finger sensors' topics (None: the defaults).
        val_recordings: The last this many bags validate the run (recording-disjoint).
        progress: Show a progress bar.

    Raises:
        BagError: A bag is missing, corrupt or lacks the camera or a finger.
        LabelsError: A labels file covers no frame set of its bag.
        ValueError: Bad arguments or an existing output.
    """
    output = check_new_folder(output, inputs=bags)
    check_grasp_labels(files)
    summary = GraspSummary(output)
    make_new_folder(output)  # exclusively: a folder that appeared meanwhile is refused
    try:
        test_objects: list[str] = []
        names = []
        for number, (bag, file) in enumerate(zip(bags, files)):
            split = 'test' if number >= len(bags) - val_recordings else 'train'
            session = session_name(number, Path(bag))
            objects = _write_recording(bag, file, output / f'{session}.h5', session, split,
                                       summary, camera_topic, tactile_topics, progress)
            names.append(f'{session}.h5')
            if split == 'test':
                test_objects += objects
        data = {'dataset': 'feeling_of_success', 'root': str(output.resolve()),
                'train_split': 'train', 'val_split': 'test' if val_recordings else 'holdout',
                'test_split': 'test', 'options': {'files': names, 'test_objects': test_objects}}
        (output / CONFIG_FILE).write_text(
            '# Written by convitac_make_dataset: the data section for training/train.py '
            '--config\n' + yaml.safe_dump({'name': output.name, 'data': data},
                                          sort_keys=False))
    except BaseException:
        shutil.rmtree(output, ignore_errors=True)
        raise
    return summary


def _write_recording(bag: str | Path, file: LabelsFile, path: Path, session: str, split: str,
                     summary: GraspSummary, camera_topic: str | None,
                     tactile_topics: Sequence[str] | None, progress: bool) -> list[str]:
    """Write one recording's trials into one HDF5 file; return its grasps (object names)."""
    trials, sets, grasps, offset = 0, 0, [], None
    previous: list[np.ndarray] | None = None
    with SetStream(bag, NUM_FINGERS, camera_topic=camera_topic, tactile_topics=tactile_topics,
                   read_truth=False) as stream, \
            h5py.File(path, 'w', libver='earliest') as handle, \
            tqdm(total=stream.camera_messages, unit='set', desc=session,
                 disable=not progress) as bar:
        data = handle.create_group('data')
        for frame_set, _ in stream:
            offset = frame_set.stamp_ns - stream.start_ns
            row = label_at(file, offset)
            sets += 1
            bar.update(1)
            frames = frame_set.rgb()
            before, previous = (frames if previous is None else previous), frames
            if row is None or GRASP_HEAD not in row.labels:
                continue
            grasp = f'{session}/grasp{row.line:03d}'
            if grasp not in grasps:
                grasps.append(grasp)
            success = row.labels[GRASP_HEAD] == 'success'
            group = data.create_group(f'i{trials}')
            group.attrs['object_name'] = np.bytes_(grasp)
            group.attrs['is_gripping'] = np.bool_(success)
            for phase, images in (('before', before), ('during', frames)):
                for key, image in zip((CAMERA, *SENSORS), images):
                    group.create_dataset(f'{key}_{phase}', data=image, compression='gzip',
                                         compression_opts=1, track_times=False)
            trials += 1
            summary.successes += success
            summary.failures += not success
    if not trials:
        raise no_label_error(file, offset)
    summary.sessions[session] = (split, sets, trials, len(grasps))
    return grasps


def make_grasp_dataset(bags: Sequence[str | Path], labels: Sequence[str | Path] | None,
                       output: str | Path, *, camera_topic: str | None = None,
                       tactile_topics: Sequence[str] | None = None,
                       outcome_topic: str | None = None,
                       contact: ContactOptions = DEFAULT_CONTACT, val_recordings: int = 0,
                       progress: bool = True) -> GraspSummary:
    """Label grasp recordings (labels files or an outcome topic) and write them (module doc).

    Everything is checked, and the outcome topics read, before the folder is created.

    Raises:
        BagError, LabelsError, ValueError: As `write_grasp_dataset` and `outcome_labels`.
    """
    labels = labels or None  # no labels files given: an empty list from the command line
    output = check_new_folder(output, inputs=[*bags, *(labels or [])])
    if (labels is None) == (outcome_topic is None):
        raise ValueError('label the grasps with --labels (one file per bag) or with '
                         '--outcome-topic, one of the two')
    if labels is not None and len(labels) != len(bags):
        raise ValueError(f'give one labels file per bag: {len(bags)} bag(s), {len(labels)} '
                         'labels file(s)')
    if not bags or not 0 <= val_recordings < len(bags):
        raise ValueError(f'--val-recordings must leave at least one of the {len(bags)} '
                         f'recordings for training, got {val_recordings}')
    if tactile_topics is not None and len(tactile_topics) != NUM_FINGERS:
        raise ValueError(f'a grasp dataset has {NUM_FINGERS} fingers: give --tactile-topic '
                         f'twice (got {len(tactile_topics)})')
    if labels is not None:
        files = [read_labels(path) for path in labels]
    else:
        files = [outcome_labels(bag, outcome_topic, camera_topic, tactile_topics, contact,
                                progress) for bag in bags]
    return write_grasp_dataset(bags, files, output, camera_topic=camera_topic,
                               tactile_topics=tactile_topics, val_recordings=val_recordings,
                               progress=progress)
