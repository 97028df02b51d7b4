"""Material touches and grasps read as one dataset train one checkpoint with both heads."""

from pathlib import Path

import numpy as np
import pytest

from convitac_ros.data import build_dataset, MISSING_LABEL, TouchAndGo
from convitac_ros.data.synthetic import make_synthetic

PARTS = [{'dataset': 'touch_and_go', 'root': 'material',
          'options': {'task': 'material', 'num_tactile': 2}},
         {'dataset': 'feeling_of_success', 'root': 'grasp'}]


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob('*'))
            if p.is_file()}


@pytest.fixture(scope='module')
def worlds(tmp_path_factory) -> Path:
    """A two-finger material world and a grasp world under one root, as demo_both expects."""
    root = tmp_path_factory.mktemp('both')
    make_synthetic(root / 'material', 'touch_and_go', 120, seed=0, fingers=2)
    make_synthetic(root / 'grasp', 'feeling_of_success', 60, seed=0)
    return root


def test_two_finger_material_world_adds_the_opposite_finger_to_the_one_finger_files(
        worlds, tmp_path):
    make_synthetic(tmp_path, 'touch_and_go', 120, seed=0)
    one, two = _files(tmp_path), _files(worlds / 'material')
    assert all(two[name] == data for name, data in one.items())
    second = {name for name in two if '/gelsight_b_frame/' in name}
    assert second == {name.replace('/gelsight_frame/', '/gelsight_b_frame/')
                      for name in one if '/gelsight_frame/' in name}
    sample = TouchAndGo(worlds / 'material', 'train', num_tactile=2)[0]
    assert len(sample.tactile) == 2 and not np.array_equal(sample.tactile[0][-1],
                                                           sample.tactile[1][-1])
    with pytest.raises(ValueError, match='fingers'):
        make_synthetic(tmp_path / 'x', 'touch_and_go', 10, seed=0, fingers=3)


def test_mixed_dataset_has_every_head_and_marks_the_other_worlds_heads_missing(worlds):
    material = build_dataset('touch_and_go', worlds / 'material', 'train', num_tactile=2)
    grasp = build_dataset('feeling_of_success', worlds / 'grasp', 'train')
    mixed = build_dataset('mixed', worlds, 'train', parts=PARTS)
    assert len(mixed) == len(material) + len(grasp)
    assert list(mixed.heads) == ['material', 'hardness', 'roughness', 'grasp_success']
    assert (mixed.num_tactile, mixed.visual_len, mixed.tactile_len) == (2, 2, 2)
    first, last = mixed[0], mixed[len(mixed) - 1]
    assert first.labels['grasp_success'] == MISSING_LABEL and first.labels['material'] >= 0
    assert last.labels['material'] == MISSING_LABEL and last.labels['grasp_success'] >= 0
    assert last.labels == {**dict.fromkeys(mixed.heads, MISSING_LABEL), **grasp[-1].labels}
    success = mixed.target_array('grasp_success')
    assert (success[:len(material)] == MISSING_LABEL).all()
    assert np.array_equal(success[len(material):], grasp.target_array('grasp_success'))
    groups = mixed.group_array()
    assert groups[0].startswith('0:') and groups[-1] == f'1:{grasp[-1].meta["object"]}'


def test_mixed_parts_that_take_different_inputs_are_refused(worlds):
    one_finger = [{**PARTS[0], 'options': {'task': 'material'}}, PARTS[1]]
    with pytest.raises(ValueError, match='part 1 .grasp. has num_tactile 2, part 0 has 1'):
        build_dataset('mixed', worlds, 'train', parts=one_finger)
    with pytest.raises(ValueError, match='needs parts'):
        build_dataset('mixed', worlds, 'train')
    with pytest.raises(ValueError, match='cannot be mixed'):
        build_dataset('mixed', worlds, 'train', parts=[{'dataset': 'mixed', 'root': '.'}])


def test_one_run_on_both_worlds_gives_a_checkpoint_whose_predictor_answers_every_head(
        worlds, tmp_path):
    from convitac_ros.checkpoint import load_checkpoint
    from convitac_ros.inference import Predictor
    from training.train import main as train

    train(['--config', 'demo_both', '--data-root', str(worlds), '--run-dir', str(tmp_path),
           '--device', 'cpu', '--no-progress', '--set', 'stage1.epochs=1',
           '--set', 'stage1.batch_size=16', '--set', 'stage1.retrieval_batch=16',
           '--set', 'stage1.warmup_steps=2', '--set', 'stage2.epochs=1',
           '--set', 'stage2.batch_size=16', '--set', 'data.val_fraction=0.2'])
    path = tmp_path / 'last.safetensors'
    loaded = load_checkpoint(path)
    assert list(loaded.heads) == ['material', 'hardness', 'roughness', 'grasp_success']
    assert loaded.preprocess['num_tactile'] == 2
    assert set(loaded.training['calibration']['temperatures']) == set(loaded.heads)
    sample = build_dataset('mixed', worlds, 'test', parts=PARTS)[0]
    output = Predictor.from_checkpoint(path, device='cpu').predict(sample.visual, sample.tactile)
    assert set(output) == set(loaded.heads)
    assert all(np.isclose(p.sum(), 1.0, atol=1e-4) for p in output.values())
