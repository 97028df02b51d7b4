"""Evaluation offline (Predictor over the bag) and online (a real node over real DDS).

One `convitac_node` process serves the whole module (loopback DDS, the run's private domain).
"""

import json
from pathlib import Path
import time

from bag_helpers import write_foreign_bag
import numpy as np
import pytest

from convitac_ros.bags import make_bag
from convitac_ros.data import build_dataset
from convitac_ros.demo import NODE_PARAMETERS
from convitac_ros.evaluation import offline as evaluate
from convitac_ros.evaluation.metrics import EvaluationRecorder, format_table
from convitac_ros.evaluation.offline import evaluate_offline
from convitac_ros.ros.node_process import NodeProcess

NODE = '/convitac_eval_test'


@pytest.fixture(scope='module')
def dataset(synthetic_tag_root):
    return build_dataset('touch_and_go', synthetic_tag_root, 'test')


@pytest.fixture(scope='module')
def predictor(tiny_predictor):
    return tiny_predictor


@pytest.fixture(scope='module')
def made_bag(synthetic_tag_root, tmp_path_factory):
    path = tmp_path_factory.mktemp('bags') / 'tag_test'
    rc = make_bag.main(['--dataset', 'touch_and_go', '--root', str(synthetic_tag_root),
                        '--split', 'test', '--output', str(path), '--fps', '20', '--quiet'])
    assert rc == 0
    return path


@pytest.fixture(scope='module')
def foreign_bag(dataset, tmp_path_factory):
    path = tmp_path_factory.mktemp('bags') / 'foreign'
    samples = [dataset[i] for i in range(len(dataset))]
    write_foreign_bag(path, samples, pad=5, heads=dataset.heads)
    return path, samples


@pytest.fixture(scope='module')
def node_process(tiny_checkpoint, tmp_path_factory):
    """A real node with evaluation settings: reliable inputs, every pair processed."""
    with NodeProcess({'checkpoint': tiny_checkpoint, 'device': 'cpu', **NODE_PARAMETERS},
                     tmp_path_factory.mktemp('node') / 'node.log', name=NODE.strip('/')) as node:
        yield node


def run_evaluate(bag: Path, out: Path, *extra: str) -> dict:
    rc = evaluate.main([str(bag), '--output-dir', str(out), '--quiet', *extra])
    assert rc == 0
    return json.loads((out / 'report.json').read_text())


def test_offline_on_a_foreign_bag_equals_the_predictor_on_the_original_frames(
        foreign_bag, predictor):
    path, samples = foreign_bag
    recorder = evaluate_offline(path, predictor, progress=False)
    stamps = sorted(recorder.truths)
    assert len(stamps) == len(samples) and len(recorder.predictions) == len(samples)
    for stamp, sample in zip(stamps, samples):
        probabilities = predictor.predict(sample.visual, sample.tactile)
        expected = {h: predictor.heads[h][int(np.argmax(p))] for h, p in probabilities.items()}
        assert recorder.predictions[stamp] == expected
    report = recorder.report()
    for head, scores in report['heads'].items():
        truth = [predictor.heads[head][s.labels[head]] for s in samples if s.labels[head] >= 0]
        assert scores['total'] == len(truth)
        assert np.sum(scores['confusion']) == len(truth)


def test_offline_cli_writes_report_and_confusion_pngs(made_bag, tiny_checkpoint, tmp_path,
                                                      capsys):
    report = run_evaluate(made_bag, tmp_path, '--checkpoint', str(tiny_checkpoint),
                          '--device', 'cpu')
    assert report['mode'] == 'offline' and report['drops'] == 0
    assert set(report['heads']) == {'material', 'hardness', 'roughness'}
    assert report['latency_ms']['count'] == report['samples'] > 0
    for head in report['heads']:
        png = tmp_path / f'confusion_{head}.png'
        assert png.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    table = capsys.readouterr().out
    assert 'material' in table and 'latency ms' in table


@pytest.mark.parametrize('which', ['made', 'foreign'])
def test_online_lock_step_accuracy_equals_offline(which, made_bag, foreign_bag, node_process,
                                                  tiny_checkpoint, tmp_path):
    bag = made_bag if which == 'made' else foreign_bag[0]
    common = ['--checkpoint', str(tiny_checkpoint), '--device', 'cpu']
    offline = run_evaluate(bag, tmp_path / 'offline', *common)
    online = run_evaluate(bag, tmp_path / 'online', *common, '--mode', 'online', '--lock-step',
                          '--node', NODE, '--timeout', '60')
    assert online['mode'] == 'online-lockstep'
    assert online['drops'] == 0 and online['answered'] == offline['samples']
    assert online['predictions'] == offline['predictions']
    for head, scores in offline['heads'].items():
        assert online['heads'][head]['correct'] == scores['correct']
        assert online['heads'][head]['confusion'] == scores['confusion']
    assert online['latency_ms']['count'] >= online['samples']
    assert online['extra']['node_latency_ms']['count'] >= online['samples']


def test_online_paced_replay_answers_every_sample(made_bag, node_process, tmp_path):
    started = time.monotonic()
    report = run_evaluate(made_bag, tmp_path, '--mode', 'online', '--node', NODE,
                          '--rate', '2', '--timeout', '60')
    assert report['mode'] == 'online' and report['drops'] == 0
    assert report['pairing_rate'] == pytest.approx(1.0)
    assert report['latency_ms']['p50'] < 2000
    # The bag lasts 2 frames per sample at 20 fps; rate 2 halves that.
    assert time.monotonic() - started < 60


def test_missing_corrupt_and_unlabelled_bags_give_clear_errors(tmp_path, made_bag, capsys):
    assert evaluate.main([str(tmp_path / 'nope'), '--checkpoint', 'x.safetensors']) == 1
    assert 'does not exist' in capsys.readouterr().err
    broken = tmp_path / 'broken'
    broken.mkdir()
    (broken / 'metadata.yaml').write_text('not: [a bag')
    assert evaluate.main([str(broken), '--mode', 'online']) == 1
    assert 'cannot open bag' in capsys.readouterr().err
    assert evaluate.main([str(made_bag)]) == 1
    assert 'needs --checkpoint' in capsys.readouterr().err


def test_report_counts_accuracy_confusion_drops_and_unknown_labels():
    recorder = EvaluationRecorder({'hardness': ['hard', 'soft']}, mode='online')
    recorder.truths = {1: {'hardness': 'hard'}, 2: {'hardness': 'soft'}, 3: {'hardness': 'soft'},
                       4: {'hardness': 'squishy'}, 5: {}}
    recorder.predictions = {1: {'hardness': 'hard'}, 2: {'hardness': 'hard'},
                            4: {'hardness': 'soft'}, 5: {'hardness': 'soft'}}
    recorder.latencies_s = [0.001 * k for k in range(1, 101)]
    recorder.published_sets, recorder.paired_sets = 10, 9
    report = recorder.report()
    hardness = report['heads']['hardness']
    assert (hardness['correct'], hardness['total'], hardness['unknown_truth']) == (1, 4, 1)
    assert hardness['accuracy'] == 0.25
    assert hardness['confusion'] == [[1, 0], [1, 0]]  # the dropped sample 3 is in no cell
    assert (report['samples'], report['answered'], report['drops']) == (5, 4, 1)
    assert report['pairing_rate'] == 0.9
    assert report['latency_ms']['p50'] == pytest.approx(50.5)
    assert report['latency_ms']['max'] == pytest.approx(100.0)
    assert 'hardness' in format_table(report) and '1 dropped' in format_table(report)
    report['extra']['node_counters'] = {
        'pairs': 9, 'inferences': 8, 'dropped total': 1, 'dropped window_filling': 1,
        'camera/image_raw lost in transport': 2, 'tactile/image_raw lost in transport': 1}
    assert ('node: 9 pairs, 8 inferences, 1 dropped (window_filling 1), 3 lost in transport'
            in format_table(report))


def test_an_output_dir_that_is_a_file_is_refused_before_any_work(
        made_bag, tiny_checkpoint, tmp_path, capsys):
    taken = tmp_path / 'report'
    taken.write_text('keep me')
    assert evaluate.main([str(made_bag), '--checkpoint', str(tiny_checkpoint), '--output-dir',
                          str(taken), '--quiet']) == 1
    captured = capsys.readouterr()
    assert 'exists and is not a folder' in captured.err
    assert captured.out == ''  # nothing was evaluated: no table
    assert taken.read_text() == 'keep me'


def test_reports_written_without_output_dir_never_overwrite_each_other(
        made_bag, tiny_checkpoint, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for _ in range(2):
        assert evaluate.main([str(made_bag), '--checkpoint', str(tiny_checkpoint),
                              '--device', 'cpu', '--quiet']) == 0
    name = f'tag_test_offline_{tiny_checkpoint.parent.name}-{tiny_checkpoint.stem}'
    first, second = tmp_path / 'evaluation' / name, tmp_path / 'evaluation' / f'{name}_2'
    assert (first / 'report.json').is_file() and (second / 'report.json').is_file()
    assert json.loads(first.joinpath('report.json').read_text())['heads'] == json.loads(
        second.joinpath('report.json').read_text())['heads']
