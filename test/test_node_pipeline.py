"""The node's data path without ROS: sliding window, drop-oldest queue, lazy conversion."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import numpy as np
import pytest

from convitac_ros.ros.image_conversion import ImageConversionError
from convitac_ros.ros.pipeline import (
    Counters,
    Drop,
    DropOldestQueue,
    FrameSet,
    LatencyWindow,
    SlidingWindow,
    window_inputs,
)


def frame_set(stamp: int, convert=None) -> FrameSet:
    return FrameSet(msgs=(SimpleNamespace(tag=stamp),), stamp_ns=stamp, received_ns=0,
                    convert=convert or (lambda m: np.full((2, 2, 3), m.tag, np.uint8)))


def stamps(window) -> list[int]:
    return [s.stamp_ns for s in window]


def test_window_fills_then_slides():
    window = SlidingWindow(3)
    assert window.push(frame_set(1)) == SlidingWindow.FILLING
    assert window.push(frame_set(2)) == SlidingWindow.FILLING
    assert stamps(window.push(frame_set(3))) == [1, 2, 3]
    assert stamps(window.push(frame_set(4))) == [2, 3, 4]
    for s in range(5, 10):
        window.push(frame_set(s))
    assert len(window) == 6  # twice the length, for late sets


def test_window_of_one_answers_every_set():
    window = SlidingWindow(1)
    assert stamps(window.push(frame_set(5))) == [5]
    assert stamps(window.push(frame_set(6))) == [6]


def test_out_of_order_set_is_inserted_at_its_place():
    window = SlidingWindow(3)
    for s in (10, 30, 40):
        window.push(frame_set(s))
    assert stamps(window.push(frame_set(35))) == [10, 30, 35]
    assert stamps(window.push(frame_set(50))) == [35, 40, 50]


def test_late_set_without_enough_predecessors_is_out_of_order():
    window = SlidingWindow(3)
    window.push(frame_set(10))
    window.push(frame_set(20))
    assert window.push(frame_set(5)) == SlidingWindow.OUT_OF_ORDER
    assert stamps(window.push(frame_set(30))) == [10, 20, 30]


def test_set_older_than_everything_kept_is_refused():
    window = SlidingWindow(1)
    window.push(frame_set(10))
    window.push(frame_set(20))
    assert window.push(frame_set(5)) == SlidingWindow.OUT_OF_ORDER
    assert len(window) == 2


def test_window_clear_restarts_filling():
    window = SlidingWindow(2)
    window.push(frame_set(1))
    window.push(frame_set(2))
    window.clear()
    assert window.push(frame_set(3)) == SlidingWindow.FILLING


def test_window_length_must_be_positive():
    with pytest.raises(ValueError):
        SlidingWindow(0)


def test_frame_set_keeps_no_full_size_frames_and_caches_errors():
    calls = []

    def convert(msg):
        calls.append(msg.tag)
        if msg.tag == 'bad':
            raise ImageConversionError('Unrecognized image encoding [x]')
        return np.zeros((1, 1, 3), np.uint8)

    good = FrameSet((SimpleNamespace(tag='a'), SimpleNamespace(tag='b')), 1, 0, convert)
    assert good.rgb() is not good.rgb()  # converted anew: full-size frames are never kept
    assert calls == ['a', 'b', 'a', 'b']
    calls.clear()
    bad = FrameSet((SimpleNamespace(tag='a'), SimpleNamespace(tag='bad')), 2, 0, convert)
    for _ in range(2):
        with pytest.raises(ImageConversionError, match=r'input 1: Unrecognized'):
            bad.rgb()
    assert calls == ['a', 'bad']


def test_model_frames_are_resized_once_per_set_exactly_as_the_predictor_resizes():
    from convitac_ros.preprocess import resize_frame

    rng = np.random.default_rng(0)
    pictures = {'cam': rng.integers(0, 256, (120, 160, 3), dtype=np.uint8),
                'tac': rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)}
    calls = []

    def convert(msg):
        calls.append(msg.tag)
        return pictures[msg.tag]

    sets = [FrameSet((SimpleNamespace(tag='cam'), SimpleNamespace(tag='tac')), k, 0, convert)
            for k in range(3)]
    sized = sets[0].model_frames(64)
    assert sets[0].model_frames(64) is sized and calls == ['cam', 'tac']
    for frame, name in zip(sized, ('cam', 'tac')):
        np.testing.assert_array_equal(frame, resize_frame(pictures[name], 64))
        # A frame already at the model's size is only copied by the Predictor's resize.
        np.testing.assert_array_equal(resize_frame(frame, 64), frame)
    # Two overlapping windows: the shared set is resized once, not once per window.
    window_inputs(sets[:2], 2, 2, image_size=64)
    visual, tactile = window_inputs(sets[1:], 2, 2, image_size=64)
    assert calls == ['cam', 'tac'] * 3
    assert visual[0] is sets[1].model_frames(64)[0]
    assert tactile[0][1] is sets[2].model_frames(64)[1]
    assert [f.shape for f in visual] == [(64, 64, 3)] * 2
    full, _ = window_inputs(sets[1:], 2, 2)
    assert full[0].shape == (120, 160, 3)


def test_queue_drops_the_oldest_when_full():
    queue = DropOldestQueue(2)
    assert queue.put(1) is False
    assert queue.put(2) is False
    assert queue.put(3) is True
    assert [queue.get(0), queue.get(0), queue.get(0)] == [2, 3, None]


def test_queue_capacity_change_drops_to_fit():
    queue = DropOldestQueue(5)
    for i in range(5):
        queue.put(i)
    assert queue.set_capacity(2) == 3
    assert [queue.get(0), queue.get(0)] == [3, 4]
    with pytest.raises(ValueError):
        queue.set_capacity(0)


def test_queue_close_wakes_a_waiting_consumer_and_reopen_resumes():
    queue = DropOldestQueue(1)
    got = []
    consumer = threading.Thread(target=lambda: got.append(queue.get()))
    consumer.start()
    time.sleep(0.05)
    queue.close()
    consumer.join(2)
    assert got == [None] and not consumer.is_alive()
    queue.put('x')
    assert queue.get(0) is None
    queue.reopen()
    assert queue.get(0) == 'x'
    assert queue.clear() == 0


def test_queue_hands_items_across_threads_in_order():
    queue = DropOldestQueue(1000)
    got = []

    def consume():
        while (item := queue.get(1.0)) is not None:
            got.append(item)
            if item == 499:
                return

    consumer = threading.Thread(target=consume)
    consumer.start()
    for i in range(500):
        queue.put(i)
    consumer.join(5)
    assert got == list(range(500))


def test_counters_and_latency_window():
    counters = Counters()
    counters.drop(Drop.QUEUE_FULL)
    counters.drop(Drop.QUEUE_FULL, 2)
    counters.add('pairs')
    counters.add('nothing', 0)
    assert counters[Drop.QUEUE_FULL] == 3 and counters.drops() == {'queue_full': 3}
    assert counters.snapshot() == {'pairs': 1} and counters['pairs'] == 1
    latency = LatencyWindow(size=100)
    assert latency.percentiles() is None
    for value in range(1, 201):
        latency.add(float(value))
    p = latency.percentiles()
    assert p[50] == pytest.approx(150.5) and p[99] <= 200
    latency.clear()
    assert latency.percentiles() is None
