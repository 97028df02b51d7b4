"""Two tactile sensors over compressed transport: tactile_b, grasp_success, debug image.

This node takes its images through the executor (``direct_input: false``), the fallback path.
"""

from __future__ import annotations

import time

import cv2
from node_harness import random_checkpoint, running_node, wait_until
import numpy as np
import pytest
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Float32

HEADS = {'grasp_success': ['failure', 'success'], 'hardness': ['hard', 'soft']}


@pytest.fixture(scope='module')
def two_sensor_checkpoint(tmp_path_factory):
    """A real (randomly initialised) two-sensor checkpoint written by save_checkpoint."""
    return random_checkpoint(tmp_path_factory.mktemp('two_sensors') / 'two_sensors.safetensors',
                             HEADS, num_tactile=2, visual_len=1, tactile_len=1)


@pytest.fixture(scope='module')
def running(two_sensor_checkpoint, tmp_path_factory):
    parameters = {'checkpoint': str(two_sensor_checkpoint), 'device': 'cpu',
                  'image_transport': 'compressed', 'qos_reliability': 'reliable',
                  'publish_debug_image': True, 'process_every_pair': True,
                  'warmup_iterations': 1, 'direct_input': False}
    log = tmp_path_factory.mktemp('node_two') / 'convitac_node.log'
    with running_node(parameters, log, list(HEADS), num_tactile=2, compressed=True,
                      wait=False, check_exit=False) as (node, probe):
        probe.extra = {'debug': [], 'success': []}
        probe.node.create_subscription(Image, '/convitac/debug_image',
                                       probe.extra['debug'].append, 10)
        probe.node.create_subscription(Float32, '/convitac/grasp_success/probability',
                                       lambda m: probe.extra['success'].append(m.data), 10)
        probe.wait_for_subscribers(timeout=60)
        yield node, probe


def compressed(pixels: np.ndarray, stamp_ns: int, ext: str = '.png') -> CompressedImage:
    ok, data = cv2.imencode(ext, np.ascontiguousarray(pixels[:, :, ::-1]))
    assert ok
    msg = CompressedImage(format=ext[1:].replace('jpg', 'jpeg'), data=data.tobytes())
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
    msg.header.frame_id = 'camera'
    return msg


def test_three_compressed_inputs_give_the_predictor_answer(running, two_sensor_checkpoint):
    from convitac_ros.inference import Predictor

    node, probe = running
    predictor = Predictor.from_checkpoint(two_sensor_checkpoint, device='cpu')
    rng = np.random.default_rng(0)
    sent = {}
    for _ in range(4):
        stamp = time.time_ns()
        frames = [rng.integers(0, 256, (48 + 8 * k, 64, 3), dtype=np.uint8) for k in range(3)]
        probe.publish([compressed(f, stamp) for f in frames])
        sent[stamp] = frames
        time.sleep(0.1)
    wait_until(lambda: set(sent) <= {r['stamp_ns'] for r in list(probe.results)}, 20,
               'results for every set')
    results = {r['stamp_ns']: r for r in list(probe.results)}
    for stamp, (cam, tac_a, tac_b) in sent.items():
        want = predictor.predict([cam], [[tac_a], [tac_b]])
        for head in HEADS:
            np.testing.assert_allclose(results[stamp]['heads'][head]['probabilities'],
                                       want[head], atol=2e-6)
    wait_until(lambda: len(probe.extra['success']) >= 4, 10, 'grasp_success/probability')
    last = results[max(sent)]['heads']['grasp_success']['probabilities'][1]
    assert probe.extra['success'][-1] == pytest.approx(last, abs=1e-6)


def test_jpeg_input_is_decoded(running):
    node, probe = running
    rng = np.random.default_rng(1)
    stamp = time.time_ns()
    probe.publish([compressed(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8), stamp, '.jpg')
                   for _ in range(3)])
    wait_until(lambda: stamp in {r['stamp_ns'] for r in list(probe.results)}, 10, 'jpeg result')


def test_debug_image_shows_the_three_frames_with_the_input_stamp(running):
    node, probe = running
    wait_until(lambda: probe.extra['debug'], 10, 'a debug image')
    picture = probe.extra['debug'][-1]
    stamps = {r['stamp_ns'] for r in list(probe.results)}
    stamp = picture.header.stamp.sec * 1_000_000_000 + picture.header.stamp.nanosec
    assert stamp in stamps and picture.header.frame_id == 'camera'
    assert picture.encoding == 'rgb8' and picture.height > 240
    assert picture.width >= 3 * 240  # camera and two tactile panels, 240 px high each


def test_a_best_effort_publisher_the_reliable_node_cannot_hear_is_reported(running):
    from node_harness import status_values
    from rclpy.qos import QoSProfile, ReliabilityPolicy

    node, probe = running
    extra = probe.node.create_publisher(
        CompressedImage, '/camera/image_raw/compressed',
        QoSProfile(depth=5, reliability=ReliabilityPolicy.BEST_EFFORT))
    try:
        def reported():
            status = probe.next_status()
            return 'cannot connect' in status.message and status_values(status)[
                'camera/image_raw publishers (matched)'] == '2 (1)'

        wait_until(reported, 15, 'a WARN naming the unmatched publisher')
    finally:
        probe.node.destroy_publisher(extra)
    wait_until(lambda: status_values(probe.next_status())[
        'camera/image_raw publishers (matched)'] == '1 (1)', 15, 'the count back to 1 (1)')
