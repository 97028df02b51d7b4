"""End to end: a real convitac_node process over real DDS (loopback), one node for the module.

The tests run in file order and share the node; each publishes with stamps from one clock
that only moves forward (except where a test makes time jump back on purpose).
"""

from __future__ import annotations

import socket
import threading
import time

from node_harness import image, running_node, status_values, wait_until
import numpy as np
import psutil
import pytest

RATE_HZ = 20.0
PERIOD_NS = int(1e9 / RATE_HZ)


class StampClock:
    """Stamps for synthetic streams: spaced by PERIOD_NS, never behind the wall clock."""

    def __init__(self) -> None:
        self.last = time.time_ns()

    def tick(self) -> int:
        self.last = max(self.last + PERIOD_NS, time.time_ns())
        return self.last


@pytest.fixture(scope='module')
def running(tiny_checkpoint, tiny_predictor, tmp_path_factory):
    """The node (CPU, process_every_pair) and a probe, cleaned up even when a test fails."""
    parameters = {'checkpoint': str(tiny_checkpoint), 'device': 'cpu',
                  'process_every_pair': True, 'silent_input_timeout': 1.0,
                  'diagnostics_period': 0.5, 'warmup_iterations': 1}
    log = tmp_path_factory.mktemp('node') / 'convitac_node.log'
    with running_node(parameters, log, list(tiny_predictor.heads)) as (node, probe):
        yield node, probe, StampClock()


@pytest.fixture(scope='module')
def predictor(tiny_predictor):
    return tiny_predictor


def frames(rng, n, shape=(64, 64, 3)):
    return [rng.integers(0, 256, size=shape, dtype=np.uint8) for _ in range(n)]


def stream(probe, clock, cams, tacts, *, encoding='rgb8', rate=RATE_HZ):
    """Publish camera/tactile pairs at ``rate``; return their stamps."""
    stamps = []
    for cam, tac in zip(cams, tacts):
        stamp = clock.tick()
        tactile = image(tac, stamp, encoding=encoding, frame_id='tactile')
        probe.publish([image(cam, stamp), tactile])
        stamps.append(stamp)
        time.sleep(1 / rate)
    return stamps


def results_by_stamp(probe, stamps, timeout=20.0):
    wanted = set(stamps)

    def found():
        return wanted <= {r['stamp_ns'] for r in list(probe.results)}

    wait_until(found, timeout, f'results for {len(wanted)} stamps')
    return {r['stamp_ns']: r for r in list(probe.results) if r['stamp_ns'] in wanted}


def expected(predictor, cams, tacts, i):
    """What the Predictor says for the window ending at pair i (visual_len = tactile_len = 2)."""
    return predictor.predict(cams[i - 1:i + 1], [tacts[i - 1:i + 1]])


def test_outputs_equal_the_predictor_on_the_same_frames(running, predictor):
    node, probe, clock = running
    rng = np.random.default_rng(1)
    cams, tacts = frames(rng, 8), frames(rng, 8)
    first_label = {h: len(v) for h, v in probe.labels.items()}
    stamps = stream(probe, clock, cams, tacts)
    results = results_by_stamp(probe, stamps[1:])
    assert stamps[0] not in results  # its window was still filling
    for i, stamp in enumerate(stamps[1:], start=1):
        want = expected(predictor, cams, tacts, i)
        for head, classes in predictor.heads.items():
            got = results[stamp]['heads'][head]
            np.testing.assert_allclose(got['probabilities'], want[head], atol=2e-6)
            assert got['label'] == classes[int(np.argmax(want[head]))]
    wait_until(lambda: all(len(v) >= first_label[h] + 7 for h, v in probe.labels.items()),
               10, 'labels')
    for head, classes in predictor.heads.items():
        want = [expected(predictor, cams, tacts, i)[head] for i in range(1, 8)]
        got = probe.probabilities[head][-7:]
        np.testing.assert_allclose(np.stack(got), np.stack(want), atol=1e-6)
        assert probe.labels[head][-7:] == [classes[int(np.argmax(w))] for w in want]


def test_mismatched_image_sizes_are_resized_by_the_model(running, predictor):
    node, probe, clock = running
    rng = np.random.default_rng(2)
    cams, tacts = frames(rng, 3, (120, 160, 3)), frames(rng, 3, (48, 36, 3))
    stamps = stream(probe, clock, cams, tacts)
    results = results_by_stamp(probe, stamps[1:])
    for i, stamp in enumerate(stamps[1:], start=1):
        want = expected(predictor, cams, tacts, i)
        for head in predictor.heads:
            np.testing.assert_allclose(results[stamp]['heads'][head]['probabilities'],
                                       want[head], atol=2e-6)


def test_head_classes_are_read_only_parameters(running, predictor):
    node, probe, clock = running
    for head, classes in predictor.heads.items():
        assert list(probe.get_parameter(f'heads.{head}.classes')) == classes
    ok, reason = probe.set_parameter('heads.hardness.classes', ['a', 'b'])
    assert not ok and 'read-only' in reason


@pytest.mark.parametrize('name,value,words', [
    ('queue_depth', 0, ['queue_depth', '1']),
    ('image_transport', 'theora', ['image_transport', 'raw', 'compressed']),
    ('device', 'gpu', ['device', 'cuda:N']),
    ('sync_slop', -0.5, ['sync_slop']),
    ('qos_depth', 'ten', ['INTEGER', 'STRING']),
    ('checkpoint', '/tmp/model.pt', ['.safetensors']),
])
def test_bad_parameter_values_are_refused_with_a_reason(running, name, value, words):
    node, probe, clock = running
    before = probe.get_parameter(name)
    ok, reason = probe.set_parameter(name, value)
    assert not ok
    for word in words:
        assert word in reason, reason
    assert probe.get_parameter(name) == before


def test_good_parameter_value_is_accepted(running):
    node, probe, clock = running
    assert probe.set_parameter('latency_budget_ms', 250.0) == (True, '')
    assert probe.get_parameter('latency_budget_ms') == 250.0


def test_diagnostics_report_rates_latency_device_and_model(running):
    node, probe, clock = running
    rng = np.random.default_rng(3)
    # Rates cover the last diagnostics period (1 s): read a status published mid-stream, whose
    # whole period saw input (the stream lasts 2.5 s; the status comes within 1 s of 1.2 s).
    streamer = threading.Thread(target=stream, args=(probe, clock, frames(rng, 50),
                                                     frames(rng, 50)))
    streamer.start()
    time.sleep(1.2)
    status = probe.next_status()
    streamer.join()
    values = status_values(status)
    assert status.level == b'\x00', status.message
    assert status.name == '/convitac_node: inference'
    assert values['state'] == 'active' and values['device'] == 'cpu'
    assert values['model'] and status.hardware_id == f'{socket.gethostname()}/cpu'
    assert float(values['camera/image_raw rate (Hz)']) > 5
    assert float(values['tactile/image_raw rate (Hz)']) > 5
    assert float(values['pairing rate (Hz)']) > 5
    assert float(values['inference rate (Hz)']) > 5
    p50, p99 = float(values['latency p50 (ms)']), float(values['latency p99 (ms)'])
    assert 0 < p50 <= p99
    assert int(values['dropped window_filling']) >= 1
    assert int(values['dropped total']) >= int(values['dropped window_filling'])


def test_wrong_encoding_is_counted_and_reported_and_the_node_recovers(running):
    node, probe, clock = running
    rng = np.random.default_rng(4)
    depth = [rng.random((64, 64), dtype=np.float32) for _ in range(4)]
    stream(probe, clock, frames(rng, 4), depth, encoding='32FC1')
    wait_until(lambda: int(status_values(probe.next_status()).get(
        'dropped conversion_error', 0)) >= 3, 10, 'conversion errors counted')
    status = probe.next_status()
    values = status_values(status)
    assert '[32FC1] has no colour meaning' in values['last conversion error']
    # Dropped windows raise the level and say why (ERROR: none got through in the period).
    assert status.level in (b'\x01', b'\x02')
    assert 'image conversion failed' in status.message and '32FC1' in status.message
    stamps = stream(probe, clock, frames(rng, 3), frames(rng, 3))
    results_by_stamp(probe, stamps[1:])
    assert node.alive()
    # The problem is reported while recent (5 s), then the level comes back down.
    wait_until(lambda: 'conversion' not in probe.next_status().message, 15,
               'the conversion failure stays reported')


def test_zero_stamps_are_stamped_on_receipt_counted_and_warned(running):
    node, probe, clock = running
    rng = np.random.default_rng(5)
    count = probe.result_count()
    for cam, tac in zip(frames(rng, 6), frames(rng, 6)):
        probe.publish([image(cam, 0), image(tac, 0)])
        time.sleep(1 / RATE_HZ)
    wait_until(lambda: probe.result_count() >= count + 3, 10, 'results for zero-stamped input')
    status = probe.next_status()
    values = status_values(status)
    assert status.level == b'\x01'
    assert 'zero stamps' in status.message
    assert int(values['camera/image_raw zero stamps']) == 6
    assert int(values['tactile/image_raw zero stamps']) == 6
    clock.last = max(clock.last, time.time_ns() + 10**9)


def test_stamps_jumping_backwards_reset_the_window_and_are_counted(running, predictor):
    node, probe, clock = running
    rng = np.random.default_rng(6)
    stream(probe, clock, frames(rng, 3), frames(rng, 3))
    clock.last -= 100 * 10**9  # a looping bag starts over
    cams, tacts = frames(rng, 4), frames(rng, 4)
    stamps = stream(probe, clock, cams, tacts)
    results = results_by_stamp(probe, stamps[1:])
    assert stamps[0] not in results  # the window restarted
    want = expected(predictor, cams, tacts, 1)
    np.testing.assert_allclose(results[stamps[1]]['heads']['hardness']['probabilities'],
                               want['hardness'], atol=2e-6)
    values = status_values(probe.next_status())
    assert int(values['camera/image_raw stamps backwards']) >= 1
    assert int(values['time jumps backwards']) >= 1
    clock.last += 200 * 10**9


def test_a_silent_input_is_warned(running):
    node, probe, clock = running
    rng = np.random.default_rng(7)
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        probe.publishers[0].publish(image(frames(rng, 1)[0], clock.tick()))
        time.sleep(1 / RATE_HZ)
    status = probe.next_status()
    assert status.level == b'\x01'
    assert 'tactile/image_raw silent' in status.message
    assert 'camera/image_raw silent' not in status.message


def test_every_pair_mode_batches_a_backlog_and_answers_every_set(running, predictor):
    node, probe, clock = running
    assert probe.set_parameter('max_batch', 4) == (True, '')
    rng = np.random.default_rng(9)
    cams, tacts = frames(rng, 30), frames(rng, 30)
    stamps = stream(probe, clock, cams, tacts, rate=10 * RATE_HZ)
    results = results_by_stamp(probe, stamps[1:])
    for i in (1, 15, 29):
        want = expected(predictor, cams, tacts, i)
        np.testing.assert_allclose(results[stamps[i]]['heads']['material']['probabilities'],
                                   want['material'], atol=1e-5)
    assert probe.set_parameter('max_batch', 1) == (True, '')


def test_a_burst_at_ten_times_the_rate_stays_bounded(running):
    node, probe, clock = running
    assert probe.set_parameter('process_every_pair', False) == (True, '')
    rng = np.random.default_rng(8)
    cams, tacts = frames(rng, 10), frames(rng, 10)
    process = psutil.Process(node.pid)
    stream(probe, clock, cams * 2, tacts * 2)
    rss_before = process.memory_info().rss
    count = probe.result_count()
    pairs = 600
    stream(probe, clock, cams * (pairs // 10), tacts * (pairs // 10), rate=10 * RATE_HZ)
    lengths = [int(status_values(probe.next_status())['queue length']) for _ in range(2)]
    assert max(lengths) <= 1
    rss_growth = process.memory_info().rss - rss_before
    assert rss_growth < 40 * 2**20, rss_growth
    values = status_values(probe.next_status())
    assert probe.result_count() - count <= pairs
    assert node.alive()
    # The node keeps up with what it can and says what it dropped.
    dropped = int(values.get('dropped queue_full', 0))
    received = int(values['camera/image_raw received'])
    assert dropped > 0 or probe.result_count() - count >= 0.9 * pairs, (dropped, received)
    stamps = stream(probe, clock, frames(rng, 3), frames(rng, 3))
    results_by_stamp(probe, stamps[-1:])


def test_the_debug_image_topic_exists_only_while_publish_debug_image_is_on(running):
    from sensor_msgs.msg import Image

    node, probe, clock = running
    topic = '/convitac/debug_image'
    assert probe.node.count_publishers(topic) == 0  # off by default: not advertised
    pictures = []
    subscription = probe.node.create_subscription(Image, topic, pictures.append, 10)
    try:
        assert probe.set_parameter('publish_debug_image', True) == (True, '')
        wait_until(lambda: probe.node.count_publishers(topic) == 1, 10, 'debug topic advertised')
        rng = np.random.default_rng(9)

        def pictured() -> bool:
            stream(probe, clock, frames(rng, 2), frames(rng, 2))
            return bool(pictures)

        wait_until(pictured, 20, 'a debug image')
        assert pictures[-1].encoding == 'rgb8'
        assert probe.set_parameter('publish_debug_image', False) == (True, '')
        wait_until(lambda: probe.node.count_publishers(topic) == 0, 10, 'debug topic withdrawn')
        stamps = stream(probe, clock, frames(rng, 3), frames(rng, 3))
        results_by_stamp(probe, stamps[-1:])  # the node goes on answering
    finally:
        probe.node.destroy_subscription(subscription)
