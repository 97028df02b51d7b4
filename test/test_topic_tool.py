"""convitac_topic lists, echoes and reads /diagnostics of a real node over real DDS."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

from node_harness import image, random_checkpoint, running_node
import numpy as np
import pytest

from convitac_ros.ros import topic_tool

TOOL = [sys.executable, '-m', 'convitac_ros.ros.topic_tool']
HEADS = {'material': ['Wood', 'Rock'], 'hardness': ['hard', 'soft']}


def run_tool(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([*TOOL, *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope='module')
def node_and_probe(tmp_path_factory):
    folder = tmp_path_factory.mktemp('topic_tool')
    checkpoint = random_checkpoint(folder / 'random.safetensors', HEADS)
    parameters = {'checkpoint': str(checkpoint), 'device': 'cpu', 'warmup_iterations': 1,
                  'qos_reliability': 'reliable', 'process_every_pair': True,
                  'diagnostics_period': 0.5}
    with running_node(parameters, folder / 'node.log', list(HEADS)) as running:
        yield running


def test_list_names_the_node_outputs_with_their_types(node_and_probe):
    result = run_tool('list', '--wait', '5')
    assert result.returncode == 0, result.stderr
    assert '/convitac/result  [std_msgs/msg/String]' in result.stdout
    assert '/convitac/material/label  [std_msgs/msg/String]' in result.stdout
    assert '/diagnostics  [diagnostic_msgs/msg/DiagnosticArray]' in result.stdout


def test_diagnostics_prints_the_node_status_and_its_values(node_and_probe):
    result = run_tool('diagnostics', '--timeout', '20')
    assert result.returncode == 0, result.stderr
    assert 'convitac_node: inference' in result.stdout
    assert 'device: cpu' in result.stdout


def test_echo_prints_the_results_the_node_publishes(node_and_probe):
    _, probe = node_and_probe
    rng = np.random.default_rng(0)
    stop = threading.Event()

    def publish() -> None:
        while not stop.is_set():
            stamp = time.time_ns()
            frame = rng.integers(0, 256, size=(64, 64, 3), dtype=np.uint8)
            probe.publish([image(frame, stamp), image(frame, stamp)])
            time.sleep(0.1)

    thread = threading.Thread(target=publish, daemon=True)
    thread.start()
    try:
        result = run_tool('echo', 'convitac/material/label', '-n', '2', '--timeout', '30')
    finally:
        stop.set()
        thread.join()
    assert result.returncode == 0, result.stderr
    labels = [line for line in result.stdout.splitlines() if line != '---']
    assert len(labels) == 2 and set(labels) <= set(HEADS['material'])


def test_echo_of_a_topic_nobody_publishes_is_one_line_and_exit_1():
    result = run_tool('echo', '/nobody/publishes/this', '--wait', '1', '--timeout', '1')
    assert result.returncode == 1
    assert result.stderr.strip().count('\n') == 0
    assert 'no publisher of /nobody/publishes/this' in result.stderr


def test_message_class_refuses_names_that_are_not_message_types():
    assert topic_tool.message_class('std_msgs/msg/String').__name__ == 'String'
    with pytest.raises(ValueError, match='not a message type'):
        topic_tool.message_class('std_msgs/String')
    with pytest.raises(ValueError, match='not installed'):
        topic_tool.message_class('no_such_pkg/msg/Thing')
