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


def test_per_session_retrieval_probes_each_test_session_alone(unseen_world, tmp_path, capsys):
    from training.retrieval import main

    values = main(['--checkpoint', str(DEMO), '--data-root', str(unseen_world),
                   '--per-session'])
    sessions = values['sessions']
    lines = [line for line in (unseen_world / 'test.txt').read_text().split('\n') if line]
    pairs = {name: sum(line.startswith(name + '/') for line in lines)
             for name in {line.split('/')[0] for line in lines}}
    assert set(sessions) == set(pairs) and len(sessions) >= 2
    for name, item in sessions.items():  # batches of one session's pairs: B at most its size
        assert item['chance_top1'] == 1 / min(32, pairs[name])
    top1 = [item['retrieval_top1'] for item in sessions.values()]
    assert sum(top1) / len(top1) >= 3 * sum(1 / min(32, n) for n in pairs.values()) / len(pairs)
    # The same figure as the pooled probe on a copy of the world whose test list holds that
    # session only.
    name = sorted(sessions)[0]
    alone = tmp_path / 'alone'
    alone.mkdir()
    for entry in unseen_world.iterdir():
        if entry.name not in ('test.txt', 'test_rough.txt'):
            (alone / entry.name).symlink_to(entry)
    (alone / 'test.txt').write_text('\n'.join(line for line in lines
                                              if line.startswith(name + '/')))
    assert checkpoint_retrieval(DEMO, alone, 'test')['retrieval_top1'] == pytest.approx(
        sessions[name]['retrieval_top1'])
    out = capsys.readouterr().out
    assert all(f'  session {name}: top-1 ' in out for name in sessions)
