"""A robot's world over real DDS (loopback): large camera frames, a GelSight Mini, two hands.

Real convitac_node processes, real publishers in this process, the shipped Fast DDS profile
(config/fastdds.xml) loaded by both sides, as the README asks of every process on a robot.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
import sys
import time

from node_harness import image, NodeProcess, Probe, status_values, wait_until
import numpy as np
import pytest
from sensor_msgs.msg import Image

from convitac_ros.ros.dds_profile import PROFILE_VARIABLES, use_fastdds_profile

ROOT = Path(__file__).resolve().parents[1]
GELSIGHT = ROOT / 'config' / 'sensors' / 'gelsight_mini.yaml'


@pytest.fixture
def profile():
    """This process and the node processes it starts load the shipped profile."""
    with pytest.MonkeyPatch.context() as patch:
        for name in PROFILE_VARIABLES:
            patch.delenv(name, raising=False)
        added = use_fastdds_profile()
        assert set(added) == set(PROFILE_VARIABLES)
        for name in PROFILE_VARIABLES:  # undone by the patch context afterwards
            patch.setenv(name, os.environ[name])
        yield added


@pytest.fixture(scope='module')
def predictor(tiny_checkpoint):
    from convitac_ros.inference import Predictor

    return Predictor.from_checkpoint(tiny_checkpoint, device='cpu')


def start(tiny_checkpoint, tmp_path, name='node', params=None, **kwargs):
    values = {'checkpoint': str(tiny_checkpoint), 'device': 'cpu', 'warmup_iterations': 1,
              'process_every_pair': True, 'diagnostics_period': 0.5} | (params or {})
    return NodeProcess(values, tmp_path / f'{name}.log', **kwargs)


def stop(node):
    code = node.stop()
    text = node.log()
    assert 'Traceback' not in text, text
    assert code == 0, text


# A camera driver's process: Fast DDS reads its profile when a process creates its first
# participant, so the large frames come from a process started with the profile, as on a robot
# (this test process has made participants before, without it).
CAMERA_DRIVER = """
import json, sys, time
import numpy as np
import rclpy
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image
from convitac_ros.ros.image_messages import image_message
rclpy.init()
node = rclpy.create_node('camera_driver')
publishers = [node.create_publisher(Image, topic, qos_profile_sensor_data)
              for topic in ('/camera/image_raw', '/tactile/image_raw')]
while not all(p.get_subscription_count() for p in publishers):
    time.sleep(0.05)
time.sleep(float(sys.argv[1]))  # the node's side matches too
rng = np.random.default_rng(1)
big = rng.integers(0, 256, size=(480, 640, 3), dtype=np.uint8)
small = rng.integers(0, 256, size=(240, 320, 3), dtype=np.uint8)
stamps = []
for _ in range(90):
    stamp = time.time_ns()
    publishers[0].publish(image_message(big, stamp))
    publishers[1].publish(image_message(small, stamp, frame_id='tactile'))
    stamps.append(stamp)
    time.sleep(1 / 30)
print(json.dumps(stamps), flush=True)
time.sleep(1.0)
node.destroy_node()
rclpy.shutdown()
"""


def test_large_best_effort_camera_at_30_hz_is_answered_without_transport_loss(
        profile, tiny_checkpoint, predictor, tmp_path):
    node = start(tiny_checkpoint, tmp_path)
    probe = Probe(list(predictor.heads), num_tactile=0)
    driver = None
    try:
        wait_until(lambda: probe.result_subscription.get_publisher_count() > 0, 60,
                   'the node never published results')
        driver = NodeProcess({}, tmp_path / 'driver.log',
                             command=[sys.executable, '-c', CAMERA_DRIVER, '2.0'])
        assert driver.wait(120) == 0, driver.log()
        stamps = json.loads(driver.log().strip().splitlines()[-1])
        answerable = set(stamps[1:])  # the first set only fills the two-set window
        wait_until(lambda: len(answerable & {r['stamp_ns'] for r in list(probe.results)})
                   >= 0.95 * len(answerable), 30, 'fewer than 95 % of the pairs answered')
        values = status_values(probe.next_status(timeout=5))
        assert values['camera/image_raw lost in transport'] == '0', values
        assert values['tactile/image_raw lost in transport'] == '0', values
    finally:
        if driver is not None:
            driver.stop()
        probe.close()
        stop(node)


def test_gelsight_mini_8uc3_bgr_zero_stamps_with_the_preset_equals_the_predictor(
        profile, tiny_checkpoint, predictor, tmp_path):
    node = start(tiny_checkpoint, tmp_path, params_files=(GELSIGHT,))
    probe = Probe(list(predictor.heads))
    try:
        tactile = probe.node.create_publisher(Image, '/gsmini/image', 10)
        probe.publishers = [probe.publishers[0], tactile]
        probe.wait_for_subscribers(timeout=60)
        rng = np.random.default_rng(2)
        cams = [rng.integers(0, 256, size=(64, 64, 3), dtype=np.uint8) for _ in range(12)]
        bgr = [rng.integers(0, 256, size=(240, 320, 3), dtype=np.uint8) for _ in range(12)]
        stamps = []
        for cam, tac in zip(cams, bgr):
            stamp = time.time_ns()
            probe.publish([image(cam, stamp), image(tac, 0, encoding='8UC3')])
            stamps.append(stamp)
            time.sleep(1 / 20)
        wait_until(lambda: set(stamps[1:]) <= {r['stamp_ns'] for r in list(probe.results)},
                   30, 'not every GelSight pair was answered')
        by_stamp = {r['stamp_ns']: r for r in list(probe.results)}
        for i in range(1, len(stamps)):
            expected = predictor.predict(cams[i - 1:i + 1],
                                         [[f[:, :, ::-1] for f in bgr[i - 1:i + 1]]])
            for head, probabilities in expected.items():
                np.testing.assert_allclose(
                    by_stamp[stamps[i]]['heads'][head]['probabilities'], probabilities,
                    atol=1e-4)
        status = probe.next_status(timeout=5)
        values = status_values(status)
        # Only the first set is dropped (it fills the two-set window): nothing fails to convert.
        assert values['dropped total'] == values.get('dropped window_filling', '0') == '1', values
        assert values['/gsmini/image zero stamps'] == str(len(stamps)), values
        # The preset says this driver publishes zero stamps: counted, but no standing WARN.
        assert 'zero stamps' not in status.message, status.message
    finally:
        probe.close()
        stop(node)


def test_two_hands_in_two_namespaces_have_their_own_diagnostics_and_topics(
        tiny_checkpoint, predictor, tmp_path):
    hands = [start(tiny_checkpoint, tmp_path, name=hand, namespace=f'/{hand}')
             for hand in ('left_hand', 'right_hand')]
    probe = Probe(list(predictor.heads), node='/left_hand/convitac_node')
    try:
        names: set[str] = set()
        hardware: set[str] = set()

        def both_reported() -> bool:
            for status in probe.node_statuses():
                names.add(status.name)
                hardware.add(status.hardware_id)
            return {'/left_hand/convitac_node: inference',
                    '/right_hand/convitac_node: inference'} <= names

        wait_until(both_reported, 60, f'diagnostics of both hands, got {names}')
        assert all(h and h != 'none' for h in hardware)
        wait_until(lambda: {'/left_hand/convitac/result', '/right_hand/convitac/result',
                            '/left_hand/convitac/contact', '/right_hand/convitac/contact'}
                   <= {n for n, _ in probe.node.get_topic_names_and_types()},
                   30, 'both hands publish their own outputs')
        subscribed = {n for n, _ in probe.node.get_topic_names_and_types()}
        assert {'/left_hand/camera/image_raw', '/right_hand/tactile/image_raw'} <= subscribed
        assert '/convitac/result' not in subscribed
    finally:
        probe.close()
        for hand in hands:
            stop(hand)
