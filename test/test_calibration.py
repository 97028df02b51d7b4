"""Calibration: the one metrics module, temperature scaling and its application everywhere.

ROC AUC, Brier score and ECE are checked against naive loops written from their definitions;
the temperature fit against a world whose true temperature is known; the Predictor, the ONNX
export and the onnxruntime backend against each other with temperatures applied.
"""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import torch

from convitac_ros.calibration import fit_temperature, softmax, temperatures_of
from convitac_ros.checkpoint import CheckpointError, save_checkpoint
from convitac_ros.evaluation.metrics import (
    brier_score,
    EvaluationRecorder,
    expected_calibration_error,
    head_scores,
    roc_auc,
    save_report,
)
from convitac_ros.export import main as export
from convitac_ros.inference import Predictor
from convitac_ros.model import ConViTac, ModelConfig
from convitac_ros.runtime_onnx import OnnxModelError, OnnxPredictor

torch.set_num_threads(1)
PNG = b'\x89PNG\r\n\x1a\n'


def naive_auc(scores, positive):
    pairs = [(p, n) for p, n in itertools.product(scores[positive], scores[~positive])]
    return np.mean([1.0 if p > n else 0.5 if p == n else 0.0 for p, n in pairs])


def naive_ece(confidence, hit, bins=15):
    total = 0.0
    for k in range(bins):
        low, high = k / bins, (k + 1) / bins
        inside = (confidence >= low) & ((confidence < high) if k < bins - 1 else
                                        (confidence <= high))
        if inside.any():
            total += inside.sum() * abs(hit[inside].mean() - confidence[inside].mean())
    return total / len(confidence)


def test_auc_brier_and_ece_equal_their_definitions():
    rng = np.random.default_rng(0)
    scores = np.round(rng.random(60), 1)  # ties on purpose
    positive = rng.random(60) < scores
    assert roc_auc(scores, positive) == pytest.approx(naive_auc(scores, positive))
    assert roc_auc(scores, np.ones(60, bool)) is None
    assert brier_score(scores, positive) == pytest.approx(np.mean((scores - positive) ** 2))
    assert expected_calibration_error(scores, positive) == pytest.approx(
        naive_ece(scores, positive))
    assert expected_calibration_error(np.array([1.0, 1.0]), np.array([1, 1])) == 0.0


def test_head_scores_two_class_uses_p_of_the_second_class_and_multi_class_the_top_class():
    probabilities = np.array([[0.9, 0.1], [0.2, 0.8], [0.4, 0.6], [0.7, 0.3]])
    target = np.array([0, 1, 0, 1])
    scores = head_scores(['failure', 'success'], probabilities.argmax(1), target, probabilities)
    assert scores['accuracy'] == 0.5 and scores['total'] == 4
    assert scores['roc_auc'] == pytest.approx(naive_auc(probabilities[:, 1], target == 1))
    assert scores['brier'] == pytest.approx(np.mean((probabilities[:, 1] - target) ** 2))
    assert scores['ece'] == pytest.approx(naive_ece(probabilities[:, 1], target == 1))
    three = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]])
    scores = head_scores(['a', 'b', 'c'], three.argmax(1), np.array([0, 1]), three)
    assert scores['roc_auc'] is None and scores['brier'] is None
    assert scores['ece'] == pytest.approx(naive_ece(np.array([0.7, 0.6]), np.array([1, 0])))


def test_recorder_reports_the_calibration_fields_and_draws_a_reliability_diagram(tmp_path):
    recorder = EvaluationRecorder({'grasp_success': ['failure', 'success']})
    for stamp, (p, truth) in enumerate([(0.9, 'success'), (0.2, 'failure'), (0.7, 'failure')]):
        recorder.truths[stamp] = {'grasp_success': truth}
        recorder.record(stamp, {'grasp_success': np.array([1 - p, p])})
    recorder.truths[9] = {'grasp_success': 'success'}  # never answered: a drop, not scored
    report = recorder.report()
    head = report['heads']['grasp_success']
    assert head['total'] == 4 and head['correct'] == 2 and report['drops'] == 1
    assert head['roc_auc'] == pytest.approx(1.0)
    assert head['brier'] == pytest.approx(np.mean([0.1 ** 2, 0.2 ** 2, 0.7 ** 2]))
    assert head['ece'] == pytest.approx(naive_ece(np.array([0.9, 0.2, 0.7]),
                                                  np.array([1, 0, 0])))
    paths = save_report(report, tmp_path)
    assert (tmp_path / 'reliability_grasp_success.png').read_bytes()[:8] == PNG
    assert json.loads(paths[0].read_text())['heads']['grasp_success']['ece'] == head['ece']


def test_fitted_temperature_recovers_the_one_that_made_the_labels():
    rng = np.random.default_rng(1)
    logits = rng.normal(0.0, 3.0, (4000, 3))
    target = np.array([rng.choice(3, p=p) for p in softmax(logits, 2.5)])
    assert fit_temperature(logits, target) == pytest.approx(2.5, rel=0.1)
    assert fit_temperature(logits, np.full(4000, -1)) == 1.0


def test_a_validation_split_without_an_error_leaves_the_temperature_at_one():
    """Perfectly classified samples do not identify T (the NLL falls on towards T -> 0)."""
    from convitac_ros.calibration import fit_temperatures

    rng = np.random.default_rng(2)
    logits = rng.normal(0.0, 1.0, (60, 4))
    right = logits.argmax(axis=1)
    assert fit_temperature(logits, right) == 1.0
    wrong_once = right.copy()
    wrong_once[0] = (right[0] + 1) % 4
    assert fit_temperature(logits, wrong_once) != 1.0  # one error: a minimum exists
    record = fit_temperatures({'material': (logits, right), 'hardness': (logits, wrong_once),
                               'roughness': (logits, np.full(60, -1))})
    assert record['temperatures']['material'] == 1.0
    assert 'no error to fit' in record['not_fitted']['material']
    assert record['not_fitted']['roughness'] == 'no labelled validation sample'
    assert 'hardness' not in record['not_fitted']


def test_temperatures_from_metadata_default_to_one_and_refuse_bad_values():
    heads = {'grasp_success': ['failure', 'success'], 'hardness': ['hard', 'soft']}
    assert temperatures_of({}, heads, 'x') == {'grasp_success': 1.0, 'hardness': 1.0}
    record = {'calibration': {'temperatures': {'grasp_success': 2.0}}}
    assert temperatures_of(record, heads, 'x')['grasp_success'] == 2.0
    for bad in (0.0, -1.0, float('nan'), 1e9, 'hot', True):
        with pytest.raises(ValueError, match='temperature of head grasp_success'):
            temperatures_of({'calibration': {'temperatures': {'grasp_success': bad}}}, heads,
                            'x')
    with pytest.raises(ValueError, match='does not have'):
        temperatures_of({'calibration': {'temperatures': {'material': 2.0}}}, heads, 'x')


def two_sensor_checkpoint(path, temperatures=None):
    torch.manual_seed(0)
    config = ModelConfig.tiny(num_tactile=2, heads=(('grasp_success', 2), ('hardness', 2)))
    heads = {'grasp_success': ['failure', 'success'], 'hardness': ['hard', 'soft']}
    training = {} if temperatures is None else {'calibration': {'temperatures': temperatures}}
    return save_checkpoint(path, ConViTac(config), heads=heads, training=training)


def frames(predictor, seed):
    rng = np.random.default_rng(seed)
    return ([rng.integers(0, 256, (80, 96, 3), dtype=np.uint8)
             for _ in range(predictor.visual_len)],
            [[rng.integers(0, 256, (40, 30, 3), dtype=np.uint8)
              for _ in range(predictor.tactile_len)] for _ in range(predictor.num_tactile)])


def test_predictor_onnx_export_and_onnxruntime_apply_the_same_temperatures(tmp_path):
    temperatures = {'grasp_success': 3.0, 'hardness': 0.5}
    checkpoint = two_sensor_checkpoint(tmp_path / 'calibrated.safetensors', temperatures)
    calibrated = Predictor.from_checkpoint(checkpoint, device='cpu')
    raw = Predictor.from_checkpoint(checkpoint, device='cpu', calibrated=False)
    assert calibrated.temperatures == temperatures
    onnx_file = tmp_path / 'calibrated.onnx'
    assert export([str(checkpoint), '-o', str(onnx_file)]) == 0
    runtime = OnnxPredictor(onnx_file, device='cpu')
    assert runtime.temperatures == temperatures
    for seed in range(3):
        sample = frames(calibrated, seed)
        # log p at T = 1 is the logits up to a constant: softmax(log p / T) = softmax(z / T).
        uncalibrated = raw.predict(*sample)
        expected = calibrated.predict(*sample)
        for head, t in temperatures.items():
            np.testing.assert_allclose(expected[head],
                                       softmax(np.log(uncalibrated[head]), t), atol=1e-5)
            np.testing.assert_allclose(runtime.predict(*sample)[head], expected[head],
                                       atol=1e-5)
            assert not np.allclose(uncalibrated[head], expected[head], atol=1e-3)
    # The onnxruntime backend refuses a file whose graph applies other temperatures than asked.
    with pytest.raises(OnnxModelError, match='--no-calibration'):
        OnnxPredictor(onnx_file, device='cpu', calibrated=False)
    plain = tmp_path / 'plain.onnx'
    assert export([str(checkpoint), '-o', str(plain), '--no-calibration']) == 0
    uncalibrated = OnnxPredictor(plain, device='cpu', calibrated=False)
    sample = frames(calibrated, 7)
    np.testing.assert_allclose(uncalibrated.predict(*sample)['grasp_success'],
                               raw.predict(*sample)['grasp_success'], atol=1e-5)
    with pytest.raises(OnnxModelError, match='export again with convitac_export'):
        OnnxPredictor(plain, device='cpu')


def test_old_checkpoints_without_temperatures_run_at_temperature_one(tmp_path):
    checkpoint = two_sensor_checkpoint(tmp_path / 'old.safetensors')
    predictor = Predictor.from_checkpoint(checkpoint, device='cpu')
    assert predictor.temperatures == {'grasp_success': 1.0, 'hardness': 1.0}
    sample = frames(predictor, 0)
    np.testing.assert_array_equal(
        predictor.predict(*sample)['grasp_success'],
        Predictor.from_checkpoint(checkpoint, device='cpu',
                                  calibrated=False).predict(*sample)['grasp_success'])
    assert export([str(checkpoint), '-o', str(tmp_path / 'old.onnx')]) == 0
    OnnxPredictor(tmp_path / 'old.onnx', device='cpu', calibrated=False)  # T = 1 either way


def test_a_checkpoint_with_a_bad_temperature_is_refused_with_its_name(tmp_path):
    checkpoint = two_sensor_checkpoint(tmp_path / 'bad.safetensors', {'grasp_success': 0.0})
    with pytest.raises(CheckpointError, match='bad.safetensors: temperature of head'):
        Predictor.from_checkpoint(checkpoint, device='cpu')
    assert export([str(checkpoint), '-o', str(tmp_path / 'bad.onnx')]) == 1
    assert not (tmp_path / 'bad.onnx').exists()
