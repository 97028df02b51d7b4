"""Diagnostics levels and contents, the ~/result payload and the debug picture, without ROS."""

from __future__ import annotations

import json

import numpy as np
from std_msgs.msg import Header

from convitac_ros.ros.debug_image import PANEL_HEIGHT, render_debug_image
from convitac_ros.ros.diagnostics import ERROR, Health, health_status, InputHealth, OK, WARN
from convitac_ros.ros.outputs import result_json

HEADS = {'hardness': ['hard', 'soft'], 'material': ['wood', 'metal', 'fabric']}
PROBS = {'hardness': np.array([0.3, 0.7], np.float32),
         'material': np.array([0.1, 0.6, 0.3], np.float32)}


def healthy(**changes) -> Health:
    inputs = [InputHealth('camera/image_raw', 30.0, 300, 0.03, 0, False, 0),
              InputHealth('tactile/image_raw', 30.0, 300, 0.02, 0, False, 0)]
    health = Health(node_name='convitac_node', state='active', model='tiny', device='cpu',
                    checkpoint='/m.safetensors', inputs=inputs, pairing_rate_hz=30.0,
                    inference_rate_hz=29.0, latency_ms={50: 3.0, 95: 4.0, 99: 5.0},
                    age_ms={50: 4.0, 95: 5.0, 99: 6.0}, drops={'queue_full': 2},
                    counts={'pairs': 300}, latency_budget_ms=100.0)
    for key, value in changes.items():
        setattr(health, key, value)
    return health


def values(status) -> dict[str, str]:
    return {kv.key: kv.value for kv in status.values}


def test_healthy_node_is_ok_and_reports_everything():
    status = health_status(healthy())
    assert status.level == OK
    assert status.name == 'convitac_node: inference'
    assert status.message == 'running tiny on cpu' and status.hardware_id == 'cpu'
    v = values(status)
    assert v['camera/image_raw rate (Hz)'] == '30.000'
    assert v['pairing rate (Hz)'] == '30.000' and v['inference rate (Hz)'] == '29.000'
    assert v['latency p50 (ms)'] == '3.000' and v['latency p99 (ms)'] == '5.000'
    assert v['age p95 (ms)'] == '5.000'
    assert v['dropped queue_full'] == '2' and v['dropped total'] == '2'
    assert v['model'] == 'tiny' and v['device'] == 'cpu' and v['pairs'] == '300'


def test_silent_input_warns():
    health = healthy()
    health.inputs[1].silent_s = 3.5
    status = health_status(health)
    assert status.level == WARN and 'tactile/image_raw silent for 3.5 s' in status.message
    health.inputs[1].silent_s = None
    assert 'silent since activation' in health_status(health).message


def test_zero_stamps_warn():
    health = healthy()
    health.inputs[0].zero_stamps, health.inputs[0].recent_zero_stamps = 12, True
    status = health_status(health)
    assert status.level == WARN and 'camera/image_raw has zero stamps (12)' in status.message


def test_latency_over_budget_warns_and_zero_budget_disables():
    status = health_status(healthy(latency_budget_ms=3.5))
    assert status.level == WARN and 'over budget' in status.message
    assert health_status(healthy(latency_budget_ms=0.0)).level == OK


def test_inference_failure_is_an_error_even_with_other_warnings():
    health = healthy(recent_inference_error='RuntimeError: boom')
    health.inputs[0].silent_s = 10.0
    status = health_status(health)
    assert status.level == ERROR
    assert 'inference failed: RuntimeError: boom' in status.message and 'silent' in status.message


def test_inactive_node_does_not_warn_about_inputs():
    status = health_status(healthy(state='inactive', latency_ms=None, inputs=[]))
    assert status.level == OK and status.message == 'inactive'
    assert values(status)['latency p50 (ms)'] == 'n/a'
    failed = health_status(healthy(state='unconfigured', configure_error='no such file'))
    assert failed.level == ERROR and 'configure failed: no such file' in failed.message


def test_result_json_carries_stamp_labels_and_probabilities():
    header = Header(frame_id='cam')
    header.stamp.sec, header.stamp.nanosec = 12, 345
    payload = json.loads(result_json(header, PROBS, HEADS, {'latency_ms': 1.5}))
    assert payload['stamp'] == {'sec': 12, 'nanosec': 345}
    assert payload['stamp_ns'] == 12_000_000_345 and payload['frame_id'] == 'cam'
    assert payload['heads']['hardness'] == {'label': 'soft', 'probabilities': [0.3, 0.7]}
    assert payload['heads']['material']['label'] == 'metal'
    assert payload['latency_ms'] == 1.5


def test_debug_image_puts_frames_side_by_side_above_the_labels():
    camera = np.full((480, 640, 3), 200, np.uint8)
    tactile = np.full((240, 320, 3), 50, np.uint8)
    picture = render_debug_image([camera, tactile], HEADS, PROBS)
    assert picture.dtype == np.uint8 and picture.flags.c_contiguous
    assert picture.shape[1] == 320 + 320  # both panels scaled to PANEL_HEIGHT (240)
    assert picture.shape[0] > PANEL_HEIGHT
    assert picture[:PANEL_HEIGHT, :320].mean() == 200 and picture[:PANEL_HEIGHT, 320:].mean() == 50
    assert picture[PANEL_HEIGHT:].max() == 255  # text drawn


def test_debug_image_blends_attention():
    frame = np.zeros((64, 64, 3), np.uint8)
    attention = np.zeros((64, 64), np.float32)
    attention[:, 32:] = 1.0
    picture = render_debug_image([frame, frame], HEADS, PROBS, [attention, None])
    left, right = picture[:PANEL_HEIGHT, :PANEL_HEIGHT // 2], picture[:PANEL_HEIGHT, -20:]
    assert left.mean() > 0  # the heat map colours even zero attention (blue)
    assert right.max() == 0  # no attention map on the tactile panel


def test_classification_is_published_exactly_where_vision_msgs_imports():
    from importlib.util import find_spec

    from convitac_ros.ros.outputs import has_vision_msgs

    assert has_vision_msgs() == (find_spec('vision_msgs') is not None)


def test_messages_lost_in_transport_warn_while_recent():
    health = healthy()
    health.inputs[0].lost, health.inputs[0].recent_lost = 7, True
    status = health_status(health)
    assert status.level == WARN
    assert 'camera/image_raw lost 7 messages in transport' in status.message
    assert 'config/fastdds.xml' in status.message
    assert values(status)['camera/image_raw lost in transport'] == '7'
    health.inputs[0].recent_lost = False
    assert health_status(health).level == OK


def test_a_publisher_the_node_cannot_connect_to_warns():
    health = healthy()
    health.inputs[1].publishers, health.inputs[1].matched = 2, 1
    status = health_status(health)
    assert status.level == WARN
    assert 'tactile/image_raw has 1 publisher(s) this node cannot connect to' in status.message
    assert values(status)['tactile/image_raw publishers (matched)'] == '2 (1)'
    assert values(status)['camera/image_raw publishers (matched)'] == 'n/a'
    health.inputs[1].matched = 2
    assert health_status(health).level == OK


def test_sequence_gaps_count_lost_messages_and_a_new_publisher_restarts():
    from convitac_ros.ros.node import InputState

    item = InputState('camera/image_raw')
    for sequence in (1, 2, 3, 7, 8, None, 10):  # 4-6 and 9 never arrived; None: no info
        item.count_sequence(sequence, now=1.0)
    assert item.lost == 4 and item.last_lost_s == 1.0
    for sequence in (1, 2, 3):  # a restarted publisher counts from 1 again: nothing lost
        item.count_sequence(sequence, now=2.0)
    assert item.lost == 4 and item.last_sequence == 3
