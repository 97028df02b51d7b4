"""ApproximateTimeSynchronizer matches message_filters semantics (reference/ros.md)."""

from __future__ import annotations

import threading
from types import SimpleNamespace

from hypothesis import given, settings
from hypothesis import strategies as st
import pytest

from convitac_ros.ros.stamps import stamp_to_ns
from convitac_ros.ros.synchronizer import ApproximateTimeSynchronizer


def msg(stamp_ns: int, tag: str = '') -> SimpleNamespace:
    """A duck-typed message with a header stamp."""
    stamp = SimpleNamespace(sec=stamp_ns // 10**9, nanosec=stamp_ns % 10**9)
    return SimpleNamespace(header=SimpleNamespace(stamp=stamp), tag=tag)


def ms(value: float) -> int:
    return int(round(value * 1e6))


class Recorder:
    """Collects emitted sets."""

    def __init__(self) -> None:
        self.sets: list[tuple] = []

    def __call__(self, *msgs) -> None:
        self.sets.append(msgs)

    def tags(self) -> list[tuple[str, ...]]:
        return [tuple(m.tag for m in s) for s in self.sets]


def make(num_inputs: int = 2, queue_size: int = 10, slop: float = 0.010, **kwargs):
    rec = Recorder()
    return ApproximateTimeSynchronizer(num_inputs, queue_size, slop, rec, **kwargs), rec


def test_stamp_to_ns_reads_header_and_rejects_headerless():
    assert stamp_to_ns(msg(3 * 10**9 + 7)) == 3 * 10**9 + 7
    assert stamp_to_ns(SimpleNamespace()) is None
    assert stamp_to_ns(SimpleNamespace(header=SimpleNamespace())) is None


def test_pair_within_slop_is_emitted_in_input_order():
    sync, rec = make()
    sync.add(msg(ms(100), 'a'), 0)
    assert rec.sets == []
    out = sync.add(msg(ms(105), 'b'), 1)
    assert rec.tags() == [('a', 'b')]
    assert out == rec.sets[0]
    assert sync.queued() == [0, 0]


def test_pair_exactly_slop_apart_never_matches():
    sync, rec = make(slop=0.010)
    sync.add(msg(ms(100), 'a'), 0)
    sync.add(msg(ms(110), 'b'), 1)
    assert rec.sets == []
    assert sync.queued() == [1, 1]


def test_closest_candidate_wins():
    sync, rec = make(slop=0.010)
    sync.add(msg(ms(100), 'far'), 1)
    sync.add(msg(ms(104), 'near'), 1)
    sync.add(msg(ms(105), 'cam'), 0)
    assert rec.tags() == [('cam', 'near')]
    assert sync.queued() == [0, 1]


def test_ties_go_to_the_earlier_inserted():
    sync, rec = make(slop=0.010)
    sync.add(msg(ms(108), 'later_stamp_first_in'), 1)
    sync.add(msg(ms(102), 'earlier_stamp_second_in'), 1)
    sync.add(msg(ms(105), 'cam'), 0)
    assert rec.tags() == [('cam', 'later_stamp_first_in')]


def test_same_stamp_overwrites_previous_message():
    sync, rec = make()
    sync.add(msg(ms(100), 'old'), 0)
    sync.add(msg(ms(100), 'new'), 0)
    assert sync.queued() == [1, 0]
    sync.add(msg(ms(100), 'b'), 1)
    assert rec.tags() == [('new', 'b')]


def test_overflow_deletes_the_smallest_stamp():
    sync, rec = make(queue_size=3, slop=0.005)
    for t in (130, 100, 120, 110):
        sync.add(msg(ms(t), str(t)), 0)
    assert sync.queued() == [3, 0]
    assert sync.dropped_overflow == 1
    sync.add(msg(ms(101), 'b'), 1)
    assert rec.sets == []  # 100 was evicted: 101 has no partner within slop
    sync.add(msg(ms(111), 'c'), 1)
    assert rec.tags() == [('110', 'c')]


def test_output_can_be_out_of_order():
    sync, rec = make(slop=0.010)
    sync.add(msg(ms(200), 'a200'), 0)
    sync.add(msg(ms(100), 'a100'), 0)
    sync.add(msg(ms(201), 'b201'), 1)
    sync.add(msg(ms(101), 'b101'), 1)
    assert rec.tags() == [('a200', 'b201'), ('a100', 'b101')]


def test_unmatched_older_messages_stay_until_overflow():
    sync, rec = make(slop=0.010)
    sync.add(msg(ms(100), 'a100'), 0)
    sync.add(msg(ms(200), 'a200'), 0)
    sync.add(msg(ms(201), 'b201'), 1)
    assert rec.tags() == [('a200', 'b201')]
    assert sync.queued() == [1, 0]
    sync.add(msg(ms(99), 'b99'), 1)
    assert rec.tags()[-1] == ('a100', 'b99')


def test_purge_older_drops_stale_messages_after_a_set():
    sync, rec = make(slop=0.010, purge_older=True)
    sync.add(msg(ms(100), 'a100'), 0)
    sync.add(msg(ms(200), 'a200'), 0)
    sync.add(msg(ms(201), 'b201'), 1)
    assert sync.queued() == [0, 0]
    assert sync.dropped_purged == 1


def test_three_inputs_first_feasible_combination_wins_not_smallest_spread():
    # New message on input 0 at t=100; candidates sorted by distance to 100:
    #   input 1: 103 then 96; input 2: 97 then 104.
    # Product order (input 1 slowest): (103, 97) spread 6 -> feasible with slop 7 -> emitted,
    # although (103, 104) would have the smaller spread 4.
    sync, rec = make(num_inputs=3, slop=0.007)
    sync.add(msg(ms(96), 'b96'), 1)
    sync.add(msg(ms(103), 'b103'), 1)
    sync.add(msg(ms(104), 'c104'), 2)
    sync.add(msg(ms(97), 'c97'), 2)
    assert rec.sets == []
    sync.add(msg(ms(100), 'a100'), 0)
    assert rec.tags() == [('a100', 'b103', 'c97')]


def test_three_inputs_skip_infeasible_combination():
    sync, rec = make(num_inputs=3, slop=0.005)
    sync.add(msg(ms(104), 'b104'), 1)
    sync.add(msg(ms(96), 'c96'), 2)
    sync.add(msg(ms(101), 'c101'), 2)
    sync.add(msg(ms(100), 'a100'), 0)
    # (104, 101) spread 4 < 5 is the first feasible one; (104, 96) spread 8 is rejected.
    assert rec.tags() == [('a100', 'b104', 'c101')]


def test_input_without_candidates_stops_matching():
    sync, rec = make(num_inputs=3)
    sync.add(msg(ms(100), 'a'), 0)
    sync.add(msg(ms(101), 'b'), 1)
    assert rec.sets == []
    sync.add(msg(ms(102), 'c'), 2)
    assert rec.tags() == [('a', 'b', 'c')]


def test_headerless_is_dropped_or_stamped_with_the_clock():
    sync, rec = make()
    assert sync.add(SimpleNamespace(tag='x'), 0) is None
    assert sync.dropped_headerless == 1
    sync, rec = make(allow_headerless=True, clock_ns=lambda: ms(100))
    sync.add(SimpleNamespace(tag='x'), 0)
    sync.add(msg(ms(101), 'b'), 1)
    assert rec.tags() == [('x', 'b')]


def test_explicit_stamp_overrides_header():
    sync, rec = make()
    sync.add(msg(0, 'zero'), 0, stamp_ns=ms(500))
    sync.add(msg(ms(501), 'b'), 1)
    assert rec.tags() == [('zero', 'b')]


def test_clear_forgets_everything():
    sync, rec = make()
    sync.add(msg(ms(100)), 0)
    sync.clear()
    sync.add(msg(ms(100)), 1)
    assert rec.sets == [] and sync.queued() == [0, 1]


@pytest.mark.parametrize(
    'kwargs', [{'num_inputs': 1}, {'queue_size': 0}, {'slop': -0.1}])
def test_invalid_arguments_raise(kwargs):
    with pytest.raises(ValueError):
        make(**kwargs)
    with pytest.raises(IndexError):
        make()[0].add(msg(0), 2)


def test_callback_runs_outside_the_lock():
    holder = {}

    def callback(*msgs):
        # Re-entering the synchronizer from the callback would deadlock if the lock were held.
        holder['queued'] = holder['sync'].queued()

    holder['sync'] = ApproximateTimeSynchronizer(2, 5, 0.01, callback)
    holder['sync'].add(msg(ms(1)), 0)
    holder['sync'].add(msg(ms(1)), 1)
    assert holder['queued'] == [0, 0]


def test_concurrent_adds_never_emit_a_message_twice():
    sync, rec = make(queue_size=1000, slop=0.004)

    def feed(index):
        for i in range(500):
            sync.add(msg(ms(10 * i + index), f'{index}:{i}'), index)

    threads = [threading.Thread(target=feed, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seen = [m for s in rec.sets for m in s]
    assert len(seen) == len({id(m) for m in seen})
    assert len(rec.sets) == 500


streams = st.lists(
    st.tuples(st.integers(0, 2), st.integers(0, 200)), min_size=1, max_size=120)


@settings(max_examples=150, deadline=None)
@given(events=streams, slop_ms=st.integers(0, 30), queue_size=st.integers(1, 12),
       purge=st.booleans())
def test_property_sets_are_narrower_than_slop_and_never_reuse_a_message(
        events, slop_ms, queue_size, purge):
    sync, rec = make(num_inputs=3, queue_size=queue_size, slop=slop_ms / 1000,
                     purge_older=purge)
    for i, (index, t) in enumerate(events):
        sync.add(msg(ms(t), f'{i}'), index)
        assert all(n <= queue_size for n in sync.queued())
    used = set()
    for emitted in rec.sets:
        stamps = [stamp_to_ns(m) for m in emitted]
        assert max(stamps) - min(stamps) < ms(slop_ms)
        for k, m in enumerate(emitted):
            assert events[int(m.tag)][0] == k  # each message comes out on its own input
            assert m.tag not in used
            used.add(m.tag)
