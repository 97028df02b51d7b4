"""The shipped demo checkpoint's E^c finds a camera frame's tactile frame in unseen sessions."""

from pathlib import Path

import pytest

from convitac_ros.data.synthetic import make_synthetic
from training.retrieval import checkpoint_retrieval

DEMO = Path(__file__).resolve().parents[1] / 'models' / 'convitac_demo.safetensors'
WORLD_SEED = 2024  # a world the demo model never saw (its training world has seed 0)


@pytest.fixture(scope='module')
def unseen_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp('unseen') / 'synthetic_tag'
    make_synthetic(root, 'touch_and_go', 900, WORLD_SEED)
    return root


def test_demo_encoder_retrieves_the_tactile_frame_at_ten_times_chance(unseen_world):
    values = checkpoint_retrieval(DEMO, unseen_world, 'test', batch_size=32)
    assert values['chance_top1'] == 1 / 32
    assert values['retrieval_top1'] >= 10 * values['chance_top1'], values
    assert values['retrieval_top5'] > values['retrieval_top1']


def test_retrieval_command_prints_the_figure(unseen_world, capsys):
    from training.retrieval import main

    main(['--checkpoint', str(DEMO), '--data-root', str(unseen_world), '--split', 'test'])
    line = capsys.readouterr().out.splitlines()[0]
    assert line.startswith('held-out visual->tactile retrieval, batches of 32: top-1 ')
    assert 'chance 3.1%' in line and 'ceiling' not in line
