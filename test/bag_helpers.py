"""Helpers shared by the bag and evaluation tests: frame samples and a bag from another writer."""

from pathlib import Path

import numpy as np
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import get_typestore, Stores

from convitac_ros.data import Sample

HEADS = {'material': ['wood', 'metal', 'foam'], 'hardness': ['hard', 'soft']}
NS = 1_000_000_000


def make_samples(count: int, num_tactile: int = 1, visual_len: int = 2, tactile_len: int = 2,
                 seed: int = 0) -> list[Sample]:
    rng = np.random.default_rng(seed)

    def frames(n, shape):
        return [rng.integers(0, 256, shape, dtype=np.uint8) for _ in range(n)]

    return [Sample(frames(visual_len, (24, 30, 3)),
                   [frames(tactile_len, (16, 20, 3)) for _ in range(num_tactile)],
                   {'material': i % 3, 'hardness': -1 if i % 2 else i % 2},
                   {'index': i})
            for i in range(count)]


def write_foreign_bag(path: Path, samples: list[Sample], pad: int = 7,
                      storage: StoragePlugin = StoragePlugin.SQLITE3,
                      heads: dict[str, list[str]] = HEADS) -> list[int]:
    """Write a bag the way another recorder would, with plain `rosbags` code.

    rosbags' own CDR serializer (not rclpy), bag version 8, bgr8 camera rows padded by `pad`
    bytes, rgb8 tactile stamped 3 ms after the camera, 15 fps, ground truth on the camera stamp
    of each sample's last frame (returned).
    """
    store = get_typestore(Stores.ROS2_HUMBLE)
    image_t, header_t = store.types['sensor_msgs/msg/Image'], store.types['std_msgs/msg/Header']
    time_t, string_t = store.types['builtin_interfaces/msg/Time'], store.types[
        'std_msgs/msg/String']

    def image(frame, stamp, encoding, padding):
        pixels = frame[..., ::-1] if encoding == 'bgr8' else frame
        rows = np.zeros((frame.shape[0], frame.shape[1] * 3 + padding), np.uint8)
        rows[:, :frame.shape[1] * 3] = pixels.reshape(frame.shape[0], -1)
        header = header_t(stamp=time_t(sec=stamp // NS, nanosec=stamp % NS), frame_id='cam')
        return image_t(header=header, height=frame.shape[0], width=frame.shape[1],
                       encoding=encoding, is_bigendian=0, step=rows.shape[1],
                       data=rows.reshape(-1))

    stamps = []
    with Writer(path, version=8, storage_plugin=storage) as writer:
        cam = writer.add_connection('camera/image_raw', image_t.__msgtype__, typestore=store)
        tac = writer.add_connection('tactile/image_raw', image_t.__msgtype__, typestore=store)
        truth = {head: writer.add_connection(f'ground_truth/{head}', string_t.__msgtype__,
                                             typestore=store) for head in heads}
        stamp = 1_650_000_000 * NS
        for sample in samples:
            for visual, tactile in zip(sample.visual, sample.tactile[0]):
                stamp += NS // 15
                writer.write(cam, stamp, store.serialize_cdr(
                    image(visual, stamp, 'bgr8', pad), image_t.__msgtype__))
                writer.write(tac, stamp + 3_000_000, store.serialize_cdr(
                    image(tactile, stamp + 3_000_000, 'rgb8', 0), image_t.__msgtype__))
            stamps.append(stamp)
            for head, label in sample.labels.items():
                if head in heads and label >= 0:
                    writer.write(truth[head], stamp, store.serialize_cdr(
                        string_t(data=heads[head][label]), string_t.__msgtype__))
    return stamps
