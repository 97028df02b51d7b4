"""Hostile and careless use of the node, kept as regression tests against real node processes.

Every case was once a defect: an `.onnx` whose metadata breaks the contract (class names as
numbers, heads as a list, no heads, sizes that would take the machine, no precision), outputs
that are not probabilities (NaN, inf, -50 .. 1e30), a fault in any stage of the inference
thread, topic names that are not ROS names, an activate that failed without a word, a graph
that loops 1e12 times at configure, and a slow SIGINT. One managed node (autostart off, an
onnxruntime model) is driven through the module's tests in file order; start-up cases get
processes of their own. The tools' cases are in test_adversarial_tools.py.
"""

from __future__ import annotations

import os
import signal
import textwrap
import threading
import time

from hostile_onnx import constant_model, HEADS, looping_model, metadata, PREPROCESS
from node_harness import image, NodeProcess, Probe, running_node, status_values, wait_until
import numpy as np
import pytest

from convitac_ros.ros.node_process import NODE_COMMAND

ERROR = b'\x02'
SIZE = PREPROCESS['image_size']
# A failed configure must leave the process small: no torch, no buffers of the declared size.
SMALL_RSS_MIB = 400


@pytest.fixture(scope='module')
def model_dir(tmp_path_factory):
    return tmp_path_factory.mktemp('hostile_onnx')


@pytest.fixture(scope='module')
def managed(tmp_path_factory, model_dir):
    good = constant_model(model_dir / 'good.onnx')
    log = tmp_path_factory.mktemp('adversarial') / 'convitac_node.log'
    parameters = {'autostart': False, 'checkpoint': str(good), 'device': 'cpu',
                  'diagnostics_period': 0.3, 'warmup_iterations': 0}
    with running_node(parameters, log, list(HEADS), wait=False, check_exit=False) as running:
        yield running


def publish_pairs(probe, count, first=None):
    rng = np.random.default_rng(0)
    start = first or time.time_ns()
    for i in range(count):
        frame = rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
        probe.publish([image(frame, start + i * 50_000_000), image(frame, start + i * 50_000_000)])
        time.sleep(0.05)


def error_status(probe, text, timeout=15.0):
    """The first ERROR status of the node whose message contains ``text``."""
    found = []

    def check():
        status = probe.next_status()
        if status.level == ERROR and text in status.message:
            found.append(status)
        return bool(found)

    wait_until(check, timeout, f'/diagnostics ERROR with {text!r}')
    return found[0]


def configure_with(node, probe, path, **parameters):
    """Set the checkpoint (and parameters) and request configure; return its success."""
    for name, value in {'checkpoint': str(path), **parameters}.items():
        assert probe.set_parameter(name, value) == (True, '')
    return probe.transition('configure')


@pytest.mark.parametrize('name,props,field', [
    ('numbers', metadata(heads={'material': [1, 2, 3], 'hardness': ['hard', 'soft']}),
     "heads.material: class name '1'"),
    ('list', metadata(heads=[['material', ['a', 'b']]]), 'heads must map each head name'),
    ('no_heads', metadata(heads={}), 'heads is empty'),
    ('huge', metadata(preprocess=dict(PREPROCESS, image_size=20000)),
     'preprocess.image_size must be an integer in [1, 1024]'),
    ('big', metadata(preprocess=dict(PREPROCESS, image_size=6000)),
     'preprocess.image_size must be an integer in [1, 1024]'),
    ('long', metadata(preprocess=dict(PREPROCESS, visual_len=65)),
     'preprocess.visual_len must be an integer in [0, 64]'),
    ('no_precision', metadata(export={}), 'export.precision must be fp32 or fp16'),
])
def test_a_broken_contract_fails_configure_in_one_line_naming_file_and_field(
        managed, model_dir, name, props, field):
    node, probe = managed
    path = constant_model(model_dir / f'{name}.onnx', props=props)
    assert configure_with(node, probe, path) is False
    status = error_status(probe, field)
    assert str(path) in status.message
    lines = [li for li in node.log().splitlines() if field in li]
    assert lines and all('configure failed' in li for li in lines)
    assert probe.state() == 'unconfigured' and node.alive()
    assert node.rss_mib() < SMALL_RSS_MIB
    assert 'Traceback' not in node.log()


def test_too_many_input_bytes_for_max_batch_are_refused_before_allocation(managed, model_dir):
    node, probe = managed
    path = constant_model(model_dir / 'wide.onnx', props=metadata(
        preprocess=dict(PREPROCESS, image_size=1024, visual_len=32, tactile_len=32)))
    assert configure_with(node, probe, path, max_batch=64) is False
    error_status(probe, 'MiB of input buffers')
    assert node.rss_mib() < SMALL_RSS_MIB
    assert probe.set_parameter('max_batch', 1) == (True, '')


@pytest.mark.parametrize('row', [[float('nan'), 0.5, 0.5], [float('inf'), 0.0, 0.0],
                                 [-50.0, 1e30, 0.0]], ids=['nan', 'inf', 'not_probabilities'])
def test_outputs_that_are_not_probabilities_are_dropped_counted_and_never_published(
        managed, model_dir, row):
    node, probe = managed
    path = constant_model(model_dir / 'bad_outputs.onnx',
                          rows={'material': row, 'hardness': [0.5, 0.5]})
    assert configure_with(node, probe, path) is True  # the file is well-formed
    assert probe.transition('activate') is True
    probe.wait_for_subscribers()
    labels, results = len(probe.labels['material']), probe.result_count()
    publish_pairs(probe, 4)
    status = error_status(probe, 'output: OutputError')
    assert int(status_values(status)['dropped output_error']) >= 1
    time.sleep(0.5)
    assert len(probe.labels['material']) == labels and probe.result_count() == results
    assert probe.transition('deactivate') and probe.transition('cleanup')


def test_bad_outputs_at_warm_up_fail_configure(managed, model_dir):
    node, probe = managed
    path = constant_model(model_dir / 'nan.onnx',
                          rows={'material': [float('nan')] * 3, 'hardness': [0.5, 0.5]})
    assert configure_with(node, probe, path, warmup_iterations=1) is False
    error_status(probe, 'non-finite probabilities')
    assert probe.set_parameter('warmup_iterations', 0) == (True, '')


@pytest.mark.parametrize('topic', ['bad topic', '', '{evil}', 'a//b', '9lives'])
def test_a_topic_that_is_no_ros_name_is_refused_at_run_time(managed, topic):
    node, probe = managed
    ok, reason = probe.set_parameter('inputs.camera.topic', topic)
    assert not ok and 'not a valid ROS topic name' in reason and '.c:' not in reason
    assert probe.get_parameter('inputs.camera.topic') == 'camera/image_raw'


def test_an_activate_that_fails_says_why_in_the_log_and_as_error(managed, model_dir):
    node, probe = managed
    assert configure_with(node, probe, model_dir / 'good.onnx') is True
    assert probe.set_parameter('inputs.camera.transport', 'compressed') == (True, '')
    assert probe.set_parameter('inputs.camera.encoding', 'bgr8') == (True, '')
    assert probe.transition('activate') is False
    error_status(probe, 'activate failed: ValueError: inputs.camera.encoding')
    wait_until(lambda: 'activate failed' in node.log(), 5, 'activate failure logged')
    assert probe.set_parameter('inputs.camera.encoding', '') == (True, '')
    assert probe.set_parameter('inputs.camera.transport', '') == (True, '')
    assert probe.transition('activate') is True
    status = probe.next_status()
    assert 'activate failed' not in status.message
    assert probe.transition('deactivate') and probe.transition('cleanup')


def test_a_graph_that_never_ends_fails_configure_at_the_time_limit(managed, model_dir):
    node, probe = managed
    path = looping_model(model_dir / 'loop.onnx')
    started = time.monotonic()
    assert configure_with(node, probe, path, warmup_iterations=1, configure_timeout=2.0) is False
    assert time.monotonic() - started < 10
    error_status(probe, 'configure_timeout')
    assert node.alive() and probe.state() == 'unconfigured'
    assert configure_with(node, probe, model_dir / 'good.onnx', warmup_iterations=0) is True


@pytest.mark.parametrize('signum', [signal.SIGINT, signal.SIGTERM])
def test_a_signal_ends_the_node_within_a_second_during_a_configure_that_never_ends(
        model_dir, tmp_path, signum):
    path = looping_model(model_dir / 'loop.onnx')
    node = NodeProcess({'checkpoint': str(path), 'device': 'cpu', 'warmup_iterations': 1},
                       tmp_path / 'convitac_node.log')
    try:
        wait_until(lambda: 'warming up' in node.log(), 60, 'warm-up started')
        time.sleep(0.5)
        assert node.alive(), node.log()
        started = time.monotonic()
        node.send_signal(signum)
        assert node.wait(10) == 0, node.log()
        assert time.monotonic() - started < 1.0
    finally:
        node.stop()
    assert 'Traceback' not in node.log()


def test_a_signal_ends_the_node_during_an_endless_configure_requested_by_service(
        model_dir, tmp_path):
    path = looping_model(model_dir / 'loop.onnx')
    node = NodeProcess({'checkpoint': str(path), 'device': 'cpu', 'warmup_iterations': 1,
                        'autostart': False}, tmp_path / 'convitac_node.log', namespace='/sig')
    probe = Probe(list(HEADS), node='/sig/convitac_node')
    try:
        threading.Thread(target=lambda: probe.transition('configure'), daemon=True).start()
        wait_until(lambda: 'warming up' in node.log(), 60, 'warm-up started')
        time.sleep(0.5)
        started = time.monotonic()
        node.send_signal(signal.SIGINT)
        assert node.wait(10) == 0, node.log()
        assert time.monotonic() - started < 1.0
    finally:
        probe.close()
        node.stop()
    assert 'Traceback' not in node.log()


@pytest.mark.parametrize('topic', ['bad topic', '', '{evil}'])
def test_a_topic_that_is_no_ros_name_is_refused_at_start_in_one_line(tmp_path, topic):
    node = NodeProcess({}, tmp_path / 'node.log', command=[
        *NODE_COMMAND, '--ros-args', '-p', f'inputs.camera.topic:="{topic}"'])
    assert node.wait(60) == 1
    ours = [li for li in node.log().splitlines() if li.startswith('convitac_node:')]
    assert len(ours) == 1 and 'not a valid ROS topic name' in ours[0], node.log()
    assert 'Traceback' not in node.log()


FAULTS = textwrap.dedent('''
    """Test-only: raise once in each stage named by CONVITAC_FAULTS, in that order."""
    import os

    from convitac_ros.ros import inference_thread, outputs
    from convitac_ros import runtime_onnx

    plan = os.environ['CONVITAC_FAULTS'].split(',')


    def faulty(stage, original):
        def wrapper(*args, **kwargs):
            if plan and plan[0] == stage:
                plan.pop(0)
                raise RuntimeError(f'injected {stage} fault')
            return original(*args, **kwargs)
        return wrapper


    inference_thread.window_inputs = faulty('conversion', inference_thread.window_inputs)
    runtime_onnx.OnnxPredictor.predict = faulty('inference', runtime_onnx.OnnxPredictor.predict)
    outputs.OutputPublishers.publish = faulty('publish', outputs.OutputPublishers.publish)
''')


def test_a_fault_in_each_stage_is_counted_reported_and_the_next_window_answered(
        managed, model_dir, tmp_path):
    # The managed node is done with: its /diagnostics would mix with this node's (a client
    # also matches a status by the node's plain name).
    managed[0].stop()
    (tmp_path / 'sitecustomize.py').write_text(FAULTS)
    path = constant_model(model_dir / 'good.onnx')
    stages = ['conversion', 'inference', 'publish']
    env = {'PYTHONPATH': os.pathsep.join([str(tmp_path), os.environ.get('PYTHONPATH', '')]),
           'CONVITAC_FAULTS': ','.join(stages)}
    parameters = {'checkpoint': str(path), 'device': 'cpu', 'diagnostics_period': 0.3,
                  'warmup_iterations': 0}
    node = NodeProcess(parameters, tmp_path / 'convitac_node.log', namespace='/faults', env=env)
    probe = Probe(list(HEADS), node='/faults/convitac_node')
    try:
        probe.wait_for_subscribers(timeout=60)
        publish_pairs(probe, 3)
        status = error_status(probe, 'injected')
        publish_pairs(probe, 5)
        wait_until(lambda: probe.result_count() >= 3, 15, 'answers after the faults')

        def all_counted():
            values = status_values(probe.next_status())
            return all(values.get(f'{stage} errors') == '1' for stage in stages)

        wait_until(all_counted, 15, 'every stage counted once')
        values = status_values(probe.next_status())
        assert values['dropped conversion_error'] == '1'
        assert values['dropped inference_error'] == '1'
        assert values['dropped publish_error'] == '1'
        assert 'RuntimeError: injected' in status.message
        log = node.log()
        assert all(f'{stage}: RuntimeError: injected {stage} fault' in log for stage in stages)
        # An idle active node ends within a second of SIGINT.
        time.sleep(1.0)
        started = time.monotonic()
        node.send_signal(signal.SIGINT)
        assert node.wait(10) == 0
        assert time.monotonic() - started < 1.0
    finally:
        probe.close()
        node.stop()
    assert 'Traceback' not in node.log()
