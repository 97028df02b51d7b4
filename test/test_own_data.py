"""Learning from a team's recordings: unlabelled frames, stage 1, fine-tuning that keeps.

Unlabelled contact frames for stage 1, stage 1 continued from a checkpoint, fine-tuning that
keeps what the checkpoint knew, and the one-line refusals. Recordings are written like
`ros2 bag record` of the team's drivers (`recording_helpers`); training is the real
`training/train.py` from the demo checkpoint, shortened.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from recording_helpers import labels_csv, write_recording
import torch

from convitac_ros.bags import make_dataset
from convitac_ros.checkpoint import load_checkpoint
from convitac_ros.data import build_dataset
from convitac_ros.model import ConViTac
from convitac_ros.ros.contact import ContactDetector
from training.finetune import freeze_parts, initialise_from, loaded_lr_scale
from training.optim import build_optimizer
from training.train import cli as train
from training.train_config import load_config

DEMO = Path(__file__).resolve().parents[1] / 'models' / 'convitac_demo.safetensors'
# The synthetic gel is pressed lightly: the node would run with a lower contact_threshold.
THRESHOLD = 3.5
TOPICS = ['--camera-topic', '/wrist_cam/color/image_raw', '--tactile-topic', '/gsmini/image_raw',
          '--threshold', str(THRESHOLD)]
SHORT = ['--device', 'cpu', '--no-progress', '--set', 'stage1.epochs=1',
         '--set', 'stage1.batch_size=8', '--set', 'stage1.retrieval_batch=8',
         '--set', 'stage2.batch_size=8', '--set', 'stage2.epochs=2']


@pytest.fixture(scope='module')
def recordings(synthetic_tag_root, tmp_path_factory):
    """Bags and labels files: session_a (training), session_c (validation), session_u.

    Nobody labelled session_u: its labels file is never used.
    """
    world = build_dataset('touch_and_go', synthetic_tag_root, 'test')
    folder = tmp_path_factory.mktemp('own_data')
    out, start = {}, 0
    for name, count in (('session_a', 10), ('session_c', 6), ('session_u', 8)):
        samples = [world[i] for i in range(start, start + count)]
        start += count
        recording = write_recording(folder / name, samples, world.heads,
                                    '/wrist_cam/color/image_raw', ['/gsmini/image_raw'])
        labels_csv(folder / f'{name}.csv', recording.rows)
        out[name] = (folder / name, folder / f'{name}.csv', recording)
    return out


@pytest.fixture(scope='module')
def dataset(recordings, tmp_path_factory):
    """Two labelled recordings (the second validates) and an unlabelled one."""
    root = tmp_path_factory.mktemp('datasets') / 'team'
    (bag_a, csv_a, _), (bag_c, csv_c, _), (bag_u, _, _) = (
        recordings[n] for n in ('session_a', 'session_c', 'session_u'))
    assert make_dataset.main([str(bag_a), str(bag_c), '--labels', str(csv_a), str(csv_c),
                              '--val-recordings', '1', '--unlabelled', str(bag_u), '-o',
                              str(root), '--classes-from', str(DEMO), '--quiet',
                              *TOPICS]) == 0
    return root


def node_contact(recording) -> list[bool]:
    """Contact per frame set as the node finds it (its detector and threshold)."""
    detector = ContactDetector()
    return [detector.update(tactile, THRESHOLD).in_contact
            for _, _, tactile in recording.ticks]


def test_every_set_in_contact_is_listed_for_stage_1_labelled_or_not(recordings, dataset):
    rows = [line.rsplit(',', 1) for line in (dataset / 'label.txt').read_text().splitlines()]
    for number, name in enumerate(('session_a', 'session_c', 'session_u')):
        session = f'{number:03d}_{name}'
        marks = [int(label) for entry, label in rows if entry.startswith(session + '/')]
        contact = node_contact(recordings[name][2])
        assert marks == [-2 if c else -1 for c in contact], name
        assert sum(contact) > 0
    train_list = (dataset / 'train.txt').read_text()
    assert '002_session_u' not in train_list and '001_session_c' not in train_list
    frames = build_dataset('touch_and_go', dataset, 'train', task='frames')
    keys = set(frames.frame_keys())
    unlabelled = {tuple(entry.split('/')) for entry, label in rows
                  if entry.startswith('002_session_u') and label == '-2'}
    assert unlabelled and unlabelled <= keys
    assert not any(session.startswith('001_session_c') for session, _ in keys)  # validation


def test_stage1_continues_the_checkpoints_encoder_on_every_contact_frame_then_stage2(
        dataset, tmp_path, capsys):
    run = tmp_path / 'run'
    assert train(['--config', 'finetune', str(dataset / 'dataset.yaml'), '--init-from',
                  str(DEMO), '--stage1', '--run-dir', str(run), *SHORT]) == 0
    out = capsys.readouterr().out
    pairs = int(out.split('stage 1: ')[1].split(' ')[0])
    contact = (dataset / 'label.txt').read_text().count(',-2')
    labelled = len((dataset / 'train.txt').read_text().splitlines())
    assert pairs >= labelled and pairs > contact / 2  # the unlabelled recording's frames too
    demo = load_checkpoint(DEMO).model.contrastive_encoder.state_dict()
    stage1 = load_checkpoint(run / 'stage1' / 'last.safetensors').model.state_dict()
    assert any(not torch.equal(stage1[k], demo[k]) for k in demo)  # it learnt on them
    tuned = load_checkpoint(run / 'last.safetensors')
    for key, value in tuned.model.contrastive_encoder.state_dict().items():
        assert torch.equal(value, stage1[key]), key  # stage 2 keeps the continued E^c
    assert tuned.training['init_from']['stage1'] is True
    assert tuned.drift is not None


def test_fine_tuning_lowers_loaded_rates_and_can_freeze_the_fusion():
    loaded = load_checkpoint(DEMO)
    heads = {**loaded.heads, 'grip': ['loose', 'firm']}
    model = ConViTac(replace(loaded.config, heads=tuple((h, len(c)) for h, c in heads.items())))
    record = initialise_from(model, loaded, heads)
    frozen = freeze_parts(model, 'fusion')
    assert frozen == ('visual_encoder', 'tactile_encoder', 'fusion', 'condition_gate')
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith('heads.') for n in trainable)
    config = load_config('finetune')
    optimizer = build_optimizer(model.named_parameters(), config.stage2,
                                loaded_lr_scale(record, config.finetune.loaded_lr_scale))
    rate = {id(p): group['lr'] for group in optimizer.param_groups for p in group['params']}
    params = dict(model.named_parameters())
    assert rate[id(params['heads.classifiers.material.weight'])] == pytest.approx(
        config.stage2.lr * config.finetune.loaded_lr_scale)
    assert rate[id(params['heads.classifiers.grip.weight'])] == pytest.approx(config.stage2.lr)


def test_a_fine_tune_that_never_beats_its_start_keeps_it_stops_early_and_says_so(
        recordings, tmp_path, capsys):
    bag_a, csv_a, _ = recordings['session_a']
    data = tmp_path / 'one'
    assert make_dataset.main([str(bag_a), '--labels', str(csv_a), '-o', str(data),
                              '--classes-from', str(DEMO), '--quiet', *TOPICS]) == 0
    run = tmp_path / 'run'
    assert train(['--config', 'finetune', str(data / 'dataset.yaml'), '--init-from', str(DEMO),
                  '--run-dir', str(run), *SHORT, '--set', 'stage2.epochs=6',
                  '--set', 'stage2.patience=1', '--set', 'stage2.lr=0']) == 0
    captured = capsys.readouterr()
    # One recording: no recording-disjoint validation; one line says so.
    warning = [line for line in captured.err.splitlines() if 'holds one session' in line]
    assert len(warning) == 1 and 'UserWarning' not in captured.err
    assert 'stopped after 2 epoch(s) (validation stopped improving)' in captured.out
    assert 'the starting checkpoint wins on validation' in captured.out
    best = load_checkpoint(run / 'best.safetensors')
    demo = load_checkpoint(DEMO)
    for key, value in demo.model.state_dict().items():
        assert torch.equal(best.model.state_dict()[key], value), key
    assert best.training['init_from']['start_wins'] is True


def test_all_frames_unlabelled_runs_stage1_only_and_stage2_says_why_in_one_line(
        recordings, tmp_path, capsys):
    bag_u, bag_c = recordings['session_u'][0], recordings['session_c'][0]
    one = tmp_path / 'one_recording'
    assert make_dataset.main(['--unlabelled', str(bag_u), '-o', str(one), '--classes-from',
                              str(DEMO), '--quiet', *TOPICS]) == 0

    def common(folder):
        return ['--config', 'finetune', str(folder / 'dataset.yaml'), '--init-from', str(DEMO),
                *SHORT]

    # Stage 1 is judged on a held-out recording: one recording is one line, exit 2.
    assert train([*common(one), '--stage1', '--run-dir', str(tmp_path / 'one')]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and 'one recording session' in error[0], error
    data = tmp_path / 'unlabelled'
    assert make_dataset.main(['--unlabelled', str(bag_u), str(bag_c), '-o', str(data),
                              '--classes-from', str(DEMO), '--quiet', *TOPICS]) == 0
    assert not (data / 'train.txt').exists()
    assert train([*common(data), '--run-dir', str(tmp_path / 'no_stage1')]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and error[0].startswith('train.py: error:'), error
    run = tmp_path / 'stage1_only'
    assert train([*common(data), '--stage1', '--run-dir', str(run)]) == 0
    captured = capsys.readouterr()
    skipped = [line for line in captured.out.splitlines() if line.startswith('stage 2: skip')]
    assert len(skipped) == 1 and str(run / 'stage1') in skipped[0]
    assert (run / 'stage1' / 'last.safetensors').is_file()
    assert not (run / 'best.safetensors').exists() and not (run / 'last.safetensors').exists()
    assert 'Traceback' not in captured.err


def test_stage1_and_freeze_need_init_from(dataset, capsys):
    with pytest.raises(SystemExit):
        train(['--config', 'finetune', str(dataset / 'dataset.yaml'), '--stage1'])
    assert '--stage1 and --freeze go with --init-from' in capsys.readouterr().err
