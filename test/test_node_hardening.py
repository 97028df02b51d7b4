"""Nothing a robot, a user or a file sends kills a real convitac_node or makes it publish NaN.

One node (compressed inputs, autostart off, the demo checkpoint) is driven through the tests of
the module in file order, over real DDS on loopback; signals and bad command lines get fresh
processes of their own.
"""

from __future__ import annotations

import signal
import struct
import threading
import time
import zlib

import cv2
from hostile_checkpoints import DEMO, overflow_weights, rewrite
from node_harness import NodeProcess, running_node, status_values, wait_until
import numpy as np
import psutil
import pytest
from sensor_msgs.msg import CompressedImage

from convitac_ros.ros.node_process import NODE_COMMAND

HEADS = ['material', 'hardness', 'roughness']
BOMB_SIDE = 20000


def compressed(data: bytes, stamp_ns: int, fmt: str = 'png') -> CompressedImage:
    msg = CompressedImage(format=fmt, data=data)
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
    msg.header.frame_id = 'camera'
    return msg


def png(pixels: np.ndarray) -> bytes:
    ok, data = cv2.imencode('.png', pixels)
    assert ok
    return data.tobytes()


def png_bomb(side: int) -> bytes:
    """A valid grey PNG of side x side black pixels, a few hundred kB, built row by row."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return (struct.pack('>I', len(body)) + kind + body
                + struct.pack('>I', zlib.crc32(kind + body)))

    packer, row = zlib.compressobj(9), bytes(side + 1)  # filter byte 0, then the pixels
    body = b''.join(packer.compress(row) for _ in range(side)) + packer.flush()
    header = struct.pack('>IIBBBBB', side, side, 8, 0, 0, 0, 0)
    return (b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', header) + chunk(b'IDAT', body)
            + chunk(b'IEND', b''))


@pytest.fixture(scope='module')
def managed(tmp_path_factory):
    log = tmp_path_factory.mktemp('hardening') / 'convitac_node.log'
    parameters = {'autostart': False, 'checkpoint': str(DEMO), 'device': 'cpu',
                  'image_transport': 'compressed', 'process_every_pair': True,
                  'diagnostics_period': 0.3, 'warmup_iterations': 0}
    with running_node(parameters, log, HEADS, compressed=True, wait=False,
                      check_exit=False) as running:
        yield running


def publish_pairs(probe, count, first=None, camera=None):
    """Publish ``count`` synchronized pairs of small PNGs (``camera`` replaces the camera's)."""
    rng = np.random.default_rng(0)
    start = first or time.time_ns()
    for i in range(count):
        stamp = start + i * 50_000_000
        good = png(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
        probe.publish([camera(stamp) if camera else compressed(good, stamp),
                       compressed(good, stamp)])
        time.sleep(0.05)


def wait_for_value(probe, key, predicate, timeout=15.0):
    found = {}

    def check():
        found.update(status_values(probe.next_status()))
        return key in found and predicate(found[key])

    wait_until(check, timeout, f'/diagnostics {key}')
    return found


def test_requests_invalid_in_the_state_are_refused_and_the_node_lives(managed):
    node, probe = managed
    for transition in ('activate', 'deactivate', 'cleanup'):
        assert probe.transition(transition) is False
    assert probe.state() == 'unconfigured' and node.alive()
    wait_until(lambda: "refused lifecycle transition 3 in state 'unconfigured'" in node.log(),
               5, 'the refusal is logged')  # 3: activate


def test_an_undeclared_parameter_is_refused_by_name(managed):
    node, probe = managed
    ok, reason = probe.set_parameter('no_such_parameter', 3)
    assert not ok and 'no_such_parameter' in reason


def test_a_directory_checkpoint_and_a_missing_cuda_device_are_named(managed, tmp_path):
    import torch

    node, probe = managed
    folder = tmp_path / 'folder.safetensors'
    folder.mkdir()
    assert probe.set_parameter('checkpoint', str(folder)) == (True, '')
    assert probe.transition('configure') is False
    wait_until(lambda: 'is a directory' in node.log(), 5, 'directory named')
    assert probe.set_parameter('checkpoint', str(DEMO)) == (True, '')
    if not torch.cuda.is_available():
        assert probe.set_parameter('device', 'cuda') == (True, '')
        assert probe.transition('configure') is False
        wait_until(lambda: 'CUDA is not available' in node.log(), 5, 'device blamed')
        line = next(li for li in node.log().splitlines() if 'CUDA is not available' in li)
        assert 'cannot use checkpoint' not in line
        assert probe.set_parameter('device', 'cpu') == (True, '')
    assert probe.state() == 'unconfigured' and node.alive()


def test_configure_while_configured_and_cleanup_while_active_are_refused(managed):
    node, probe = managed
    assert probe.transition('configure') is True
    assert probe.transition('configure') is False
    assert probe.transition('activate') is True
    for transition in ('configure', 'cleanup', 'activate'):
        assert probe.transition(transition) is False
    assert probe.state() == 'active' and node.alive()


def test_a_decompression_bomb_is_dropped_before_decoding(managed):
    node, probe = managed
    probe.wait_for_subscribers()
    bomb = png_bomb(BOMB_SIDE)
    assert len(bomb) < 1_000_000
    process = psutil.Process(node.pid)
    rss_before = process.memory_info().rss
    publish_pairs(probe, 3, camera=lambda stamp: compressed(bomb, stamp))
    values = wait_for_value(probe, 'dropped image_too_large', lambda v: int(v) >= 3)
    assert f'{BOMB_SIDE}x{BOMB_SIDE}' in values['last refused image']
    assert process.memory_info().rss - rss_before < 200 * 2 ** 20
    count = probe.result_count()
    publish_pairs(probe, 4)
    wait_until(lambda: probe.result_count() >= count + 3, 15, 'answers after the bombs')
    assert node.alive()


def test_a_long_conversion_error_is_one_bounded_line(managed):
    node, probe = managed
    broken = png(np.zeros((8, 8, 3), np.uint8))[:40]  # a readable header, a cut body
    publish_pairs(probe, 3, camera=lambda stamp: compressed(broken, stamp, fmt='x' * 5000))
    values = wait_for_value(probe, 'last conversion error', lambda v: 'could not decode' in v)
    assert len(values['last conversion error']) <= 200
    lines = [li for li in node.log().splitlines() if 'dropped a window' in li]
    assert lines and all(len(li) < 400 for li in lines)
    assert node.alive()


def test_non_finite_outputs_are_an_error_and_never_published(managed, tmp_path):
    node, probe = managed
    overflow = rewrite(tmp_path / 'overflow.safetensors', tensors=overflow_weights)
    assert probe.transition('deactivate') and probe.transition('cleanup')
    assert probe.set_parameter('checkpoint', str(overflow)) == (True, '')
    assert probe.transition('configure') is True  # finite weights: it loads
    assert probe.transition('activate') is True
    probe.wait_for_subscribers()
    labels, results = len(probe.labels['material']), probe.result_count()
    publish_pairs(probe, 4)
    status = None

    def erroring():
        nonlocal status
        status = probe.next_status()
        return status.level == b'\x02' and 'non-finite' in status.message

    wait_until(erroring, 15, 'ERROR for non-finite outputs')
    assert int(status_values(status)['dropped output_error']) >= 1
    time.sleep(0.5)
    assert len(probe.labels['material']) == labels and probe.result_count() == results


def test_sigterm_mid_inference_exits_0_promptly_without_traceback(managed):
    node, probe = managed
    assert probe.transition('deactivate') and probe.transition('cleanup')
    assert probe.set_parameter('checkpoint', str(DEMO)) == (True, '')
    assert probe.transition('configure') and probe.transition('activate')
    probe.wait_for_subscribers()
    done = threading.Event()

    def keep_publishing():
        while not done.is_set():
            publish_pairs(probe, 5)

    sender = threading.Thread(target=keep_publishing, daemon=True)
    count = probe.result_count()
    sender.start()
    try:
        wait_until(lambda: probe.result_count() > count + 2, 15, 'inference running')
        started = time.monotonic()
        node.send_signal(signal.SIGTERM)
        assert node.popen.wait(timeout=10) == 0
        assert time.monotonic() - started < 5
    finally:
        done.set()
        sender.join(10)
    assert 'Traceback' not in node.log()


@pytest.mark.parametrize('signum', [signal.SIGTERM, signal.SIGINT])
def test_a_stop_signal_during_warmup_exits_0_promptly(signum, tmp_path):
    node = NodeProcess({'checkpoint': str(DEMO), 'device': 'cpu', 'warmup_iterations': 100,
                        'max_batch': 256}, tmp_path / 'convitac_node.log')
    try:
        wait_until(lambda: 'warming up' in node.log(), 60, 'warm-up started')
        time.sleep(0.5)
        assert node.alive(), node.log()  # still warming up (it takes far longer)
        started = time.monotonic()
        node.send_signal(signum)
        assert node.popen.wait(timeout=10) == 0, node.log()
        assert time.monotonic() - started < 5
    finally:
        node.stop()
    assert 'Traceback' not in node.log() and 'active:' not in node.log()


@pytest.mark.parametrize('args,reason', [
    (['--params-file', '/nonexistent/params.yaml'], 'Error opening YAML file'),
    (['--params-file', '{bad_yaml}'], 'Sequences can only be values'),
    (['-p'], "Couldn't parse trailing -p flag"),
])
def test_malformed_ros_args_give_one_line_and_exit_2(args, reason, tmp_path):
    bad_yaml = tmp_path / 'bad.yaml'
    bad_yaml.write_text('a: [b\n')
    args = [arg.format(bad_yaml=bad_yaml) for arg in args]
    node = NodeProcess({}, tmp_path / 'node.log', command=[*NODE_COMMAND, '--ros-args', *args])
    assert node.wait(60) == 2
    output = node.log()
    ours = [li for li in output.splitlines() if li.startswith('convitac_node:')]
    assert len(ours) == 1 and reason in ours[0] and '.c:' not in ours[0], output
    assert 'Traceback' not in output
