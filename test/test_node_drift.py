"""Input drift through a real node process: OK on frames like the training ones, WARN otherwise.

The checkpoint is the one the real training code wrote (``tiny_checkpoint``, with its drift
reference); the frames come from the same synthetic world, then changed as a mounting or a
sensor change would change them.
"""

from __future__ import annotations

import threading
import time

import cv2
from node_harness import image, random_checkpoint, running_node, status_values, wait_until
import numpy as np

from convitac_ros.data import build_dataset

CAMERA, TACTILE = 'camera/image_raw', 'tactile/image_raw'


def stream(probe, pairs, seconds, rate=20.0):
    """Publish (camera, tactile) frames in a loop for ``seconds``."""
    end, k = time.monotonic() + seconds, 0
    while time.monotonic() < end:
        camera, tactile = pairs[k % len(pairs)]
        stamp = time.time_ns()
        probe.publish([image(camera, stamp), image(tactile, stamp, frame_id='tactile')])
        k += 1
        time.sleep(1 / rate)


def scored_status(probe, sets, timeout=20.0):
    """The first status whose drift values have been scored on at least ``sets`` sets each."""
    found = {}

    def ready():
        status = probe.next_status()
        values = status_values(status)
        parts = [values.get(f'{topic} drift parts', '') for topic in (CAMERA, TACTILE)]
        counts = [int(p.split('last of ')[1].split()[0]) if 'last of' in p else 0
                  for p in parts]
        if min(counts) >= sets:
            found['status'] = status
        return 'status' in found

    wait_until(ready, timeout, f'drift scored on {sets} sets')
    return found['status']


def elsewhere(frame):
    rng = np.random.default_rng(0)
    return cv2.GaussianBlur(rng.integers(0, 256, frame.shape, dtype=np.uint8), (0, 0), 3)


def test_the_node_reports_drift_per_input_and_warns_for_a_rotated_gel_and_a_camera_elsewhere(
        tiny_checkpoint, tiny_predictor, synthetic_tag_root, tmp_path):
    world = build_dataset('touch_and_go', synthetic_tag_root, 'test')
    pairs = [(world[i].visual[-1], world[i].tactile[0][-1]) for i in range(len(world))]
    parameters = {'checkpoint': str(tiny_checkpoint), 'device': 'cpu', 'drift_period': 0.1,
                  'diagnostics_period': 0.5, 'warmup_iterations': 1,
                  'silent_input_timeout': 5.0}
    with running_node(parameters, tmp_path / 'node.log', list(tiny_predictor.heads)) as (
            _, probe):
        streamer = threading.Thread(target=stream, args=(probe, pairs, 3.0))
        streamer.start()
        status = scored_status(probe, 8)
        streamer.join()
        values = status_values(status)
        assert 'looks unlike' not in status.message, status.message
        for topic in (CAMERA, TACTILE):
            assert 0 < float(values[f'{topic} drift']) < 1, values
            assert 'embedding' in values[f'{topic} drift parts']  # E^c's embeddings, too

        changed = [(elsewhere(c), np.ascontiguousarray(np.rot90(t))) for c, t in pairs]
        streamer = threading.Thread(target=stream, args=(probe, changed, 4.0))
        streamer.start()
        try:
            wait_until(lambda: all(f'{topic} looks unlike the training inputs'
                                   in probe.next_status().message for topic in (CAMERA, TACTILE)),
                       15, 'a drift WARN for both inputs')
        finally:
            streamer.join()
        status = probe.next_status()
        assert status.level == b'\x01', status.message
        assert float(status_values(status)[f'{TACTILE} drift']) > 1


def test_a_checkpoint_without_a_reference_reports_drift_unavailable_and_never_warns(
        tmp_path):
    heads = {'material': ['a', 'b']}
    checkpoint = random_checkpoint(tmp_path / 'old.safetensors', heads)
    parameters = {'checkpoint': str(checkpoint), 'device': 'cpu', 'drift_period': 0.1,
                  'diagnostics_period': 0.5, 'warmup_iterations': 1}
    rng = np.random.default_rng(0)
    noise = [(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8),) * 2 for _ in range(5)]
    with running_node(parameters, tmp_path / 'node.log', list(heads)) as (_, probe):
        stream(probe, noise, 1.5)
        status = probe.next_status()
        values = status_values(status)
        assert values[f'{TACTILE} drift'].startswith('unavailable'), values
        assert values[f'{CAMERA} drift'].startswith('unavailable'), values
        assert 'looks unlike' not in status.message
