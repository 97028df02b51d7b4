"""A team's recording, written the way `ros2 bag record` writes it, with plain `rosbags` code.

Fully qualified topic names (a namespace or the team's driver names), rosbag2 version 9 mcap as
Jazzy records it, rosbags' own CDR serializer (not rclpy), log time = receive time a little after
the header stamp, the camera JPEG-compressed on `<topic>/compressed` (image_transport), tactile
sensors raw, an unrelated topic in between. Each touch is a synthetic sample's press-in frames
(held on the last one) between rest periods in which the gel is untouched. Grasp recordings
(`write_recording(..., outcome_topic=...)` with Feeling of Success samples) hold each grasp's
`during` frames on both fingers and publish its outcome (std_msgs/Bool, as a lift check would)
just after the grasp.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import get_typestore, Stores

from convitac_ros.data import Sample
from convitac_ros.data.synthetic.render import gelsight, TACTILE_SHAPE, to_uint8

NS = 1_000_000_000
START_NS = 1_760_000_000 * NS
FPS = 15


@dataclass
class Recording:
    """What was written.

    Attributes:
        ticks: Per tick, (camera stamp ns, camera RGB as the node decodes it, tactile RGBs).
        rows: Labels-file rows (start_s, end_s, head -> class) of the touches, seconds from the
            bag's first log time.
        touch_ticks: Tick indices inside a touch.
        outcomes: (log time ns, success) of each outcome message written.
    """

    ticks: list[tuple[int, np.ndarray, list[np.ndarray]]]
    rows: list[tuple[float, float, dict[str, str]]]
    touch_ticks: list[int]
    outcomes: list[tuple[int, bool]]


def rest_frame(seed: int) -> np.ndarray:
    """An untouched GelSight image (no indentation, its own sensor noise), uint8 RGB."""
    rng = np.random.default_rng(seed)
    return to_uint8(gelsight(rng, np.zeros(TACTILE_SHAPE, np.float32)))


def write_recording(path: Path, samples: list[Sample], heads: dict[str, list[str]],
                    camera: str, tactile: list[str], hold: int = 4, rest: int = 3, lead: int = 10,
                    label_heads: tuple[str, ...] = ('material', 'hardness'),
                    outcome_topic: str | None = None, touch_from: int = 0,
                    truth_namespace: str | None = None) -> Recording:
    """Write a recording of `samples` as touches; return its ticks and its labels rows.

    Args:
        path: Bag directory to create.
        samples: One touch each; its tactile streams feed the tactile topics in order (with one
            stream, the second sensor sees it mirrored).
        heads: Class names of the samples' labels.
        camera: Camera topic (JPEG on `<camera>/compressed`).
        tactile: Tactile topics (raw rgb8), one per sensor.
        hold: Ticks per touch.
        rest: Untouched ticks before each touch and after the last.
        lead: More untouched ticks at the start of the recording.
        label_heads: Heads written into the rows.
        outcome_topic: Also write each touch's `grasp_success` as a std_msgs/Bool on this
            topic, 40 ms after its last tick.
        touch_from: First frame of a sample's sequences that is in contact (1 for Feeling of
            Success samples: their first frame is `before`).
        truth_namespace: Also write ground truth (std_msgs/String) of `label_heads` at every
            touch tick on `<namespace>/ground_truth/<head>` (absolute names, as recorded).
    """
    store = get_typestore(Stores.ROS2_JAZZY)
    image_t, jpeg_t = store.types['sensor_msgs/msg/Image'], store.types[
        'sensor_msgs/msg/CompressedImage']
    header_t, time_t = store.types['std_msgs/msg/Header'], store.types[
        'builtin_interfaces/msg/Time']
    string_t = store.types['std_msgs/msg/String']
    bool_t = store.types['std_msgs/msg/Bool']

    def header(stamp: int, frame_id: str):
        return header_t(stamp=time_t(sec=stamp // NS, nanosec=stamp % NS), frame_id=frame_id)

    ticks: list[tuple[int, np.ndarray, list[np.ndarray]]] = []
    spans: list[tuple[int, int, dict[str, str]]] = []
    touch_ticks: list[int] = []
    outcomes: list[tuple[int, bool]] = []
    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        cam = writer.add_connection(camera + '/compressed', jpeg_t.__msgtype__, typestore=store)
        tacs = [writer.add_connection(t, image_t.__msgtype__, typestore=store) for t in tactile]
        chatter = writer.add_connection('/chatter', string_t.__msgtype__, typestore=store)
        outcome = (None if outcome_topic is None else
                   writer.add_connection(outcome_topic, bool_t.__msgtype__, typestore=store))

        def tick(visual: np.ndarray, touches: list[np.ndarray]) -> None:
            stamp = START_NS + len(ticks) * (NS // FPS)
            ok, jpeg = cv2.imencode('.jpg', np.ascontiguousarray(visual[..., ::-1]))
            assert ok
            seen = cv2.imdecode(jpeg, cv2.IMREAD_COLOR)[..., ::-1].copy()
            writer.write(cam, stamp + 2_000_000, store.serialize_cdr(
                jpeg_t(header=header(stamp, 'wrist_cam'), format='rgb8; jpeg compressed bgr8',
                       data=jpeg.reshape(-1)), jpeg_t.__msgtype__))
            frames = []
            for k, connection in enumerate(tacs):
                frame = np.ascontiguousarray(touches[k] if k < len(touches)
                                             else touches[0][:, ::-1])
                t_stamp = stamp + 3_000_000 + k * 1_000_000
                writer.write(connection, t_stamp + 1_000_000, store.serialize_cdr(
                    image_t(header=header(t_stamp, f'gel{k}'), height=frame.shape[0],
                            width=frame.shape[1], encoding='rgb8', is_bigendian=0,
                            step=frame.shape[1] * 3, data=frame.reshape(-1)),
                    image_t.__msgtype__))
                frames.append(frame)
            if len(ticks) % 5 == 0:
                writer.write(chatter, stamp + 5_000_000, store.serialize_cdr(
                    string_t(data='hello'), string_t.__msgtype__))
            ticks.append((stamp, seen, frames))

        truths = {} if truth_namespace is None else {
            h: writer.add_connection(f'{truth_namespace.rstrip("/")}/ground_truth/{h}',
                                     string_t.__msgtype__, typestore=store)
            for h in label_heads}

        def untouched() -> list[np.ndarray]:
            return [rest_frame(len(ticks) + 1000 * k) for k in range(len(tactile))]

        for _ in range(lead):
            tick(samples[0].visual[0], untouched())
        for sample in samples:
            for _ in range(rest):
                tick(sample.visual[0], untouched())
            first = len(ticks)
            frames = list(zip(sample.visual[touch_from:],
                              *(stream[touch_from:] for stream in sample.tactile)))
            for k in range(hold):
                visual, *touches = frames[min(k, len(frames) - 1)]
                touch_ticks.append(len(ticks))
                tick(visual, touches)
                for head, connection in truths.items():
                    name = heads[head][sample.labels[head]]
                    writer.write(connection, ticks[-1][0] + 2_500_000, store.serialize_cdr(
                        string_t(data=name), string_t.__msgtype__))
            labels = {h: heads[h][sample.labels[h]] for h in label_heads
                      if sample.labels.get(h, -1) >= 0}
            spans.append((ticks[first][0], ticks[-1][0], labels))
            if outcome is not None:
                success = bool(sample.labels['grasp_success'] == 1)
                when = ticks[-1][0] + 40_000_000
                payload = store.serialize_cdr(bool_t(data=success), bool_t.__msgtype__)
                writer.write(outcome, when, payload)
                outcomes.append((when, success))
        for _ in range(rest):
            tick(samples[-1].visual[-1] if not touch_from else samples[-1].visual[0],
                 untouched())
    origin = START_NS + 2_000_000  # the first log time: the first camera message
    rows = [((a - origin) / NS - 0.02, (b - origin) / NS + 0.02, labels)
            for a, b, labels in spans]
    return Recording(ticks, rows, touch_ticks, outcomes)


def labels_csv(path: Path, rows: list[tuple[float, float, dict[str, str]]],
               heads: tuple[str, ...] = ('material', 'hardness')) -> Path:
    """Write `rows` as a labels file."""
    lines = ['# touches of the test recording', ','.join(['start', 'end', *heads])]
    lines += [','.join([f'{a:.3f}', f'{b:.3f}', *(labels.get(h, '') for h in heads)])
              for a, b, labels in rows]
    path.write_text('\n'.join(lines) + '\n')
    return path


# A two-finger gripper under /left_hand as `ros2 bag record` of its drivers stores it.
GRIPPER = {'camera': '/left_hand/wrist_cam/color/image_raw',
           'tactile': ['/left_hand/gelsight_left/image_raw',
                       '/left_hand/gelsight_right/image_raw'],
           'outcome': '/left_hand/lift_check/success', 'truth_namespace': '/left_hand'}


def main() -> None:
    """Write recordings of a synthetic world, with their true labels files.

    Usage (the walkthroughs of the README and docs/grasp.md):

    - ``python test/recording_helpers.py DATA_ROOT OUTPUT [TOUCHES ...]``: touches of a
      Touch-and-Go-layout world's test split; ``OUTPUT/session_a``, ``session_b``, ... (one per
      count; default 60 and 30 touches) as the team's drivers would be recorded, and
      ``session_*.truth.csv``, the labels a team would type in (docs/own_data.md).
    - ``python test/recording_helpers.py --grasp DATA_ROOT OUTPUT [GRASPS_A GRASPS_B
      GRASPS_C]``: grasps of a Feeling-of-Success-layout world (all its trials) by a two-finger
      gripper (`GRIPPER`: a JPEG camera, two raw GelSights, the lift check's std_msgs/Bool
      after each grasp, ground truth on ``/left_hand/ground_truth/grasp_success``);
      ``OUTPUT/session_a``, ``session_b``, ``session_c`` and their ``.truth.csv``.
    """
    import string
    import sys

    from convitac_ros.data import build_dataset

    args = sys.argv[1:]
    grasp = args[:1] == ['--grasp']
    args = args[1:] if grasp else args
    root, output = Path(args[0]), Path(args[1])
    counts = [int(n) for n in args[2:]] or ([120, 40, 60] if grasp else [60, 30])
    world = build_dataset('feeling_of_success' if grasp else 'touch_and_go', root,
                          'all' if grasp else 'test')
    if sum(counts) > len(world):
        raise SystemExit(f'{root} has {len(world)} samples, {sum(counts)} asked for')
    output.mkdir(parents=True)
    start = 0
    for letter, count in zip(string.ascii_lowercase, counts):
        name = f'session_{letter}'
        part = [world[i] for i in range(start, start + count)]
        start += count
        if grasp:
            recording = write_recording(
                output / name, part, world.heads, GRIPPER['camera'], GRIPPER['tactile'],
                label_heads=('grasp_success',), outcome_topic=GRIPPER['outcome'], touch_from=1,
                truth_namespace=GRIPPER['truth_namespace'])
            labels_csv(output / f'{name}.truth.csv', recording.rows, heads=('grasp_success',))
            successes = sum(r[2]['grasp_success'] == 'success' for r in recording.rows)
            what = f'{count} grasps ({successes} successes)'
        else:
            recording = write_recording(output / name, part, world.heads,
                                        '/wrist_cam/color/image_raw', ['/gsmini/image_raw'])
            labels_csv(output / f'{name}.truth.csv', recording.rows)
            what = f'{count} touches'
        print(f'{output / name}: {what}, {len(recording.ticks)} frames')


if __name__ == '__main__':
    main()
