"""The synthetic world is deterministic and written in layouts that the real loaders read."""

from pathlib import Path
import subprocess
import sys

import numpy as np
import pytest

from convitac_ros.data import build_dataset, FeelingOfSuccess, TouchAndGo
from convitac_ros.data.synthetic import make_synthetic, work_units
from convitac_ros.data.synthetic.materials import FEELS, LOOKS, MATERIALS, tactile_twin

ROOT = Path(__file__).resolve().parents[1]


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob('*'))
            if p.is_file()}


@pytest.mark.parametrize('fmt, samples', [('touch_and_go', 40), ('feeling_of_success', 6)])
def test_same_seed_writes_identical_files_and_another_seed_differs(tmp_path, fmt, samples):
    first, second, other = (make_synthetic(tmp_path / name, fmt, samples, seed)
                            for name, seed in (('a', 3), ('b', 3), ('c', 4)))
    assert first == second
    files_a, files_b = _files(tmp_path / 'a'), _files(tmp_path / 'b')
    assert files_a == files_b and len(files_a) > 0
    files_c = _files(tmp_path / 'c')
    assert any(files_a[name] != files_c.get(name) for name in files_a)
    assert other['samples'] == samples


def test_touch_and_go_world_is_read_by_the_real_loader(tmp_path):
    counts = make_synthetic(tmp_path, 'touch_and_go', 60, seed=1)
    train = TouchAndGo(tmp_path, 'train')
    test = build_dataset('touch_and_go', tmp_path, 'test', visual_len=3, tactile_len=4)
    assert (len(train), len(test)) == (counts['train'], counts['test'])
    assert len(train) + len(test) == counts['samples'] == 60
    assert train.heads['material'] == [m.name for m in MATERIALS]
    train_sessions = {train[i].meta['session'] for i in range(len(train))}
    test_sessions = {test[i].meta['session'] for i in range(len(test))}
    assert test_sessions and not train_sessions & test_sessions
    sample = test[0]
    assert len(sample.visual) == 3 and len(sample.tactile) == 1 and len(sample.tactile[0]) == 4
    assert sample.visual[0].shape == (96, 96, 3) and sample.tactile[0][0].shape == (80, 96, 3)


def test_touch_and_go_labels_follow_the_material_feel(tmp_path):
    make_synthetic(tmp_path, 'touch_and_go', 48, seed=2)
    dataset = TouchAndGo(tmp_path, 'train')
    material = dataset.target_array('material')
    for head, attribute in (('hardness', 'soft'), ('roughness', 'rough')):
        expected = [int(getattr(FEELS[MATERIALS[m].feel], attribute)) for m in material]
        assert list(dataset.target_array(head)) == expected
    assert set(material) == set(range(len(MATERIALS)))  # balanced blocks: every class occurs


def test_touch_and_go_approach_frames_are_inconclusive_context(tmp_path):
    make_synthetic(tmp_path, 'touch_and_go', 3, seed=0)
    labels = (tmp_path / 'label.txt').read_text().splitlines()
    assert [line.rsplit(',', 1)[1] for line in labels][0] == '-1'
    assert len(labels) == 4 and not (tmp_path / 'label.txt').read_text().endswith('\n')
    sample = TouchAndGo(tmp_path, 'train', visual_len=2, tactile_len=2)[0]
    assert sample.meta['visual_frames'] == ['0000000001.jpg', '0000000002.jpg']
    # The approach frame has no contact, the pressed one does: the gel image changes.
    before, pressed = (frame.astype(float) for frame in sample.tactile[0])
    assert np.abs(pressed - before).mean() > 2.0


def test_every_look_and_every_feel_is_shared_by_two_materials():
    for group, table in (('look', LOOKS), ('feel', FEELS)):
        counts = {key: sum(getattr(m, group) == key for m in MATERIALS) for key in table}
        assert set(counts.values()) == {2}
    for index, material in enumerate(MATERIALS):
        twin = MATERIALS[tactile_twin(index)]
        assert twin.feel == material.feel and twin.look != material.look


def test_grasp_world_is_read_by_the_real_loader(tmp_path):
    counts = make_synthetic(tmp_path, 'feeling_of_success', 12, seed=0)
    dataset = FeelingOfSuccess(tmp_path, 'all')
    assert len(dataset) == 12 == counts['samples']
    assert len(FeelingOfSuccess(tmp_path, 'test')) == counts['test']
    assert int(dataset.target_array('grasp_success').sum()) == counts['successes']
    sample = dataset[0]
    assert len(sample.visual) == 2 and [len(s) for s in sample.tactile] == [2, 2]
    assert sample.visual[1].shape == (96, 96, 3) and sample.tactile[0][1].shape == (80, 96, 3)


def test_progress_reports_every_work_unit(tmp_path):
    steps = []
    make_synthetic(tmp_path, 'touch_and_go', 10, seed=0, progress=steps.append)
    assert sum(steps) == work_units('touch_and_go', 10) == 4


def test_unknown_format_is_refused(tmp_path):
    with pytest.raises(ValueError, match='objectfolder'):
        make_synthetic(tmp_path, 'objectfolder', 10, seed=0)


def test_command_line_writes_a_dataset(tmp_path):
    result = subprocess.run(
        [sys.executable, str(ROOT / 'training' / 'make_synthetic.py'), '--output',
         str(tmp_path / 'tag'), '--samples', '6', '--seed', '5'],
        capture_output=True, text=True, check=True, cwd=ROOT)
    assert '"samples": 6' in result.stdout
    assert len(TouchAndGo(tmp_path / 'tag', 'train')) + len(
        TouchAndGo(tmp_path / 'tag', 'test')) == 6
