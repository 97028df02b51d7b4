"""A team's recordings: topic mapping, labels files, offline and online evaluation of them.

The recordings are written by plain `rosbags` code the way `ros2 bag record` writes them
(`recording_helpers`): absolute names in a namespace or the team's own driver names, a
JPEG-compressed camera, one or two raw tactile sensors, no ground-truth topics.
"""

from __future__ import annotations

import json
from pathlib import Path
import sys

from node_harness import NodeClient, NodeProcess, random_checkpoint, wait_until
import numpy as np
import pytest
from recording_helpers import labels_csv, write_recording
import yaml

from convitac_ros.bags import make_bag
from convitac_ros.bags.bagfile import BagError
from convitac_ros.bags.labels_file import LabelsError, read_labels
from convitac_ros.bags.topic_mapping import resolve_image_topics
from convitac_ros.data import build_dataset
from convitac_ros.evaluation import offline as evaluate
from convitac_ros.inference import Predictor

IMAGE = 'sensor_msgs/msg/Image'
JPEG = 'sensor_msgs/msg/CompressedImage'
TEAM_TOPICS = ['--camera-topic', '/wrist_cam/color/image_raw', '--tactile-topic',
               '/gsmini/image_raw', '--tactile-topic', '/digit/image_raw']


@pytest.fixture(scope='module')
def dataset(synthetic_tag_root):
    return build_dataset('touch_and_go', synthetic_tag_root, 'test')


@pytest.fixture(scope='module')
def samples(dataset):
    return [dataset[i] for i in range(6)]


@pytest.fixture(scope='module')
def recorded(samples, dataset, tmp_path_factory):
    """`ros2 bag record` of the node's default topics in namespace /robot (one sensor)."""
    folder = tmp_path_factory.mktemp('recorded')
    recording = write_recording(folder / 'bag', samples, dataset.heads,
                                '/robot/camera/image_raw', ['/robot/tactile/image_raw'])
    return folder / 'bag', recording, labels_csv(folder / 'labels.csv', recording.rows)


@pytest.fixture(scope='module')
def team_recorded(samples, dataset, tmp_path_factory):
    """The team's driver names, two tactile sensors."""
    folder = tmp_path_factory.mktemp('team')
    recording = write_recording(folder / 'bag', samples, dataset.heads,
                                '/wrist_cam/color/image_raw',
                                ['/gsmini/image_raw', '/digit/image_raw'])
    return folder / 'bag', recording, labels_csv(folder / 'labels.csv', recording.rows)


@pytest.fixture(scope='module')
def two_sensor_checkpoint(dataset, tmp_path_factory):
    """A real two-sensor checkpoint with the synthetic world's heads (random weights)."""
    heads = {'material': dataset.heads['material'], 'hardness': dataset.heads['hardness']}
    return random_checkpoint(tmp_path_factory.mktemp('two') / 'two_sensors.safetensors', heads,
                             num_tactile=2)


def evaluate_json(bag: Path, out: Path, *extra: str) -> dict:
    assert evaluate.main([str(bag), '--output-dir', str(out), '--quiet', *extra]) == 0
    return json.loads((out / 'report.json').read_text())


def predicted(report: dict) -> dict[int, dict[str, str]]:
    return {p['stamp_ns']: p['predicted'] for p in report['predictions']}


def expected_predictions(predictor: Predictor, recording, num_tactile: int) -> dict[int, dict]:
    """The Predictor on the frames of each touch tick and the tick before it (the window)."""
    out = {}
    for index in recording.touch_ticks:
        before, now = recording.ticks[index - 1], recording.ticks[index]
        probabilities = predictor.predict(
            [before[1], now[1]], [[before[2][k], now[2][k]] for k in range(num_tactile)])
        out[now[0]] = {h: predictor.heads[h][int(np.argmax(p))]
                       for h, p in probabilities.items()}
    return out


def test_topic_rules_match_relative_absolute_namespaced_and_compressed_names():
    topics = {'/robot/camera/image_raw/compressed': (JPEG, 5),
              '/robot/tactile/image_raw': (IMAGE, 5), '/robot/tactile/image_raw/compressed':
              (JPEG, 5), '/robot/tactile_b/image_raw': (IMAGE, 5), '/chatter': ('x', 3)}
    assert resolve_image_topics(topics) == ['/robot/camera/image_raw/compressed',
                                            '/robot/tactile/image_raw',
                                            '/robot/tactile_b/image_raw']
    assert resolve_image_topics(topics, num_tactile=1)[1:] == ['/robot/tactile/image_raw']
    own = {'camera/image_raw': (IMAGE, 1), 'tactile/image_raw': (IMAGE, 1)}
    assert resolve_image_topics(own, '/camera/image_raw') == list(own)
    team = {'/wrist_cam/color/image_raw/compressed': (JPEG, 2), '/gsmini/image_raw': (IMAGE, 2)}
    assert resolve_image_topics(team, '/wrist_cam/color/image_raw', ['gsmini/image_raw']) == [
        '/wrist_cam/color/image_raw/compressed', '/gsmini/image_raw']
    with pytest.raises(BagError, match='no image topic for'):
        resolve_image_topics(team)
    with pytest.raises(BagError, match=r'\[\'/digit/image_raw\'\]'):
        resolve_image_topics(team, '/wrist_cam/color/image_raw',
                             ['/gsmini/image_raw', '/digit/image_raw'])
    two_hands = {'/left/camera/image_raw': (IMAGE, 1), '/right/camera/image_raw': (IMAGE, 1),
                 '/left/tactile/image_raw': (IMAGE, 1)}
    with pytest.raises(BagError, match='matches .*--camera-topic'):
        resolve_image_topics(two_hands)
    assert resolve_image_topics(two_hands, '/left/camera/image_raw')[0] == (
        '/left/camera/image_raw')


def test_bags_written_by_the_package_use_metadata_version_8_with_qos_as_a_string(
        samples, dataset, tmp_path):
    make_bag.write_bag(samples[:2], dataset.heads, tmp_path / 'bag', progress=False)
    info = yaml.safe_load((tmp_path / 'bag' / 'metadata.yaml').read_text())
    meta = info['rosbag2_bagfile_information']
    assert meta['version'] == 8
    for topic in meta['topics_with_message_count']:
        # Humble and Iron parse this field as a string; version 9 writes a list they refuse.
        assert isinstance(topic['topic_metadata']['offered_qos_profiles'], str)


def test_offline_with_default_topics_and_labels_equals_the_predictor_sample_for_sample(
        recorded, tiny_checkpoint, tmp_path):
    bag, recording, labels = recorded
    report = evaluate_json(bag, tmp_path, '--checkpoint', str(tiny_checkpoint), '--device',
                           'cpu', '--labels', str(labels))
    assert report['extra']['image_topics'] == ['/robot/camera/image_raw/compressed',
                                               '/robot/tactile/image_raw']
    predictor = Predictor.from_checkpoint(tiny_checkpoint, device='cpu')
    expected = expected_predictions(predictor, recording, 1)
    assert predicted(report) == expected
    assert report['samples'] == len(recording.touch_ticks) == 6 * 4
    assert report['heads']['material']['total'] == 24


def test_offline_and_online_lock_step_with_mapped_team_topics_agree_sample_for_sample(
        team_recorded, two_sensor_checkpoint, tmp_path):
    bag, recording, labels = team_recorded
    common = ['--checkpoint', str(two_sensor_checkpoint), '--device', 'cpu',
              '--labels', str(labels), *TEAM_TOPICS]
    offline = evaluate_json(bag, tmp_path / 'offline', *common)
    predictor = Predictor.from_checkpoint(two_sensor_checkpoint, device='cpu')
    assert predicted(offline) == expected_predictions(predictor, recording, 2)
    # The node takes raw images: the recorded JPEG camera is converted (same pixels).
    node = NodeProcess({'checkpoint': str(two_sensor_checkpoint), 'device': 'cpu',
                        'qos_reliability': 'reliable', 'qos_depth': 100,
                        'process_every_pair': True, 'warmup_iterations': 1},
                       tmp_path / 'node.log')
    try:
        online = evaluate_json(bag, tmp_path / 'online', *common, '--mode', 'online',
                               '--lock-step', '--timeout', '60')
    finally:
        node.stop()
    assert online['mode'] == 'online-lockstep' and online['drops'] == 0
    assert online['predictions'] == offline['predictions']
    for head, scores in offline['heads'].items():
        assert online['heads'][head]['confusion'] == scores['confusion']
    assert 'Traceback' not in node.log()


def test_labels_file_that_does_not_parse_is_one_clear_line(recorded, tiny_checkpoint,
                                                           tmp_path, capsys):
    bag = recorded[0]
    cases = {
        'start,end,material\n1.0,zwei,wood\n': "labels.csv:2: end 'zwei' is not a number",
        'begin,end,material\n1,2,wood\n': 'the header must be "start,end,"',
        'start,end,colour\n1,2,red\n': "unknown or repeated head column(s) ['colour']",
        'start,end,material\n3,2,wood\n': 'labels.csv:2: end 2.0 is before start 3.0',
        'start,end,material\n1,3,wood\n2,4,wood\n': 'labels.csv:3: interval 2.0-4.0 s overlaps',
        'start,end,material\n1,2,wood,x\n': 'labels.csv:2: 4 columns, the header has 3',
    }
    for text, message in cases.items():
        path = tmp_path / 'labels.csv'
        path.write_text(text)
        with pytest.raises(LabelsError):
            read_labels(path)
        rc = evaluate.main([str(bag), '--checkpoint', str(tiny_checkpoint), '--device', 'cpu',
                            '--labels', str(path), '--quiet'])
        err = capsys.readouterr().err
        assert rc == 1 and message in err and err.count('\n') == 1, err


def test_labels_covering_no_frame_or_naming_an_unknown_class_are_one_clear_line(
        recorded, tiny_checkpoint, tmp_path, capsys):
    bag = recorded[0]
    late = labels_csv(tmp_path / 'late.csv', [(500.0, 501.0, {'material': 'x'})], ('material',))
    args = ['--checkpoint', str(tiny_checkpoint), '--device', 'cpu', '--quiet']
    predictor = Predictor.from_checkpoint(tiny_checkpoint, device='cpu')
    known = predictor.heads['material'][0]
    late.write_text(late.read_text().replace(',x', f',{known}'))
    assert evaluate.main([str(bag), '--labels', str(late), *args]) == 1
    err = capsys.readouterr().err
    assert 'no interval covers a frame of the bag' in err and err.count('\n') == 1, err
    # The dataset writer streams the recording: it finds out at the end, and leaves nothing.
    from convitac_ros.bags import make_dataset
    output = tmp_path / 'dataset'
    assert make_dataset.main([str(bag), '--labels', str(late), '-o', str(output),
                              '--quiet']) == 1
    err = capsys.readouterr().err
    assert 'no interval covers a frame of the bag' in err and err.count('\n') == 1, err
    assert not output.exists()
    unknown = labels_csv(tmp_path / 'unknown.csv', [(0.1, 1.0, {'material': 'velvet'})],
                         ('material',))
    assert evaluate.main([str(bag), '--labels', str(unknown), *args]) == 1
    err = capsys.readouterr().err
    assert "material 'velvet' is not a class of the checkpoint" in err and err.count('\n') == 1
    head = tmp_path / 'head.csv'
    head.write_text('start,end,grasp_success\n0.1,1.0,success\n')
    assert evaluate.main([str(bag), '--labels', str(head), *args]) == 1
    assert 'head grasp_success is not a head of the checkpoint' in capsys.readouterr().err


def test_a_recording_without_the_wanted_topics_is_one_clear_line(team_recorded,
                                                                 tiny_checkpoint, capsys):
    bag, _, labels = team_recorded
    assert evaluate.main([str(bag), '--checkpoint', str(tiny_checkpoint), '--labels',
                          str(labels), '--quiet']) == 1
    err = capsys.readouterr().err
    assert 'no image topic for' in err and '--camera-topic' in err and err.count('\n') == 1


def test_replay_cli_publishes_a_teams_recording_on_the_node_topics(team_recorded, tmp_path):
    bag, recording, _ = team_recorded
    with NodeClient('/convitac_node', name='replay_listener') as client:
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import Image

        got: dict[str, list[str]] = {'camera': [], 'tactile': [], 'tactile_b': []}
        qos = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE)
        for name in got:
            client.node.create_subscription(Image, f'/{name}/image_raw',
                                            lambda m, n=name: got[n].append(m.encoding), qos)
        replay = NodeProcess({}, tmp_path / 'replay.log', command=[
            sys.executable, '-m', 'convitac_ros.bags.replay', str(bag), '--quiet', '--rate', '4',
            '--wait-for-subscribers', '20', *TEAM_TOPICS, '--transport', 'raw'])
        assert replay.wait(120) == 0, replay.log()
        frames = len(recording.ticks)
        wait_until(lambda: all(len(v) == frames for v in got.values()), 10,
                   f'not every frame arrived: { {k: len(v) for k, v in got.items()} }')
    # The JPEG camera arrives as raw rgb8 on the node's camera topic.
    assert set(got['camera']) == {'rgb8'}
