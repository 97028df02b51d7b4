"""convitac_ros.ros.node_client: the one DDS set-up rule, the node process, the image builder."""

import os
from pathlib import Path
import subprocess
import sys

import numpy as np
import pytest

from convitac_ros.ros.image_conversion import compressed_to_rgb, image_to_rgb
from convitac_ros.ros.image_messages import compressed_message, image_message
from convitac_ros.ros.node_client import parse_result
from convitac_ros.ros.node_process import NodeProcess

SHOW = ('from convitac_ros.ros.node_process import loopback_dds; import os, sys; '
        'loopback_dds(int(sys.argv[1]) if len(sys.argv) > 1 else None); '
        'print(os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"], os.environ["ROS_DOMAIN_ID"], '
        'os.environ.get("ROS_LOCALHOST_ONLY", "-"), os.environ["HF_HUB_OFFLINE"])')


def _show(env_extra: dict[str, str], *args: str) -> list[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith('ROS_')}
    env.update(env_extra)
    return subprocess.run([sys.executable, '-c', SHOW, *args], capture_output=True, text=True,
                          env=env, check=True, timeout=60).stdout.split()


def test_loopback_dds_picks_a_private_domain_when_none_is_set():
    shown = _show({})
    assert shown[0] == 'LOCALHOST' and shown[3] == '1' and shown[2] == '-'
    assert 1 <= int(shown[1]) <= 100


def test_loopback_dds_keeps_the_callers_domain_and_an_explicit_one_wins():
    assert _show({'ROS_DOMAIN_ID': '42'})[1] == '42'
    assert _show({'ROS_DOMAIN_ID': '42'}, '7')[1] == '7'


def test_loopback_dds_private_ignores_the_shells_domain():
    code = ('from convitac_ros.ros.node_process import loopback_dds; import os; '
            'loopback_dds(private=True); print(os.environ["ROS_DOMAIN_ID"])')
    env = dict(os.environ, ROS_DOMAIN_ID='42')
    shown = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, env=env,
                           check=True, timeout=60).stdout.strip()
    assert shown != '42' and 1 <= int(shown) <= 100


def test_loopback_dds_forces_loopback_even_when_the_caller_chose_subnet():
    shown = _show({'ROS_AUTOMATIC_DISCOVERY_RANGE': 'SUBNET', 'ROS_LOCALHOST_ONLY': '0'})
    assert shown[0] == 'LOCALHOST' and shown[2] == '-'
    assert _show({'ROS_DISTRO': 'humble'})[2] == '1'


def test_image_message_round_trips_through_the_node_conversion():
    pixels = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    msg = image_message(pixels, 1_500_000_123)
    assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == (1, 500_000_123)
    np.testing.assert_array_equal(image_to_rgb(msg), pixels)
    png = compressed_message(pixels, 0, fmt='png')
    np.testing.assert_array_equal(compressed_to_rgb(png), pixels)


def test_parse_result_reads_stamp_labels_and_latency():
    answer = parse_result('{"stamp_ns": 12, "heads": {"material": {"label": "Rock"}}, '
                          '"latency_ms": 3.5}', 1.0)
    assert (answer.stamp_ns, answer.labels, answer.node_latency_ms) == (12, {'material': 'Rock'},
                                                                        3.5)
    with pytest.raises(ValueError):
        parse_result('[1, 2]', 1.0)


def test_node_process_logs_and_stops_a_command_with_sigint(tmp_path: Path):
    code = ('import signal, sys, time\n'
            'print("up", flush=True)\n'
            'signal.signal(signal.SIGINT, lambda *a: sys.exit(0))\n'
            'time.sleep(60)\n')
    process = NodeProcess({'x': True}, tmp_path / 'log.txt',
                          command=[sys.executable, '-c', code, 'ignored'])
    assert process.command[-3:] == ['--ros-args', '-p', 'x:=true']
    deadline = 0
    while 'up' not in process.log() and deadline < 500:
        deadline += 1
        subprocess.run(['sleep', '0.02'], check=True)
    assert process.alive()
    assert process.stop() == 0
    assert 'up' in (tmp_path / 'log.txt').read_text()
