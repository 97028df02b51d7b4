"""Smoke tests of `python -m benchmarks`: each part runs on tiny settings, reports well-formed.

Nothing here is timed: the acceptance checks are computed and reported by the benchmark itself
(pass/fail in its JSON and exit code); these tests only check that they are present.
"""

import json
from pathlib import Path

import numpy as np
import pytest

from benchmarks import runner as benchmark
from benchmarks.report import format_cell, summarize, Table, time_interleaved

QUICK = ['--device', 'cpu', '--runs', '3', '--warmup', '1', '--budget-s', '0.2']


def run_part(part: str, tmp_path: Path, *extra: str) -> dict:
    benchmark.main([part, *QUICK, '--output', str(tmp_path), '--tag', 'test', *extra])
    document = json.loads((tmp_path / f'{part}-test.json').read_text())
    markdown = (tmp_path / f'{part}-test.md').read_text()
    assert document['part'] == part
    assert document['command'].startswith(f'python -m benchmarks {part} ')
    assert document['date'] and document['machine']['cpu_logical_cores'] >= 1
    assert document['command'] in markdown
    for table in document['tables']:
        assert table['rows'], table['title']
        assert all(len(row) == len(table['columns']) for row in table['rows'])
        assert table['title'] in markdown
    for check in document['checks']:
        assert isinstance(check['passed'], bool) and check['detail']
    return document


def test_summarize_reports_percentiles_in_milliseconds():
    stats = summarize([0.001 * i for i in range(1, 101)])
    assert stats['count'] == 100
    assert stats['p50_ms'] == pytest.approx(50.5)
    assert stats['p99_ms'] == pytest.approx(99.01)
    assert summarize([])['count'] == 0


def test_time_interleaved_times_every_candidate_each_round():
    calls = []
    durations = time_interleaved({'a': lambda: calls.append('a'),
                                  'b': lambda: calls.append('b')}, runs=4, warmup=1,
                                 budget_s=10.0)
    assert [len(durations['a']), len(durations['b'])] == [4, 4]
    assert calls[:2] == ['a', 'b'] and calls.count('a') == 5


def test_table_renders_markdown_and_refuses_wrong_row_length():
    table = Table('T', ['name', 'value'])
    table.add('x', 1.23456)
    assert '| x | 1.23 |' in table.to_markdown()
    with pytest.raises(ValueError):
        table.add('only one cell')
    assert format_cell(None) == '-' and format_cell(1234.5) == '1234.5'


def test_model_part_reports_every_variant(tmp_path):
    document = run_part('model', tmp_path, '--configs', 'tiny', '--variants',
                        'eager,channels_last', '--batch-sizes', '2')
    rows = document['results']['rows']
    assert [row['variant'] for row in rows] == ['eager', 'channels_last']
    assert all(row['latency']['p50_ms'] > 0 and row['throughput']['2'] > 0 for row in rows)


def test_predictor_part_compares_predict_with_forward(tmp_path, tiny_checkpoint):
    document = run_part('predictor', tmp_path, '--configs', 'tiny', '--variants', 'eager',
                        '--checkpoint', str(tiny_checkpoint), '--camera-size', '80x60',
                        '--tactile-size', '40x30')
    (row,) = document['results']['rows']
    assert set(row['stats']) == {'predict', 'forward', 'preprocess'}
    assert row['overhead_ratio'] > 0


@pytest.mark.slow
def test_node_part_measures_latency_rate_and_overload(tmp_path, tiny_checkpoint):
    document = run_part('node', tmp_path, '--checkpoint', str(tiny_checkpoint), '--rate', '20',
                        '--duration-s', '2', '--rates', '10,20', '--step-s', '1',
                        '--overload-s', '3', '--camera-size', '64x64', '--tactile-size',
                        '64x64')
    results = document['results']
    assert results['latency']['answered'] > 0
    assert results['latency']['node_over_forward_p50'] > 0
    stats = results['latency']['stats']
    assert stats['echo_floor']['p50_ms'] > 0
    # The overhead row is end to end minus the floor and the node-side predict of this run.
    assert stats['node_overhead']['p50_ms'] == pytest.approx(
        stats['end_to_end']['p50_ms'] - stats['echo_floor']['p50_ms']
        - stats['node_predict']['p50_ms'], abs=1e-6)
    assert stats['node_overhead']['count'] == results['latency']['answered']
    assert any(c['name'].startswith('node overhead p50 within 0.5 ms')
               for c in document['checks'])
    pieces = results['own_work_pieces']
    assert {'convert camera 64x64 (rgb8)', 'resize tactile 0 to 64 px',
            'contact score + result JSON'} <= set(pieces)
    assert pieces['sum_p50_ms'] == pytest.approx(sum(
        row['p50_ms'] for name, row in pieces.items() if name != 'sum_p50_ms'))
    assert [step['rate_hz'] for step in results['rate_steps']][0] == 10
    if results['sustainable_hz'] > 0:
        assert len(results['overload']['windows']) == 6
    assert {check['name'].split(' ')[0] for check in document['checks']} >= {'node'}
    paths = results['input_path']
    assert paths['rounds'] >= 2
    for name in ('echo', 'node'):
        assert paths['executor'][name]['p50_ms'] > 0 and paths['direct'][name]['p50_ms'] > 0
    assert paths['predictor_predict']['count'] >= 30
    for path in ('direct', 'executor'):
        assert paths[path]['overhead']['p50_ms'] == pytest.approx(
            paths[path]['node']['p50_ms'] - paths[path]['echo']['p50_ms']
            - paths['predictor_predict']['p50_ms'], abs=1e-6)


def test_node_overhead_subtracts_floor_and_predict_from_each_pair():
    from benchmarks.node_latency import node_overhead

    overhead = node_overhead([0.004, 0.005, 0.0031], floor_p50_ms=0.6, predict_p50_ms=2.9)
    assert overhead == pytest.approx([0.0005, 0.0015, -0.0004])
    assert summarize(overhead)['p50_ms'] == pytest.approx(0.5)


@pytest.mark.slow
def test_training_part_times_both_stages(tmp_path):
    document = run_part('training', tmp_path, '--steps', '2', '--batch-size', '4')
    stages = [row['stage'] for row in document['results']['rows']]
    assert stages == ['stage1', 'stage2']
    assert all(row['samples_per_s'] > 0 for row in document['results']['rows'])


@pytest.mark.slow
def test_node_part_with_compressed_images_reports_their_size(tmp_path, tiny_checkpoint):
    document = run_part('node', tmp_path, '--checkpoint', str(tiny_checkpoint), '--rate', '20',
                        '--duration-s', '1.5', '--rates', '10', '--step-s', '1',
                        '--overload-s', '1', '--overload-factor', '1', '--compressed',
                        '--input-rounds', '0')
    latency = document['results']['latency']
    assert document['settings']['compressed'] is True
    assert 'input_path' not in document['results']  # --input-rounds 0 skips the comparison
    assert latency['answered'] > 0 and latency['stats']['echo_floor']['p50_ms'] > 0
    camera, tactile = latency['message_bytes']
    # JPEG of a 640x480 and a 320x240 scene: far below the raw 921,600 and 230,400 bytes.
    assert 1000 < camera < 921_600 // 4 and 500 < tactile < 230_400 // 4


def test_smooth_scene_is_deterministic_and_compresses():
    import cv2

    from benchmarks.load import smooth_scene

    frame = smooth_scene(240, 320, seed=3)
    assert frame.shape == (240, 320, 3) and frame.dtype == np.uint8
    np.testing.assert_array_equal(frame, smooth_scene(240, 320, seed=3))
    assert not np.array_equal(frame, smooth_scene(240, 320, seed=4))
    ok, data = cv2.imencode('.jpg', frame)
    assert ok and len(data) < frame.nbytes / 4
