"""A team's own grasps end to end: two-finger recordings -> labels -> dataset -> training -> node.

Recordings are written like `ros2 bag record` of a gripper's drivers (`recording_helpers`):
absolute topic names under `/left_hand`, a JPEG camera, two raw GelSight streams, a lift check
publishing std_msgs/Bool after each grasp and ground truth on
`/left_hand/ground_truth/grasp_success`. The grasps are the synthetic grasp world's trials.
"""

from __future__ import annotations

import json
from pathlib import Path

from node_harness import NodeProcess
import numpy as np
import pytest
from recording_helpers import labels_csv, write_recording
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import get_typestore, Stores
import torch

from convitac_ros.bags import contact_episodes as label
from convitac_ros.bags import make_dataset
from convitac_ros.bags.contact_episodes import ContactTrace, Episode, outcome_rows
from convitac_ros.bags.labels_file import LabelsError, read_labels
from convitac_ros.bags.samples import index_bag
from convitac_ros.checkpoint import load_checkpoint
from convitac_ros.data import build_dataset
from convitac_ros.data.synthetic.grasp_world import generate_feeling_of_success
from convitac_ros.evaluation import offline as evaluate
from convitac_ros.ros.contact import ContactDetector
from training.train_config import load_config

NS = '/left_hand'
CAMERA = f'{NS}/wrist_cam/color/image_raw'
FINGERS = [f'{NS}/gelsight_left/image_raw', f'{NS}/gelsight_right/image_raw']
OUTCOME = f'{NS}/lift_check/success'
TOPICS = ['--camera-topic', CAMERA, '--tactile-topic', FINGERS[0], '--tactile-topic', FINGERS[1]]
THRESHOLD = label.NODE_THRESHOLD  # the node's default; this world's grasps score well above
GRASPS = {'session_a': 12, 'session_b': 4, 'session_c': 6}


@pytest.fixture(scope='module')
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp('grasp_world')
    generate_feeling_of_success(root, 40, seed=0)
    return build_dataset('feeling_of_success', root, 'all')


@pytest.fixture(scope='module')
def recordings(world, tmp_path_factory):
    """Three recordings of the gripper: two to learn from (train, validation), one held out."""
    folder = tmp_path_factory.mktemp('grasps')
    out, start = {}, 0
    for name, count in GRASPS.items():
        out[name] = (folder / name, write_recording(
            folder / name, [world[i] for i in range(start, start + count)], world.heads,
            CAMERA, FINGERS, label_heads=('grasp_success',), outcome_topic=OUTCOME,
            touch_from=1, truth_namespace=NS))
        start += count
    return folder, out


@pytest.fixture(scope='module')
def dataset(recordings, tmp_path_factory):
    _, bags = recordings
    data = tmp_path_factory.mktemp('grasp_data') / 'dataset'
    assert make_dataset.main([str(bags['session_a'][0]), str(bags['session_b'][0]), '-o',
                              str(data), '--outcome-topic', OUTCOME, '--threshold',
                              str(THRESHOLD), '--val-recordings', '1', '--quiet',
                              *TOPICS]) == 0
    return data


def origin_of(recording) -> int:
    return recording.ticks[0][0] + 2_000_000  # the bag's first log time


def test_label_finds_each_grasp_from_both_fingers_and_takes_its_outcome(recordings, tmp_path,
                                                                        capsys):
    _, bags = recordings
    bag, recording = bags['session_a']
    out = tmp_path / 'grasps.csv'
    assert label.main([str(bag), '-o', str(out), '--outcome-topic', 'lift_check/success',
                       '--threshold', str(THRESHOLD), '--quiet', *TOPICS]) == 0
    assert '12 grasp(s)' in capsys.readouterr().out
    rows = read_labels(out).rows
    assert [r.labels for r in rows] == [labels for _, _, labels in recording.rows]
    covered = [k for k, (stamp, _, _) in enumerate(recording.ticks)
               if any(row.covers(stamp - origin_of(recording)) for row in rows)]
    assert covered == recording.touch_ticks


def test_label_episodes_are_the_contact_the_node_computes_on_the_same_frames(recordings):
    _, bags = recordings
    bag, recording = bags['session_a']
    for threshold in (THRESHOLD, None):  # the given one, and auto from the rest frames
        trace = label.contact_trace(bag, camera_topic=CAMERA, tactile_topics=FINGERS,
                                    options=label.ContactOptions(threshold=threshold),
                                    progress=False)
        detector = ContactDetector()
        node = [detector.update(tactile, trace.threshold).in_contact
                for _, _, tactile in recording.ticks]
        assert list(trace.in_contact) == node
        assert np.flatnonzero(node).tolist() == recording.touch_ticks


def test_outcome_topic_dataset_is_read_by_the_feeling_of_success_loader(recordings, dataset):
    _, bags = recordings
    recording = bags['session_a'][1]
    config = load_config(['demo', str(dataset / 'dataset.yaml')])
    assert config.data.dataset == 'feeling_of_success' and config.data.val_split == 'test'
    train = build_dataset('feeling_of_success', config.data.root, 'train', **config.data.options)
    val = build_dataset('feeling_of_success', config.data.root, 'test', **config.data.options)
    assert len(train) == len(recording.touch_ticks) and len(val) == 4 * GRASPS['session_b']
    assert len(np.unique(train.group_array())) == GRASPS['session_a']  # one group per grasp
    truth = [labels['grasp_success'] for _, _, labels in recording.rows]
    targets = train.target_array('grasp_success')
    assert [train.heads['grasp_success'][t] for t in targets[::4]] == truth
    # A trial's frames are the node's window of two sets at its set, both fingers in order.
    first = recording.touch_ticks[0]
    sample = train[0]
    np.testing.assert_array_equal(sample.visual[1], recording.ticks[first][1])
    np.testing.assert_array_equal(sample.visual[0], recording.ticks[first - 1][1])
    for finger in (0, 1):
        np.testing.assert_array_equal(sample.tactile[finger][1], recording.ticks[first][2][finger])
        np.testing.assert_array_equal(sample.tactile[finger][0],
                                      recording.ticks[first - 1][2][finger])


def test_a_labels_file_with_1_and_0_gives_the_same_trials(recordings, dataset, tmp_path):
    _, bags = recordings
    bag, recording = bags['session_a']
    rows = [(a, b, {'grasp_success': '1' if labels['grasp_success'] == 'success' else '0'})
            for a, b, labels in recording.rows]
    csv = labels_csv(tmp_path / 'typed.csv', rows, heads=('grasp_success',))
    out = tmp_path / 'typed'
    assert make_dataset.main([str(bag), '--labels', str(csv), '-o', str(out), '--quiet',
                              *TOPICS]) == 0
    options = load_config(['demo', str(out / 'dataset.yaml')]).data.options
    typed = build_dataset('feeling_of_success', out, 'train', **options)
    from_topic = build_dataset('feeling_of_success', dataset, 'train',
                               files=['000_session_a.h5'], test_objects=[])
    np.testing.assert_array_equal(typed.target_array('grasp_success'),
                                  from_topic.target_array('grasp_success'))


def one_line_error(capsys, *expected: str) -> None:
    err = capsys.readouterr().err
    assert err.count('\n') == 1 and 'Traceback' not in err, err
    for text in expected:
        assert text in err, err


def test_bad_grasp_input_is_one_line_exit_1_and_nothing_written(
        recordings, world, tmp_path, capsys):
    _, bags = recordings
    bag = str(bags['session_a'][0])
    out = tmp_path / 'out'
    bad = tmp_path / 'bad.csv'
    bad.write_text('start,end,grasp_success\n0.5,0.9,maybe\n')
    assert make_dataset.main([bag, '--labels', str(bad), '-o', str(out), *TOPICS]) == 1
    one_line_error(capsys, f'{bad}:2', "grasp_success 'maybe'")
    bad.write_text('start,end,grasp_success\n0.5,1.2,success\n1.0,1.5,failure\n')
    assert make_dataset.main([bag, '--labels', str(bad), '-o', str(out), *TOPICS]) == 1
    one_line_error(capsys, f'{bad}:3', 'overlaps line 2')
    bad.write_text('start,end,grasp_success,material\n0.5,1.2,success,wood\n')
    assert make_dataset.main([bag, '--labels', str(bad), '-o', str(out), *TOPICS]) == 1
    one_line_error(capsys, 'grasp_success only')
    # One finger recorded, for a two-finger dataset.
    single = tmp_path / 'one_finger'
    write_recording(single, [world[0], world[1]], world.heads, CAMERA,
                    [f'{NS}/tactile/image_raw'], label_heads=('grasp_success',),
                    outcome_topic=OUTCOME, touch_from=1)
    assert make_dataset.main([str(single), '--outcome-topic', OUTCOME, '-o', str(out),
                              '--camera-topic', CAMERA]) == 1
    one_line_error(capsys, 'no image topic for', 'tactile_b/image_raw')
    # The outcome topic is not in the bag, or never publishes.
    assert make_dataset.main([bag, '--outcome-topic', '/left_hand/lift_ok', '-o', str(out),
                              *TOPICS]) == 1
    one_line_error(capsys, 'no std_msgs/msg/Bool topic /left_hand/lift_ok',
                   OUTCOME)
    silent = tmp_path / 'silent'
    store = get_typestore(Stores.ROS2_JAZZY)
    with Writer(silent, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        writer.add_connection(OUTCOME, 'std_msgs/msg/Bool', typestore=store)
        image = store.types['sensor_msgs/msg/Image']
        for topic in (CAMERA, *FINGERS):
            connection = writer.add_connection(topic, image.__msgtype__, typestore=store)
            header = store.types['std_msgs/msg/Header'](
                stamp=store.types['builtin_interfaces/msg/Time'](sec=1, nanosec=0), frame_id='')
            writer.write(connection, 1_000_000_000, store.serialize_cdr(image(
                header=header, height=2, width=2, encoding='rgb8', is_bigendian=0, step=6,
                data=np.zeros(12, np.uint8)), image.__msgtype__))
    assert label.main([str(silent), '-o', str(tmp_path / 'x.csv'), '--outcome-topic', OUTCOME,
                       *TOPICS]) == 1
    one_line_error(capsys, f'outcome topic {OUTCOME} never publishes')
    assert not out.exists() and not (tmp_path / 'x.csv').exists()


def test_an_outcome_with_no_contact_before_it_or_two_for_one_grasp_are_refused():
    trace = ContactTrace(np.array([0.0, 1.0, 2.0]), np.array([0.0, 9.0, 0.0]), 3.0,
                         [(0.5, True)], '/lift')
    episodes = [Episode(1.0, 1.0, 1, 9.0)]
    with pytest.raises(LabelsError, match='at 0.500 s has no contact episode before it'):
        outcome_rows(trace, episodes, 'bag')
    trace.outcomes = [(1.5, True), (1.8, False)]
    with pytest.raises(LabelsError, match='both follow the contact episode at 1.000 s'):
        outcome_rows(trace, episodes, 'bag')
    trace.outcomes = [(1.5, False)]
    assert outcome_rows(trace, episodes, 'bag') == [(1.0, 1.0, {'grasp_success': 'failure'})]


def train_args(run: Path, *more: str) -> list[str]:
    return ['--run-dir', str(run), '--device', 'cpu', '--no-progress',
            '--set', 'stage1.epochs=1', '--set', 'stage1.batch_size=8',
            '--set', 'stage1.retrieval_batch=8', '--set', 'stage1.warmup_steps=2',
            '--set', 'stage2.epochs=2', '--set', 'stage2.batch_size=8', *more]


@pytest.fixture(scope='module')
def trained(dataset, tmp_path_factory):
    """The grasp head trained from scratch on the dataset, then fine-tuned from that."""
    from training.train import main as train

    runs = tmp_path_factory.mktemp('grasp_runs')
    config = str(dataset / 'dataset.yaml')
    train(['--config', 'demo', config, *train_args(runs / 'scratch')])
    scratch = runs / 'scratch' / 'last.safetensors'
    train(['--config', 'demo', config, '--init-from', str(scratch),
           *train_args(runs / 'tuned')])
    return scratch, runs / 'tuned' / 'last.safetensors'


@pytest.mark.slow
def test_grasp_head_trains_from_scratch_and_with_init_from_and_carries_temperatures(trained):
    scratch, tuned = (load_checkpoint(path) for path in trained)
    for loaded in (scratch, tuned):
        assert loaded.heads == {'grasp_success': ['failure', 'success']}
        assert loaded.preprocess['num_tactile'] == 2
        calibration = loaded.training['calibration']
        assert calibration['samples']['grasp_success'] == 4 * GRASPS['session_b']
        assert 0.05 <= calibration['temperatures']['grasp_success'] <= 20.0
        assert (calibration['nll_after']['grasp_success']
                <= calibration['nll_before']['grasp_success'] + 1e-9)
        assert {'ece/grasp_success', 'ece_calibrated/grasp_success'} <= set(
            loaded.training['val'])
    assert tuned.training['init_from']['loaded_heads'] == ['grasp_success']
    for key, value in scratch.model.contrastive_encoder.state_dict().items():
        assert torch.equal(tuned.model.contrastive_encoder.state_dict()[key], value), key


@pytest.mark.slow
def test_evaluators_report_calibration_and_the_node_answers_in_lock_step(
        trained, dataset, recordings, tmp_path):
    from training.evaluate import main as evaluate_dataset

    _, tuned = trained
    report = evaluate_dataset(['--checkpoint', str(tuned), '--split', 'test', '--output',
                               str(tmp_path / 'dataset_eval'), '--device', 'cpu'])
    head = report['heads']['grasp_success']
    assert head['total'] == 4 * GRASPS['session_b']
    for key in ('roc_auc', 'brier', 'ece', 'temperature', 'uncalibrated'):
        assert key in head, key
    assert 0.0 <= head['ece'] <= 1.0 and 0.0 <= head['brier'] <= 1.0
    assert (tmp_path / 'dataset_eval' / 'reliability_grasp_success.png').is_file()

    # The held-out recording, scored against its ground truth recorded under absolute names.
    bag, recording = recordings[1]['session_c']
    common = ['--checkpoint', str(tuned), '--device', 'cpu', '--quiet', *TOPICS]
    assert evaluate.main([str(bag), '--output-dir', str(tmp_path / 'off'), *common]) == 0
    offline = json.loads((tmp_path / 'off' / 'report.json').read_text())
    assert offline['samples'] == len(recording.touch_ticks)
    scores = offline['heads']['grasp_success']
    assert scores['total'] == len(recording.touch_ticks)
    assert {'roc_auc', 'brier', 'ece'} <= set(scores)
    assert (tmp_path / 'off' / 'reliability_grasp_success.png').is_file()

    from convitac_ros.bags.replay import ReplayOptions
    from convitac_ros.evaluation.online import OnlineSession

    node = NodeProcess({'checkpoint': str(tuned), 'device': 'cpu', 'qos_reliability': 'reliable',
                        'qos_depth': 100, 'process_every_pair': True, 'warmup_iterations': 1,
                        'contact_threshold': THRESHOLD}, tmp_path / 'node.log')
    try:
        assert evaluate.main([str(bag), '--output-dir', str(tmp_path / 'on'), '--mode',
                              'online', '--lock-step', '--timeout', '60', *common]) == 0
        online = json.loads((tmp_path / 'on' / 'report.json').read_text())
        # The node's convitac/contact on every set, against convitac_label's on the same sets.
        node.stop()
        node = NodeProcess({'checkpoint': str(tuned), 'device': 'cpu',
                            'qos_reliability': 'reliable', 'qos_depth': 100,
                            'process_every_pair': True, 'warmup_iterations': 1,
                            'contact_threshold': THRESHOLD}, tmp_path / 'node2.log')
        index = index_bag(bag, 2, camera_topic=CAMERA, tactile_topics=FINGERS)
        session = OnlineSession(index, '/convitac_node', ReplayOptions(progress=False))
        try:
            session.wait_ready(60)
            session.run_lock_step(60)
            session.client.wait_all([point.stamp_ns for point in index.points], 60)
            answers = dict(session.client.answers)
        finally:
            session.close()
    finally:
        node.stop()
    assert online['drops'] == 0 and online['predictions'] == offline['predictions']
    assert online['heads']['grasp_success']['ece'] == pytest.approx(scores['ece'], abs=1e-4)
    trace = label.contact_trace(bag, camera_topic=CAMERA, tactile_topics=FINGERS,
                                options=label.ContactOptions(threshold=THRESHOLD),
                                progress=False)
    # Every set the node answered (under load its live pairing may skip one of a few hundred:
    # the evaluation points are all answered) is in contact exactly when the label tool says.
    answered = [k for k, stamp in enumerate(index.set_stamps) if stamp in answers]
    assert len(answered) >= 0.9 * len(index.set_stamps)
    assert {p.stamp_ns for p in index.points} <= set(answers)
    assert [answers[index.set_stamps[k]].payload['contact'] for k in answered] == [
        bool(trace.in_contact[k]) for k in answered]
    assert sum(trace.in_contact) == len(recording.touch_ticks)
    assert 'Traceback' not in node.log()
