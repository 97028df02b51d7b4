"""InputSpec reads the preprocess record once; FrameStager checks and stages frames, reused."""

import numpy as np
import pytest

from convitac_ros.checkpoint import default_preprocess
from convitac_ros.model import ModelConfig
from convitac_ros.preprocess import resize_frames
from convitac_ros.staging import FrameStager, InputSpec, MAX_HOST_BUFFERS


def test_input_spec_round_trips_the_checkpoint_record():
    record = default_preprocess(ModelConfig.tiny())
    spec = InputSpec.from_record(record)
    assert spec.to_record() == record
    assert spec.frames_per_sample == spec.visual_len + spec.num_tactile * spec.tactile_len
    frames = spec.random_frames(2)
    assert frames.shape == spec.staging_shape(2) == (2, spec.frames_per_sample,
                                                     spec.image_size, spec.image_size, 3)
    assert frames.dtype == np.uint8
    np.testing.assert_array_equal(frames, spec.random_frames(2))


def sample(rng, visual_size=(48, 80), tactile_size=(30, 20), visual_len=2, tactile_len=1,
           sensors=2):
    visual = [rng.integers(0, 256, (*visual_size, 3), dtype=np.uint8) for _ in range(visual_len)]
    tactile = [[rng.integers(0, 256, (*tactile_size, 3), dtype=np.uint8)
                for _ in range(tactile_len)] for _ in range(sensors)]
    return visual, tactile


SPEC = InputSpec(16, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), visual_len=2, tactile_len=1,
                 num_tactile=2)


def test_resized_staging_is_the_training_resize_in_staging_order():
    rng = np.random.default_rng(0)
    samples = [sample(rng), sample(rng)]
    staged = FrameStager(SPEC).resized(samples)
    flat = [f for visual, tactile in samples for f in [*visual, *tactile[0], *tactile[1]]]
    np.testing.assert_array_equal(staged.reshape(-1, 16, 16, 3), resize_frames(flat, 16))


def test_received_staging_copies_each_frame_once_grouped_by_size():
    rng = np.random.default_rng(1)
    visual, tactile = sample(rng)
    tactile[1][0] = rng.integers(0, 256, (9, 7, 3), dtype=np.uint8)
    stager = FrameStager(SPEC)
    key, groups = stager.received([(visual, tactile)])
    assert key == ((48, 80), (48, 80), (30, 20), (9, 7))
    assert [(g.size, g.positions) for g in groups] == [((48, 80), (0, 1)), ((30, 20), (2,)),
                                                       ((9, 7), (3,))]
    np.testing.assert_array_equal(groups[0].buffer, np.stack(visual))
    assert not np.shares_memory(groups[0].buffer, visual[0])  # a copy, safe to send later
    _, again = stager.received([(visual, tactile)])
    assert again[0].buffer is groups[0].buffer  # reused, not reallocated


def test_host_buffers_are_bounded_whatever_the_sizes():
    stager = FrameStager(SPEC)
    rng = np.random.default_rng(2)
    for height in range(10, 10 + 3 * MAX_HOST_BUFFERS):
        stager.received([sample(rng, visual_size=(height, 12), tactile_size=(height, 5))])
    assert len(stager._buffers) == MAX_HOST_BUFFERS  # noqa: SLF001


@pytest.mark.parametrize('change, message', [
    (lambda v, t: (v[:1], t), 'expected 2 visual frames'),
    (lambda v, t: (v, t[:1]), 'expected 2 tactile sensor'),
    (lambda v, t: ([v[0].astype(np.float32), v[1]], t), 'visual frame 0 must be uint8'),
])
def test_both_stagings_refuse_bad_samples_naming_them(change, message):
    rng = np.random.default_rng(3)
    good, bad = sample(rng), change(*sample(rng))
    stager = FrameStager(SPEC)
    for stage in (stager.resized, stager.received):
        with pytest.raises(ValueError, match=f'sample 1: {message}'):
            stage([good, bad])
