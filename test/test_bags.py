"""Bag writing, reading, pairing and replay.

Bags written by `convitac_make_bag` (mcap and sqlite3) read back message for message; bags from
another writer (plain `rosbags`, bgr8 with padded rows) pair like the node pairs them; missing
and corrupt bags give clear errors; the replayer keeps the recorded pace over real DDS.
"""

import os
import signal
import subprocess
import sys
import threading
import time

from bag_helpers import HEADS, make_samples, NS, write_foreign_bag
import numpy as np
import pytest
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import Image

from convitac_ros.bags import make_bag
from convitac_ros.bags.bagfile import BagError, BagReader, read_records
from convitac_ros.bags.make_bag import BagLayout, write_bag
from convitac_ros.bags.replay import BagPlayer, ReplayOptions
from convitac_ros.bags.samples import evaluation_points, index_bag, SetStream, StreamFacts
from convitac_ros.ros.image_conversion import compressed_to_rgb, image_to_rgb


@pytest.mark.parametrize('storage', ['mcap', 'sqlite3'])
def test_make_bag_reads_back_message_for_message(tmp_path, storage):
    samples = make_samples(4, num_tactile=2)
    layout = write_bag(samples, HEADS, tmp_path / 'bag', BagLayout(fps=20.0), storage,
                       progress=False)
    records = read_records(tmp_path / 'bag')
    # 2 ticks x 3 image topics per sample, material for all, hardness for the even ones.
    assert len(records) == 4 * 2 * 3 + 4 + 2
    assert layout.ticks_per_sample == 2 and layout.num_tactile == 2
    period = NS // 20
    images = [r for r in records if r.topic.endswith('image_raw')]
    expected = []
    for k, sample in enumerate(samples):
        for i in range(2):
            stamp = layout.start_ns + (2 * k + i) * period
            expected += [('camera/image_raw', stamp, sample.visual[i]),
                         ('tactile/image_raw', stamp, sample.tactile[0][i]),
                         ('tactile_b/image_raw', stamp, sample.tactile[1][i])]
    assert sorted((r.topic, r.time_ns) for r in images) == sorted(e[:2] for e in expected)
    by_key = {(r.topic, r.time_ns): r for r in images}
    for topic, stamp, frame in expected:
        msg = by_key[(topic, stamp)].decode()
        assert msg.header.stamp.sec * NS + msg.header.stamp.nanosec == stamp
        assert msg.encoding == 'rgb8' and msg.step == frame.shape[1] * 3
        np.testing.assert_array_equal(image_to_rgb(msg), frame)
    truth = {(r.topic, r.time_ns): r.decode().data for r in records if 'ground_truth' in r.topic}
    for k in range(len(samples)):
        last = layout.start_ns + (2 * k + 1) * period
        assert truth[('ground_truth/material', last)] == HEADS['material'][k % 3]
        assert (('ground_truth/hardness', last) in truth) == (k % 2 == 0)
    with BagReader(tmp_path / 'bag') as bag:
        info = bag.info()
    assert info.layout['heads'] == HEADS and info.layout['fps'] == 20.0


def test_short_streams_repeat_their_first_frame_so_windows_end_aligned(tmp_path):
    samples = make_samples(2, visual_len=1, tactile_len=3)
    write_bag(samples, HEADS, tmp_path / 'bag', progress=False)
    cameras = [r.decode() for r in read_records(tmp_path / 'bag', ['camera/image_raw'])]
    assert len(cameras) == 6
    for k, sample in enumerate(samples):
        for msg in cameras[3 * k:3 * k + 3]:
            np.testing.assert_array_equal(image_to_rgb(msg), sample.visual[0])


@pytest.mark.parametrize('camera,tactile,compression', [
    ('bgr8', 'mono8', 'none'), ('rgb8', 'bgr8', 'png'), ('bgr8', 'mono8', 'jpeg')])
def test_encodings_decode_to_the_original_frames(tmp_path, camera, tactile, compression):
    samples = make_samples(1)
    layout = BagLayout(camera_encoding=camera, tactile_encoding=tactile, compression=compression)
    write_bag(samples, HEADS, tmp_path / 'bag', layout, progress=False)
    records = read_records(tmp_path / 'bag')
    suffix = '' if compression == 'none' else '/compressed'
    topics = {r.topic for r in records}
    assert {'camera/image_raw' + suffix, 'tactile/image_raw' + suffix} <= topics
    convert = image_to_rgb if compression == 'none' else compressed_to_rgb
    cam = convert(next(r for r in records if r.topic.startswith('camera')).decode())
    tac = convert(next(r for r in records if r.topic.startswith('tactile')).decode())
    gray = samples[0].tactile[0][0].astype(float) @ [0.299, 0.587, 0.114]
    if compression == 'jpeg':  # lossy: close on average only
        assert np.abs(cam.astype(float) - samples[0].visual[0]).mean() < 60
        assert np.abs(tac[..., 0] - gray).mean() < 60
        return
    np.testing.assert_array_equal(cam, samples[0].visual[0])
    if tactile == 'mono8':
        assert np.abs(tac[..., 0] - gray).max() <= 1 and (tac[..., 0] == tac[..., 2]).all()
    else:
        np.testing.assert_array_equal(tac, samples[0].tactile[0][0])


def test_foreign_bag_pairs_into_the_node_windows(tmp_path):
    samples = make_samples(5, visual_len=3, tactile_len=3)
    stamps = write_foreign_bag(tmp_path / 'foreign', samples)
    facts = StreamFacts()
    with SetStream(tmp_path / 'foreign') as stream:
        points = list(evaluation_points(stream, 3, facts=facts))
        assert stream.topics == ['camera/image_raw', 'tactile/image_raw']
        assert stream.images == 2 * stream.sets == 30 and facts.unmatched_truth == 0
    assert [stamp for stamp, _, _ in points] == stamps
    for (_, labels, window), sample in zip(points, samples):
        frames = [s.rgb() for s in window]
        for (cam, tac), visual, tactile in zip(frames, sample.visual, sample.tactile[0]):
            np.testing.assert_array_equal(cam, visual)
            np.testing.assert_array_equal(tac, tactile)
        assert labels == {h: HEADS[h][k] for h, k in sample.labels.items() if k >= 0}
    index = index_bag(tmp_path / 'foreign')  # the replay's view: the same sets and points
    assert len(index.set_stamps) == 15 and index.unpaired == 0
    assert [p.stamp_ns for p in index.points] == stamps
    assert [index.set_stamps[p.set_index] for p in index.points] == stamps


def test_missing_bag_is_a_clear_error(tmp_path):
    with pytest.raises(BagError, match='does not exist'):
        read_records(tmp_path / 'nowhere')


@pytest.mark.parametrize('storage', ['mcap', 'sqlite3'])
def test_corrupt_bag_is_a_clear_error(tmp_path, storage):
    write_bag(make_samples(3), HEADS, tmp_path / 'bag', storage=storage, progress=False)
    data = next(p for p in (tmp_path / 'bag').iterdir() if p.suffix in ('.mcap', '.db3'))
    blob = data.read_bytes()
    data.write_bytes(blob[:64] + b'\x00garbage' * 50 + blob[len(blob) // 2:])
    with pytest.raises(BagError, match=r'bag .*bag'):
        read_records(tmp_path / 'bag')


def test_garbage_metadata_is_a_clear_error(tmp_path):
    (tmp_path / 'bag').mkdir()
    (tmp_path / 'bag' / 'metadata.yaml').write_text('rosbag2_bagfile_information: [oops')
    with pytest.raises(BagError, match='cannot open bag'):
        read_records(tmp_path / 'bag')


def test_make_bag_cli_refuses_existing_output_and_bad_dataset(tmp_path, capsys):
    (tmp_path / 'bag').mkdir()
    rc = make_bag.main(['--dataset', 'touch_and_go', '--root', str(tmp_path / 'none'),
                        '--output', str(tmp_path / 'bag'), '--quiet'])
    assert rc == 1
    assert 'convitac_make_bag: error:' in capsys.readouterr().err


@pytest.fixture(scope='module')
def ros_node():
    rclpy.init()
    node = rclpy.create_node('test_bags_listener')
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    yield node
    executor.shutdown()
    spinner.join(timeout=5)
    node.destroy_node()
    rclpy.try_shutdown()


def test_replay_publishes_every_message_at_the_recorded_pace(tmp_path, ros_node):
    write_bag(make_samples(10), HEADS, tmp_path / 'bag', BagLayout(fps=20.0), progress=False)
    received: list[tuple[float, int]] = []
    clocks: list[int] = []
    qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
    subs = [ros_node.create_subscription(
        Image, 'camera/image_raw',
        lambda m: received.append((time.monotonic(), m.header.stamp.nanosec)), qos),
        ros_node.create_subscription(
            Clock, '/clock', lambda m: clocks.append(m.clock.sec * NS + m.clock.nanosec), qos)]
    try:
        player = BagPlayer(ros_node, tmp_path / 'bag',
                           ReplayOptions(rate=2.0, start_offset=0.25, clock=True,
                                         topics=['camera/image_raw'], progress=False))
        assert player.wait_for_subscribers(10.0)
        time.sleep(0.5)  # let the publishers match the subscribers both ways
        stats = player.play()
        deadline = time.monotonic() + 5
        while len(received) < 15 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        for sub in subs:
            ros_node.destroy_subscription(sub)
    # 20 camera frames at 20 fps; the offset skips the first 5; rate 2 halves the 0.7 s left.
    assert stats.published['camera/image_raw'] == 15
    assert len(received) == 15
    assert [s for _, s in received] == sorted(s for _, s in received)
    span = received[-1][0] - received[0][0]
    assert 0.25 < span < 0.7, span
    assert 0.33 < stats.wall_s < 1.5
    assert clocks and clocks == sorted(clocks)


def test_replay_refuses_a_bag_without_the_requested_topics(tmp_path, ros_node):
    write_bag(make_samples(1), HEADS, tmp_path / 'bag', progress=False)
    with pytest.raises(BagError, match='none of the topics'):
        BagPlayer(ros_node, tmp_path / 'bag', ReplayOptions(topics=['nope']))


def test_replay_cli_loops_until_interrupted(tmp_path, ros_node):
    write_bag(make_samples(3), HEADS, tmp_path / 'bag', BagLayout(fps=50.0), progress=False)
    stamps: list[int] = []
    qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
    sub = ros_node.create_subscription(
        Image, 'tactile/image_raw',
        lambda m: stamps.append(m.header.stamp.sec * NS + m.header.stamp.nanosec), qos)
    process = subprocess.Popen(
        [sys.executable, '-m', 'convitac_ros.bags.replay', str(tmp_path / 'bag'), '--loop',
         '--quiet', '--wait-for-subscribers', '10', '--topics', 'tactile/image_raw'],
        env=os.environ.copy(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while len(stamps) < 15 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=20)
        ros_node.destroy_subscription(sub)
    assert process.returncode == 0, err
    # 6 frames per pass: the stamps start over at every pass.
    assert len(stamps) >= 15 and stamps[6] == stamps[0] and stamps[:6] == sorted(stamps[:6])


def test_a_failed_write_leaves_no_partial_bag(tmp_path):
    samples = make_samples(3)
    samples[2].tactile.append(samples[2].tactile[0])  # a second sensor the first sample lacks
    with pytest.raises(ValueError, match='sample 2 has 2 tactile sensors'):
        write_bag(samples, HEADS, tmp_path / 'bag', progress=False)
    assert not (tmp_path / 'bag').exists()
