"""The drift score: features, calibration, what it catches, metadata, thread, diagnostics."""

from __future__ import annotations

import json
import threading
import time

import cv2
import numpy as np
import pytest
from safetensors import safe_open
from safetensors.torch import load_file, save_file
import torch

from convitac_ros.checkpoint import (
    CheckpointError,
    load_checkpoint,
    read_drift_reference,
    save_checkpoint,
)
from convitac_ros.data import build_dataset
from convitac_ros.drift import (
    DriftMonitor,
    DriftReference,
    DriftState,
    FEATURES,
    GROUPS,
    image_features,
    IMAGE_GROUPS,
    IMAGE_STD_FLOOR,
    InputReference,
    score,
    summarise,
)
from convitac_ros.model import ConViTac, ModelConfig
from convitac_ros.ros.diagnostics import Health, health_status, InputHealth, OK, WARN

SIZE = 64


@pytest.fixture(scope='module')
def frames(synthetic_tag_root):
    """Newest (camera, gel) frames of the synthetic world: training and held-out sets."""
    def newest(split):
        data = build_dataset('touch_and_go', synthetic_tag_root, split)
        return [(data[i].visual[-1], data[i].tactile[0][-1]) for i in range(len(data))]

    return newest('train'), newest('test')


@pytest.fixture(scope='module')
def reference(frames):
    """Image-statistics reference fitted on the training frames, calibrated on half the test."""
    train, test = frames
    held = test[::2]
    inputs = {}
    for k, name in enumerate(('camera', 'tactile')):
        features = np.stack([image_features(f[k], SIZE) for f in train])
        held_features = np.stack([image_features(f[k], SIZE) for f in held])
        inputs[name] = InputReference(summarise(features, held_features, IMAGE_GROUPS,
                                                IMAGE_STD_FLOOR))
    return DriftReference(inputs)


def window_scores(reference, name, frames, change=lambda frame: frame):
    """The node's statistic: medians of 5 consecutive per-set scores."""
    ratios = [score(reference.inputs[name].ratios(image_features(change(f), SIZE), None))
              for f in frames]
    return np.array([np.median(ratios[i:i + 5]) for i in range(0, len(ratios) - 4, 5)])


def test_image_features_have_the_documented_groups_and_see_the_aspect_ratio():
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (80, 96, 3), dtype=np.uint8)
    features = image_features(frame, SIZE)
    assert features.shape == (FEATURES,) == (sum(GROUPS.values()),)
    assert features[0] == pytest.approx(np.log(96 / 80))
    assert image_features(np.ascontiguousarray(frame.transpose(1, 0, 2)), SIZE)[0] == (
        pytest.approx(np.log(80 / 96)))
    assert np.all(np.isfinite(features))


def test_held_out_frames_of_the_training_world_score_under_one(reference, frames):
    unseen = frames[1][1::2]  # the half of the test split the thresholds did not see
    for k, name in enumerate(('camera', 'tactile')):
        scores = window_scores(reference, name, [f[k] for f in unseen])
        assert scores.max() < 1.0, (name, scores)


def digit_colours(frame):
    """Another sensor model: a DIGIT-like blue-green gel instead of the grey GelSight one."""
    return np.clip(0.6 * frame.astype(np.float32) + [20, 60, 110], 0, 255).astype(np.uint8)


def zoomed(frame):
    """A wrong crop: the middle half of the frame, same aspect ratio."""
    h, w = frame.shape[:2]
    return frame[h // 4:3 * h // 4, w // 4:3 * w // 4]


def damaged(frame):
    """A damaged gel: a dark torn patch and a bright scratch."""
    out = frame.copy()
    h, w = out.shape[:2]
    cv2.circle(out, (w // 3, h // 2), h // 5, (10, 10, 10), -1)
    cv2.line(out, (0, 0), (w, h), (250, 250, 250), 3)
    return out


def elsewhere(frame):
    """A camera looking elsewhere: a blurred, featureless scene."""
    rng = np.random.default_rng(frame.size)
    return cv2.GaussianBlur(rng.integers(0, 256, frame.shape, dtype=np.uint8), (0, 0), 3)


@pytest.mark.parametrize('name,index,change', [
    ('tactile', 1, digit_colours),
    ('tactile', 1, zoomed),
    ('tactile', 1, lambda f: np.ascontiguousarray(np.rot90(f))),
    ('tactile', 1, damaged),
    ('camera', 0, elsewhere),
], ids=['another sensor', 'wrong crop', 'rotation', 'damaged gel', 'camera elsewhere'])
def test_inputs_unlike_the_training_frames_score_over_one(reference, frames, name, index,
                                                          change):
    scores = window_scores(reference, name, [f[index] for f in frames[1]], change)
    assert scores.min() > 1.0, scores


def test_the_thresholds_are_calibrated_on_windows_of_held_out_frames():
    rng = np.random.default_rng(1)
    train, held = rng.normal(size=(500, 4)), rng.normal(size=(200, 4))
    summary = summarise(train, held)
    assert len(summary.thresholds) == 1 and summary.thresholds[0] >= 1.0
    assert np.median(summary.ratio(rng.normal(size=(200, 4)))) < 1.0
    assert summary.ratio(np.full(4, 6.0)) > 1.0  # six standard deviations away
    with pytest.raises(ValueError, match='at least 2'):
        summarise(train[:1], held)


def small_reference(embed_dim=None, inputs=('camera', 'tactile')):
    rng = np.random.default_rng(2)

    def part(size, groups=None):
        return summarise(rng.normal(size=(20, size)), rng.normal(size=(10, size)), groups)
    return DriftReference({name: InputReference(
        part(FEATURES, IMAGE_GROUPS), None if embed_dim is None else part(embed_dim))
        for name in inputs})


def test_a_reference_round_trips_through_json_and_bad_ones_are_refused():
    reference = small_reference(embed_dim=8)
    raw = json.loads(json.dumps(reference.to_dict()))
    back = DriftReference.from_dict(raw, ['camera', 'tactile'], 8)
    np.testing.assert_array_equal(back.inputs['tactile'].embedding.mean,
                                  reference.inputs['tactile'].embedding.mean)
    assert back.inputs['camera'].image.thresholds == reference.inputs['camera'].image.thresholds
    assert DriftReference.from_dict({**raw, 'version': 99}, ['camera', 'tactile'], 8) is None
    bad = json.loads(json.dumps(raw))
    bad['inputs']['camera']['image']['std'][0] = -1.0
    bad_nan = json.loads(json.dumps(raw))
    bad_nan['inputs']['tactile']['image']['mean'][3] = float('nan')
    short = json.loads(json.dumps(raw))
    short['inputs']['tactile']['embedding']['mean'] = [0.0] * 7
    for broken, inputs, message in [
            (bad, ['camera', 'tactile'], 'positive'),
            (bad_nan, ['camera', 'tactile'], 'finite'),
            (short, ['camera', 'tactile'], '8 finite numbers'),
            (raw, ['camera', 'tactile', 'tactile_b'], 'inputs must be'),
            ({**raw, 'features': 3}, ['camera', 'tactile'], 'features'),
            ('drift', ['camera', 'tactile'], 'mapping')]:
        with pytest.raises(ValueError, match=message):
            DriftReference.from_dict(broken, inputs, 8)


def tiny_model():
    config = ModelConfig.tiny(heads=(('material', 3),))
    return ConViTac(config), {'material': ['a', 'b', 'c']}, config.projection_dim


def test_a_checkpoint_carries_its_reference_and_a_hostile_one_does_not_load(tmp_path):
    model, heads, dim = tiny_model()
    reference = small_reference(embed_dim=dim)
    path = save_checkpoint(tmp_path / 'm.safetensors', model, heads=heads, drift=reference)
    loaded = load_checkpoint(path)
    assert loaded.drift.inputs['tactile'].image.thresholds == (
        reference.inputs['tactile'].image.thresholds)
    assert read_drift_reference(path).inputs.keys() == {'camera', 'tactile'}
    old = save_checkpoint(tmp_path / 'old.safetensors', model, heads=heads)
    assert load_checkpoint(old).drift is None and read_drift_reference(old) is None

    with safe_open(str(path), 'pt') as handle:
        metadata = handle.metadata()
    drift = json.loads(metadata['drift'])
    drift['inputs']['camera']['image']['thresholds'] = [1e308 * 10] * len(GROUPS)  # inf
    hostile = tmp_path / 'hostile.safetensors'
    save_file(load_file(path), hostile, metadata={**metadata, 'drift': json.dumps(drift)})
    for read in (load_checkpoint, read_drift_reference):
        with pytest.raises(CheckpointError, match='hostile.safetensors.*thresholds'):
            read(hostile)
    with pytest.raises(ValueError, match='inputs must be'):
        save_checkpoint(tmp_path / 'x.safetensors', model, heads=heads,
                        drift=small_reference(dim, inputs=('camera',)))


def test_the_monitor_scores_a_sample_of_sets_on_its_own_thread():
    reference = small_reference()
    calls = []

    def frames():
        calls.append(threading.current_thread().name)
        return [np.zeros((48, 64, 3), np.uint8), np.zeros((80, 96, 3), np.uint8)]

    monitor = DriftMonitor(reference, SIZE, None, period_s=0.3)
    try:
        started = time.monotonic()
        while time.monotonic() - started < 0.7:
            monitor.offer(frames)  # the worker's call for every set
            time.sleep(0.005)
        deadline = time.monotonic() + 5
        while len(monitor.snapshot()) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        monitor.close()
    assert 2 <= len(calls) <= 3, calls  # about one set per period, not every set
    assert set(calls) == {'convitac_drift'}
    state = monitor.snapshot()['tactile']
    assert state.samples == len(calls) and set(state.ratios) == {'image'}
    assert state.score > 1  # black frames are nothing like the reference


def health(drift):
    inputs = [InputHealth('camera/image_raw', 30.0, 300, 0.03, 0, False, 0),
              InputHealth('tactile/image_raw', 30.0, 300, 0.02, 0, False, 0)]
    return Health(node_name='convitac_node', state='active', model='tiny', device='cpu',
                  inputs=inputs, drift=drift)


def test_diagnostics_warn_for_a_drifting_input_and_say_unavailable_without_a_reference():
    status = health_status(health(None))
    values = {kv.key: kv.value for kv in status.values}
    assert status.level == OK
    assert values['tactile/image_raw drift'].startswith('unavailable')
    status = health_status(health([DriftState(0.4, {'image': 0.4}, 3), None]))
    values = {kv.key: kv.value for kv in status.values}
    assert status.level == OK and values['camera/image_raw drift'] == '0.400'
    assert values['tactile/image_raw drift'].startswith('n/a')
    status = health_status(health([DriftState(0.4, {'image': 0.4}, 3),
                                   DriftState(2.5, {'image': 2.5, 'embedding': 0.7}, 6)]))
    values = {kv.key: kv.value for kv in status.values}
    assert status.level == WARN
    assert 'tactile/image_raw looks unlike the training inputs (drift 2.5x' in status.message
    assert 'camera/image_raw looks' not in status.message
    assert values['tactile/image_raw drift parts'].startswith('image 2.500, embedding 0.700')
    off = health([None, None])
    off.drift_off = True
    values = {kv.key: kv.value for kv in health_status(off).values}
    assert values['camera/image_raw drift'] == 'off (drift_period 0)'


def test_training_writes_a_reference_with_embeddings_into_its_checkpoints(tiny_run_dir):
    for name in ('best', 'last'):
        loaded = load_checkpoint(tiny_run_dir / f'{name}.safetensors')
        assert set(loaded.drift.inputs) == {'camera', 'tactile'}
        for part in loaded.drift.inputs.values():
            assert part.embedding is not None
            assert part.embedding.mean.shape == (loaded.config.projection_dim,)
            assert min(part.image.thresholds) >= 1.0


def test_a_reference_is_added_to_an_older_checkpoint_in_one_command(synthetic_tag_root,
                                                                    tmp_path, capsys):
    from training.command import run_command
    from training.drift_reference import main

    model, heads, _ = tiny_model()
    path = save_checkpoint(tmp_path / 'old.safetensors', model, heads=heads)
    assert load_checkpoint(path).drift is None
    argv = [str(path), '--config', 'demo', '--set', f'data.root={synthetic_tag_root}']
    assert run_command('drift_reference.py', main, argv) == 0
    assert 'drift reference added for camera, tactile' in capsys.readouterr().out
    loaded = load_checkpoint(path)
    assert loaded.drift.inputs['tactile'].embedding is not None
    for key, value in model.state_dict().items():  # the weights are untouched
        assert torch.equal(loaded.model.state_dict()[key], value), key
    missing = [str(tmp_path / 'nothing.safetensors'), *argv[1:]]
    assert run_command('drift_reference.py', main, missing) == 2
    assert capsys.readouterr().err.count('\n') == 1
