"""Lifecycle of a real convitac_node (autostart off), driven through lifecycle_msgs services."""

from __future__ import annotations

import time

from node_harness import image, running_node, status_values, wait_until
import numpy as np
import pytest

HEADS = ['material', 'hardness', 'roughness']


@pytest.fixture(scope='module')
def managed(tiny_checkpoint, tmp_path_factory):
    parameters = {'autostart': False, 'checkpoint': str(tiny_checkpoint), 'device': 'cpu',
                  'diagnostics_period': 0.5, 'warmup_iterations': 0}
    log = tmp_path_factory.mktemp('lifecycle') / 'convitac_node.log'
    with running_node(parameters, log, HEADS, wait=False, check_exit=False) as (node, probe):
        yield node, probe, str(tiny_checkpoint)


def publish_pairs(probe, n, start_ns):
    rng = np.random.default_rng(0)
    for i in range(n):
        stamp = start_ns + i * 50_000_000
        pixels = rng.integers(0, 256, size=(64, 64, 3), dtype=np.uint8)
        probe.publish([image(pixels, stamp), image(pixels, stamp)])
        time.sleep(0.05)


def test_starts_unconfigured_without_autostart(managed):
    node, probe, _ = managed
    assert probe.state() == 'unconfigured'
    assert probe.get_parameter('heads.material.classes') is None
    assert probe.next_status(timeout=10).message == 'unconfigured'


def test_missing_checkpoint_fails_configure_with_a_clear_log(managed, tmp_path):
    node, probe, good = managed
    missing = tmp_path / 'nowhere.safetensors'
    assert probe.set_parameter('checkpoint', str(missing)) == (True, '')
    assert probe.transition('configure') is False
    assert probe.state() == 'unconfigured'
    wait_until(lambda: 'configure failed' in node.log(), 5, 'configure failure logged')
    line = next(li for li in node.log().splitlines() if 'configure failed' in li)
    assert str(missing) in line and 'ERROR' in line
    status = probe.next_status()
    assert status.level == b'\x02' and 'configure failed' in status.message


def test_invalid_checkpoint_fails_configure(managed, tmp_path):
    node, probe, good = managed
    broken = tmp_path / 'broken.safetensors'
    broken.write_bytes(b'this is not a safetensors file')
    assert probe.set_parameter('checkpoint', str(broken)) == (True, '')
    assert probe.transition('configure') is False
    assert probe.state() == 'unconfigured'
    assert node.alive()


def test_configure_loads_the_model_and_declares_heads(managed):
    node, probe, good = managed
    assert probe.set_parameter('checkpoint', good) == (True, '')
    assert probe.transition('configure') is True
    assert probe.state() == 'inactive'
    assert probe.get_parameter('heads.hardness.classes') == ['hard', 'soft']
    status = probe.next_status()
    assert status.level == b'\x00' and status_values(status)['state'] == 'inactive'


def test_activate_subscribes_and_predicts(managed):
    node, probe, _ = managed
    assert probe.transition('activate') is True
    assert probe.state() == 'active'
    probe.wait_for_subscribers()
    count = probe.result_count()
    publish_pairs(probe, 5, time.time_ns())
    wait_until(lambda: probe.result_count() >= count + 3, 10, 'results while active')


def test_deactivate_unsubscribes_and_stops_outputs(managed):
    node, probe, _ = managed
    assert probe.transition('deactivate') is True
    assert probe.state() == 'inactive'
    wait_until(lambda: all(p.get_subscription_count() == 0 for p in probe.publishers), 10,
               'subscriptions removed')
    count = probe.result_count()
    publish_pairs(probe, 5, time.time_ns())
    time.sleep(0.5)
    assert probe.result_count() == count


def test_reactivate_then_cleanup_and_shutdown(managed):
    node, probe, _ = managed
    assert probe.transition('activate') is True
    probe.wait_for_subscribers()
    count = probe.result_count()
    publish_pairs(probe, 4, time.time_ns())
    wait_until(lambda: probe.result_count() >= count + 2, 10, 'results after re-activation')
    assert probe.transition('deactivate') is True
    assert probe.transition('cleanup') is True
    assert probe.state() == 'unconfigured'
    assert probe.transition('configure') is True  # same heads: configures again
    assert probe.transition('shutdown') is True
    assert probe.state() == 'finalized'
    assert node.alive()
    assert node.stop() == 0
