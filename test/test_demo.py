"""The demo runs end to end: bag, node process, live answers, table, clean shutdown."""

import json
import os
from pathlib import Path
import subprocess
import sys

from convitac_ros.ros.node_client import wait_until

ROOT = Path(__file__).resolve().parents[1]


def test_demo_prints_live_answers_and_the_table_and_stops_the_node(tiny_checkpoint, tmp_path):
    work = tmp_path / 'demo'
    result = subprocess.run(
        [sys.executable, '-m', 'convitac_ros.demo', '--checkpoint', str(tiny_checkpoint),
         '--device', 'cpu', '--samples', '60', '--rate', '4', '--work-dir', str(work),
         '--domain-id', os.environ['ROS_DOMAIN_ID']],
        capture_output=True, text=True, timeout=300, cwd=tmp_path, env=os.environ.copy())
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    out = result.stdout
    report = json.loads((work / 'report' / 'report.json').read_text())
    assert report['mode'] == 'online' and report['samples'] > 0
    assert report['drops'] == 0 and report['answered'] == report['samples']
    # One live line per sample, then the table, then the node's clean exit.
    assert sum(line.lstrip().startswith('[') and 'material=' in line
               for line in out.splitlines()) == report['samples']
    assert 'latency ms' in out and 'hardness' in out
    assert 'node stopped (exit code 0)' in out
    assert (work / 'report' / 'confusion_material.png').is_file()
    assert 'active' in (work / 'node.log').read_text()


def test_demo_script_sets_up_then_runs_the_demo_module():
    env = {k: v for k, v in os.environ.items() if not k.startswith('ROS_')}
    result = subprocess.run(['bash', str(ROOT / 'scripts' / 'demo.sh'), '--help'],
                            capture_output=True, text=True, timeout=600, env=env, cwd='/')
    assert result.returncode == 0, result.stderr[-2000:]
    assert 'setup: ' in result.stdout  # the environment was set up or confirmed first
    assert '--lock-step' in result.stdout  # then the demo module answered


def test_demo_reports_a_missing_checkpoint_clearly(tmp_path):
    result = subprocess.run(
        [sys.executable, '-m', 'convitac_ros.demo', '--checkpoint',
         str(tmp_path / 'none.safetensors'), '--work-dir', str(tmp_path / 'demo')],
        capture_output=True, text=True, timeout=120, env=os.environ.copy())
    assert result.returncode == 1
    assert 'not found' in result.stderr and 'models/README.md' in result.stderr


BOTH = ROOT / 'models' / 'convitac_demo_both.safetensors'


def test_grasp_demo_checkpoint_publishes_material_labels_and_success_probabilities(tmp_path,
                                                                                   capsys):
    """The --grasp demo's pieces: two worlds in one bag, the node with the both-heads model."""
    from node_harness import NODE, running_node
    from std_msgs.msg import Float32

    from convitac_ros.bags.samples import index_bag
    from convitac_ros.demo import make_demo_bag, NODE_PARAMETERS
    from convitac_ros.evaluation.online import evaluate_online
    from convitac_ros.inference import Predictor

    bag = make_demo_bag(tmp_path, samples=60, seed=2024, fps=10.0, grasps=40)
    index = index_bag(bag)
    touches = sum('material' in p.labels for p in index.points)
    grasps = sum('grasp_success' in p.labels for p in index.points)
    assert touches > 0 and grasps > 0 and touches + grasps == len(index.points)
    heads = Predictor.from_checkpoint(BOTH, device='cpu').heads
    parameters = {'checkpoint': str(BOTH), 'device': 'cpu', 'warmup_iterations': 1,
                  **NODE_PARAMETERS}
    with running_node(parameters, tmp_path / 'node.log', ['material'], num_tactile=2,
                      wait=False) as (_, probe):
        success = []
        probe.node.create_subscription(Float32, '/convitac/grasp_success/probability',
                                       lambda msg: success.append(msg.data), 100)
        recorder = evaluate_online(index, node=NODE, lock_step=True, timeout=60, live=True,
                                   progress=False)
        wait_until(lambda: len(success) >= len(index.points)
                   and len(probe.labels['material']) >= len(index.points), 10,
                   'the node published fewer labels or probabilities than it answered')
    report = recorder.report()
    assert report['answered'] == report['samples'] == len(index.points)
    assert report['heads']['material']['total'] == touches
    assert report['heads']['grasp_success']['total'] == grasps
    assert {'roc_auc', 'ece'} <= set(report['heads']['grasp_success'])
    assert set(probe.labels['material']) <= set(heads['material'])
    assert all(0.0 <= p <= 1.0 for p in success) and len(set(success)) > 1
    live = [line for line in capsys.readouterr().out.splitlines() if 'P(success)=' in line]
    assert len(live) == len(index.points)


def test_grasp_demo_command_scores_material_on_touches_and_grasp_success_on_grasps(tmp_path):
    work = tmp_path / 'demo'
    result = subprocess.run(
        [sys.executable, '-m', 'convitac_ros.demo', '--grasp', '--device', 'cpu',
         '--samples', '60', '--grasps', '40', '--rate', '4', '--work-dir', str(work),
         '--domain-id', os.environ['ROS_DOMAIN_ID']],
        capture_output=True, text=True, timeout=300, cwd=tmp_path, env=os.environ.copy())
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    report = json.loads((work / 'report' / 'report.json').read_text())
    assert Path(report['extra']['checkpoint']).name == BOTH.name
    assert report['answered'] == report['samples'] > 0
    heads = report['heads']
    assert heads['material']['total'] + heads['grasp_success']['total'] == report['samples']
    assert sum('P(success)=' in line for line in result.stdout.splitlines()) == report['samples']
    assert 'grasp_success' in result.stdout and 'node stopped (exit code 0)' in result.stdout
