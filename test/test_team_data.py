"""The team's own data end to end: recording -> labels -> dataset -> fine-tune -> node, evaluation.

Recordings are written like `ros2 bag record` of the team's drivers (`recording_helpers`);
the fine-tuning starts from the demo checkpoint shipped in `models/`.
"""

from __future__ import annotations

import json
from pathlib import Path

from node_harness import NodeProcess
import numpy as np
import pytest
from recording_helpers import write_recording
import torch

from convitac_ros.bags import contact_episodes as label
from convitac_ros.bags import make_dataset
from convitac_ros.bags.labels_file import read_labels
from convitac_ros.checkpoint import load_checkpoint, read_metadata, save_checkpoint
from convitac_ros.data import build_dataset
from convitac_ros.evaluation import offline as evaluate
from convitac_ros.model import ConViTac, ModelConfig
from training.finetune import initialise_from

DEMO = Path(__file__).resolve().parents[1] / 'models' / 'convitac_demo.safetensors'
TOPICS = ['--camera-topic', '/wrist_cam/color/image_raw', '--tactile-topic', '/gsmini/image_raw']


@pytest.fixture(scope='module')
def world(synthetic_tag_root):
    return build_dataset('touch_and_go', synthetic_tag_root, 'test')


@pytest.fixture(scope='module')
def recordings(world, tmp_path_factory):
    """Two recordings of the team's sensors: one to learn from, one held out."""
    folder = tmp_path_factory.mktemp('team_data')
    samples = [world[i] for i in range(16)]
    out = {}
    for name, part in (('session_a', samples[:12]), ('session_b', samples[12:])):
        out[name] = (folder / name, write_recording(
            folder / name, part, world.heads, '/wrist_cam/color/image_raw',
            ['/gsmini/image_raw'], truth_namespace=''))
    return folder, out


def fill_in(path: Path, recording) -> None:
    """What the team does with the helper's file: write each episode's labels in its row."""
    lines = path.read_text().splitlines()
    rows = [i for i, line in enumerate(lines) if line and line[0].isdigit()]
    assert len(rows) == len(recording.rows)
    for i, (_, _, labels) in zip(rows, recording.rows):
        start, end = lines[i].split(',')[:2]
        lines[i] = f'{start},{end},{labels["material"]},{labels["hardness"]},'
    path.write_text('\n'.join(lines) + '\n')


@pytest.fixture(scope='module')
def labelled(recordings):
    folder, bags = recordings
    files = {}
    for name, (bag, recording) in bags.items():
        path = folder / f'{name}.csv'
        # The touches of this world are light (a contact score of 3 to 6 against the node's
        # default threshold of 6): the threshold comes from the rest frames.
        assert label.main([str(bag), '-o', str(path), '--quiet', '--threshold', 'auto',
                           *TOPICS]) == 0
        fill_in(path, recording)
        files[name] = path
    return files


def test_label_helper_finds_one_episode_per_touch_covering_exactly_its_frames(
        recordings, labelled):
    _, bags = recordings
    for name, (_, recording) in bags.items():
        rows = read_labels(labelled[name]).rows
        assert len(rows) == len(recording.rows)
        origin = recording.ticks[0][0] + 2_000_000  # the bag's first log time
        covered = [k for k, (stamp, _, _) in enumerate(recording.ticks)
                   if any(row.covers(stamp - origin) for row in rows)]
        assert covered == recording.touch_ticks


def test_label_helper_refuses_to_overwrite_and_needs_the_topics(recordings, labelled, capsys):
    folder, bags = recordings
    bag = bags['session_a'][0]
    assert label.main([str(bag), '-o', str(labelled['session_a']), *TOPICS]) == 1
    assert 'exists already' in capsys.readouterr().err
    assert label.main([str(bag), '-o', str(folder / 'new.csv')]) == 1
    err = capsys.readouterr().err
    assert 'no image topic for' in err and err.count('\n') == 1
    two = [*TOPICS, '--tactile-topic', '/gsmini_b/image_raw']
    assert label.main([str(bag), '-o', str(folder / 'two.csv'), *two]) == 1
    err = capsys.readouterr().err
    assert "no image topic for ['/gsmini_b/image_raw']" in err and err.count('\n') == 1
    assert make_dataset.main([str(bag), '--labels', str(labelled['session_a']), '-o',
                              str(folder / 'two'), *two]) == 1
    err = capsys.readouterr().err
    assert 'one tactile sensor; give one --tactile-topic' in err and err.count('\n') == 1
    assert not (folder / 'two').exists() and not (folder / 'two.csv').exists()


def test_bag_and_labels_to_dataset_to_fine_tuned_checkpoint_that_the_node_runs(
        recordings, labelled, world, tmp_path):
    _, bags = recordings
    bag_a, recording_a = bags['session_a']
    data = tmp_path / 'team_dataset'
    assert make_dataset.main([str(bag_a), '--labels', str(labelled['session_a']), '-o',
                              str(data), '--classes-from', str(DEMO), '--quiet', *TOPICS]) == 0
    # The layout the Touch and Go loader reads, one session, a sample per labelled frame set,
    # whose frames are the node's window at that set.
    options = {'soft_materials': [m for m in world.heads['material']
                                  if m in ('Leather', 'Synthetic Fabric', 'Natural Fabric',
                                           'Paper', 'Grass')]}
    dataset = build_dataset('touch_and_go', data, 'train', **options)
    assert len(dataset) == len(recording_a.touch_ticks)
    assert dataset.heads['material'] == read_metadata(DEMO)['heads']['material']
    first = recording_a.touch_ticks[0]
    sample = dataset[0]
    np.testing.assert_array_equal(sample.visual[1], recording_a.ticks[first][1])
    np.testing.assert_array_equal(sample.visual[0], recording_a.ticks[first - 1][1])
    np.testing.assert_array_equal(sample.tactile[0][1], recording_a.ticks[first][2][0])
    origin = recording_a.ticks[0][0] + 2_000_000  # the bag's first log time
    for index, tick in enumerate(recording_a.touch_ticks):
        offset = (recording_a.ticks[tick][0] - origin) / 1e9
        truth = next(r[2] for r in recording_a.rows if r[0] <= offset <= r[1])
        assert dataset.heads['material'][dataset.target_array('material')[index]] == (
            truth['material'])

    # Stage 1 learns from the labelled frame sets and from every other set in contact (listed
    # -2 in label.txt; -1: out of contact, e.g. an approach).
    frames = build_dataset('touch_and_go', data, 'train', task='frames', **options)
    contact = [tuple(line.rsplit(',', 1)[0].split('/')) for line in
               (data / 'label.txt').read_text().splitlines() if line.endswith(',-2')]
    assert set(frames.frame_keys()) == set(dataset.frame_keys()) | set(contact)

    from training.train import main as train

    run = tmp_path / 'finetune'
    train(['--config', 'demo', str(data / 'dataset.yaml'), '--init-from', str(DEMO),
           '--run-dir', str(run), '--device', 'cpu', '--no-progress',
           '--set', 'stage2.epochs=1', '--set', 'stage2.batch_size=8'])
    tuned = load_checkpoint(run / 'last.safetensors')
    init = tuned.training['init_from']
    assert init['checkpoint'] == str(DEMO)
    assert init['loaded_heads'] == ['material', 'hardness', 'roughness'] and not init['new_heads']
    demo = load_checkpoint(DEMO)
    for key, value in demo.model.contrastive_encoder.state_dict().items():
        assert torch.equal(tuned.model.contrastive_encoder.state_dict()[key], value), key
    assert not torch.equal(tuned.model.state_dict()['heads.classifiers.material.weight'],
                           demo.model.state_dict()['heads.classifiers.material.weight'])

    # The node loads it and answers on the held-out recording exactly as offline.
    bag_b, _ = bags['session_b']
    common = ['--checkpoint', str(run / 'last.safetensors'), '--device', 'cpu', '--labels',
              str(labelled['session_b']), '--quiet', *TOPICS]
    assert evaluate.main([str(bag_b), '--output-dir', str(tmp_path / 'off'), *common]) == 0
    offline = json.loads((tmp_path / 'off' / 'report.json').read_text())
    node = NodeProcess({'checkpoint': str(run / 'last.safetensors'), 'device': 'cpu',
                        'qos_reliability': 'reliable', 'qos_depth': 100,
                        'process_every_pair': True, 'warmup_iterations': 1},
                       tmp_path / 'node.log')
    try:
        assert evaluate.main([str(bag_b), '--output-dir', str(tmp_path / 'on'), '--mode',
                              'online', '--lock-step', '--timeout', '60', *common]) == 0
    finally:
        node.stop()
    online = json.loads((tmp_path / 'on' / 'report.json').read_text())
    assert offline['samples'] == 4 * 4 and online['drops'] == 0
    assert online['predictions'] == offline['predictions']
    assert 'Traceback' not in node.log()


def test_ground_truth_recorded_under_absolute_names_is_found_as_the_images_are(
        recordings, tmp_path):
    # `ros2 bag record` stores /ground_truth/material; it marks the evaluation points as
    # ground_truth/material in the package's own bags does.
    _, bags = recordings
    bag, recording = bags['session_b']
    assert evaluate.main([str(bag), '--checkpoint', str(DEMO), '--device', 'cpu', '--quiet',
                          '--output-dir', str(tmp_path), *TOPICS]) == 0
    report = json.loads((tmp_path / 'report.json').read_text())
    assert report['samples'] == len(recording.touch_ticks)
    assert report['heads']['material']['total'] == len(recording.touch_ticks)
    assert report['extra']['unmatched_ground_truth'] == 0
    from convitac_ros.bags.bagfile import BagError
    from convitac_ros.bags.topic_mapping import resolve_truth_topics

    image = ('sensor_msgs/msg/Image', 1)
    truth = ('std_msgs/msg/String', 1)
    assert resolve_truth_topics({'/cam': image, '/left_hand/ground_truth/grasp_success': truth,
                                 'ground_truth/material': truth}) == {
        '/left_hand/ground_truth/grasp_success': 'grasp_success',
        'ground_truth/material': 'material'}
    with pytest.raises(BagError, match='ground truth of material on two topics'):
        resolve_truth_topics({'/a/ground_truth/material': truth,
                              '/b/ground_truth/material': truth})


def test_make_dataset_refuses_an_existing_output_and_a_bag_without_the_topics(
        recordings, labelled, tmp_path, capsys):
    _, bags = recordings
    bag = str(bags['session_a'][0])
    tmp_path.joinpath('exists').mkdir()
    assert make_dataset.main([bag, '--labels', str(labelled['session_a']), '-o',
                              str(tmp_path / 'exists'), '--quiet', *TOPICS]) == 1
    err = capsys.readouterr().err
    assert 'exists already' in err and err.count('\n') == 1
    assert make_dataset.main([bag, '--labels', str(labelled['session_a']), '-o',
                              str(tmp_path / 'new'), '--quiet']) == 1
    err = capsys.readouterr().err
    assert 'no image topic for' in err and err.count('\n') == 1
    assert not (tmp_path / 'new').exists()


def test_fine_tuning_reorders_shared_heads_by_class_name_and_starts_new_class_lists_fresh(
        tmp_path):
    heads = {'material': ['wood', 'metal', 'foam'], 'hardness': ['hard', 'soft']}
    torch.manual_seed(0)
    config = ModelConfig.tiny(heads=tuple((h, len(c)) for h, c in heads.items()))
    source = load_checkpoint(save_checkpoint(tmp_path / 'src.safetensors', ConViTac(config),
                                             heads=heads))
    new_heads = {'material': ['foam', 'wood', 'metal'], 'roughness': ['smooth', 'rough']}
    target = ConViTac(ModelConfig.tiny(heads=tuple((h, len(c)) for h, c in new_heads.items())))
    record = initialise_from(target, source, new_heads)
    assert record['loaded_heads'] == ['material'] and record['new_heads'] == ['roughness']
    assert record['dropped_heads'] == ['hardness']
    old = source.model.state_dict()['heads.classifiers.material.weight']
    new = target.state_dict()['heads.classifiers.material.weight']
    assert torch.equal(new, old[[2, 0, 1]])
    other = ConViTac(ModelConfig.tiny(heads=(('material', 4),)))
    record = initialise_from(other, source, {'material': ['wood', 'metal', 'foam', 'glass']})
    assert record['new_heads'] == ['material']


def test_the_tools_hold_a_few_frame_sets_not_the_recording(recordings, labelled, monkeypatch,
                                                           tmp_path):
    # A recording is written as it is read: however long it is, the sets alive at any moment
    # are the one being written and those in the synchronizer's queue, not the whole bag.
    import weakref

    from convitac_ros.bags import samples
    from convitac_ros.ros.pipeline import FrameSet

    made: list[weakref.ref] = []  # FrameSet is an unhashable dataclass: no WeakSet

    class Tracked(FrameSet):

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append(weakref.ref(self))

    most, written = [0], [0]
    real_write = make_dataset.write_frame

    def write_frame(path, rgb):
        most[0] = max(most[0], sum(ref() is not None for ref in made))
        written[0] += 1
        real_write(path, rgb)

    monkeypatch.setattr(samples, 'FrameSet', Tracked)
    monkeypatch.setattr(make_dataset, 'write_frame', write_frame)
    _, bags = recordings
    bag_a, recording_a = bags['session_a']
    assert make_dataset.main([str(bag_a), '--labels', str(labelled['session_a']), '-o',
                              str(tmp_path / 'data'), '--quiet', *TOPICS]) == 0
    assert written[0] // 2 == len(recording_a.ticks) > 20
    assert 1 <= most[0] <= 3, most[0]
    # The contact finder of convitac_label reads the same way.
    real_thumbnail, most[0] = label.thumbnail, 0

    def thumbnail(rgb):
        most[0] = max(most[0], sum(ref() is not None for ref in made))
        return real_thumbnail(rgb)

    monkeypatch.setattr(label, 'thumbnail', thumbnail)
    assert label.main([str(bag_a), '-o', str(tmp_path / 'labels.csv'), '--quiet', *TOPICS]) == 0
    assert 1 <= most[0] <= 3, most[0]
    # Offline evaluation holds the node's window (here 2 sets) and a batch, not the recording.
    from convitac_ros.evaluation import offline as evaluate_cli
    real_inputs, most[0] = evaluate_cli.window_inputs, 0

    def window_inputs(*args, **kwargs):
        most[0] = max(most[0], sum(ref() is not None for ref in made))
        return real_inputs(*args, **kwargs)

    monkeypatch.setattr(evaluate_cli, 'window_inputs', window_inputs)
    assert evaluate_cli.main([str(bag_a), '--labels', str(labelled['session_a']), '--checkpoint',
                              str(DEMO), '--device', 'cpu', '--output-dir', str(tmp_path / 'ev'),
                              '--quiet', *TOPICS]) == 0
    assert 2 <= most[0] <= 6, most[0]
    # Online lock-step evaluation indexes the bag, then reads it again as it publishes.
    from convitac_ros.bags.replay import BagPlayer
    real_publish, most[0] = BagPlayer.publish, 0

    def publish(self, record):
        most[0] = max(most[0], sum(ref() is not None for ref in made))
        real_publish(self, record)

    monkeypatch.setattr(BagPlayer, 'publish', publish)
    with NodeProcess({'checkpoint': str(DEMO), 'device': 'cpu', 'qos_reliability': 'reliable',
                      'qos_depth': 100, 'process_every_pair': True, 'warmup_iterations': 1},
                     tmp_path / 'node.log'):
        assert evaluate_cli.main([str(bag_a), '--labels', str(labelled['session_a']),
                                  '--mode', 'online', '--lock-step', '--timeout', '60',
                                  '--output-dir', str(tmp_path / 'on'), '--quiet',
                                  *TOPICS]) == 0
    report = json.loads((tmp_path / 'on' / 'report.json').read_text())
    assert report['drops'] == 0 and report['samples'] > 0
    assert 1 <= most[0] <= 3, most[0]
