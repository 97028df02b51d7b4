"""Benchmark part `node`: end-to-end latency, sustainable rate and overload of `convitac_node`.

The node runs as a subprocess (loopback DDS, private domain); this process publishes
camera/tactile pairs and receives ``~/result``. Four runs:

0. the echo floor: :mod:`benchmarks.echo` in place of the node (same topics, QoS
   and input path, no model) at ``--rate``: what DDS and rclpy alone cost per pair;
1. latency at ``--rate``: publish of the last message of a pair -> result (p50/p95/p99). In
   the idle gap after each result this process times the model forward (and
   ``Predictor.predict``) on the same checkpoint and device, so the node/model ratio compares
   numbers taken under the same load;
2. rate steps: the rate doubles until the node stops answering every pair (then two bisection
   steps); the highest rate answered in full with no latency growth is the sustainable rate;
3. overload at ``--overload-factor`` x that rate for ``--overload-s``: latency, node RSS and the
   node's drop counters per time window;
4. the input path compared: the echo and the node with ``direct_input: true`` and ``false``
   (images taken by the executor's subscription callbacks) at ``--rate``, in interleaved
   rounds so that a machine whose speed drifts does not favour either.

The node's own work (issue 17) is what remains of each pair's end-to-end latency after the
transport (the echo floor's p50) and ``Predictor.predict`` (its p50, timed in the gaps of the
same run): the synchronizer, window, conversion, queue hand-off, output building, publishing
and diagnostics. Run 1 reports it as the row "node overhead" against a budget of
``OVERHEAD_BUDGET_MS`` at p50; run 4 repeats it from interleaved rounds.
"""

from __future__ import annotations

import argparse
from functools import partial
import os
from pathlib import Path
import sys
import tempfile
import time
from typing import Any

import numpy as np
import torch

from benchmarks.load import Client, Sent, smooth_scene
from benchmarks.model import camera_frames, predictor_pieces
from benchmarks.report import Check, Report, summarize, Table, time_calls, time_interleaved
from convitac_ros.predictor import open_predictor
from convitac_ros.preprocess import resize_frame
from convitac_ros.ros.contact import ContactDetector
from convitac_ros.ros.dds_profile import PROFILE_VARIABLES
from convitac_ros.ros.image_conversion import compressed_to_rgb, image_to_rgb
from convitac_ros.ros.image_messages import compressed_message, image_message
from convitac_ros.ros.node_process import loopback_dds, NodeProcess
from convitac_ros.ros.outputs import result_json
from convitac_ros.ros.parameters import SPECS

LATENCY_BAR = 1.25  # node p50 / model forward p50 (issue 7, tiny config)
OVERHEAD_BUDGET_MS = 0.5  # the node's own work per pair at p50 (issue 17)
ANSWERED = 0.95  # fraction of pairs that must get a result for a rate to count as sustained
GROWTH = 1.5  # latency growth allowed over a run (last window p50 / first window p50)
GROWTH_SLACK_MS = 2.0  # latency differences below this are scheduling noise, not growth
RSS_SLACK_MIB = 20.0
MIN_MODEL_SAMPLES = 30  # forward / predict timings per latency run
ROOT = Path(__file__).resolve().parents[1]  # the checkout: `-m benchmarks.echo` runs there
ECHO_MAX_S = 10.0  # the echo floor run lasts --duration-s, at most this long


def run_node(args: argparse.Namespace, checkpoint: Path | None, device: torch.device
             ) -> Report:
    """Part `node`: see the module docstring."""
    dds = loopback_dds()
    report = Report('node', settings={
        'rate_hz': args.rate, 'duration_s': args.duration_s, 'step_s': args.step_s,
        'overload_factor': args.overload_factor, 'overload_s': args.overload_s,
        'device': str(device), 'dds': dds, 'camera_size': args.camera_size,
        'tactile_size': args.tactile_size, 'reliable': args.reliable,
        'compressed': args.compressed,
        'fastdds_profile': os.environ.get(PROFILE_VARIABLES[0]) or None})
    with tempfile.TemporaryDirectory(prefix='convitac_bench_') as tmp:
        checkpoint = checkpoint or _tiny_checkpoint(Path(tmp))
        report.settings['checkpoint'] = str(checkpoint)
        predictor = open_predictor(checkpoint, device=device)
        report.settings.update(
            backend=predictor.backend, providers=getattr(predictor, 'providers', None),
            resize_on_device=predictor.resize_on_device)
        pieces = _pieces(predictor, args)
        # The forward timed here runs with the node's torch threads, so that the ratio
        # compares like with like (the node's default is one thread).
        threads = args.threads or SPECS['torch_threads'].default
        torch.set_num_threads(threads)
        report.settings['torch_threads'] = threads
        parameters = {'checkpoint': str(checkpoint.resolve()), 'device': str(device),
                      'torch_threads': threads,
                      'qos_reliability': 'reliable' if args.reliable else 'best_effort',
                      'image_transport': 'compressed' if args.compressed else 'raw'}
        sizes = [args.camera_size] + [args.tactile_size] * predictor.num_tactile
        echo = [sys.executable, '-m', 'benchmarks.echo', '--inputs',
                str(len(sizes))] + ['--reliable'] * args.reliable + ['--compressed'] * (
                    args.compressed)
        with NodeProcess({}, Path(tmp) / 'echo.log', command=echo, cwd=ROOT) as process:
            client = Client(sizes, reliable=args.reliable, compressed=args.compressed)
            try:
                client.wait_ready(process, 60.0)
                client.run_rate(args.rate, 1.0)  # warm the path up; not measured
                floor = _echo_run(client, args)
            finally:
                client.close()
        with NodeProcess(parameters, Path(tmp) / 'node.log') as process:
            client = Client(sizes, reliable=args.reliable, compressed=args.compressed)
            try:
                client.wait_ready(process, 180.0)
                client.run_rate(args.rate, 2.0)  # warm the path up; not measured
                _latency_run(client, pieces, args, floor, report)
                _own_work_pieces(predictor, sizes, args, report)
                sustained = _rate_steps(client, process, args, report)
                _overload_run(client, process, args, sustained, report)
            finally:
                client.close()
        if args.input_rounds > 0:
            _input_path_runs(args, parameters, sizes, echo, pieces, Path(tmp), report)
    return report


def _input_path_runs(args: argparse.Namespace, parameters: dict[str, Any],
                     sizes: list[tuple[int, int]], echo: list[str], pieces: dict[str, Any],
                     folder: Path, report: Report) -> None:
    """Echo and node with direct and with executor input, in interleaved rounds.

    ``Predictor.predict`` is timed in the gaps of the node's rounds, so that the node's
    overhead (node - echo - predict) comes from interleaved measurements too.
    """
    rounds = args.input_rounds
    seconds = min(args.duration_s, ECHO_MAX_S) / rounds
    setups = {('echo', 'direct'): (echo, {}),
              ('echo', 'executor'): (echo + ['--executor'], {}),
              ('node', 'direct'): (None, parameters | {'direct_input': True}),
              ('node', 'executor'): (None, parameters | {'direct_input': False})}
    samples: dict[tuple[str, str], list[float]] = {key: [] for key in setups}
    predict: list[float] = []
    for index in range(rounds):
        for (name, path), (command, params) in setups.items():
            log = folder / f'{name}_{path}_{index}.log'
            with NodeProcess(params, log, command=command, cwd=ROOT) as process:
                client = Client(sizes, reliable=args.reliable, compressed=args.compressed)
                try:
                    client.wait_ready(process, 180.0)
                    client.run_rate(args.rate, 1.0)  # warm the path up; not measured
                    gaps = GapTimer(client, {'predict': pieces['node_predict']}) if (
                        name == 'node') else None
                    sent = client.run_rate(args.rate, seconds, gaps)
                    client.settle(0.5)
                    samples[(name, path)] += _latencies(client, sent)[0]
                    predict += gaps.times['predict'] if gaps else []
                finally:
                    client.close()
    predict += time_calls(pieces['node_predict'],
                          max(0, MIN_MODEL_SAMPLES - len(predict)), 0)
    predict_ms = summarize(predict)['p50_ms']
    stats = {path: {name: summarize(samples[(name, path)]) for name in ('echo', 'node')}
             for path in ('direct', 'executor')}
    for path in stats:
        stats[path]['overhead'] = summarize(node_overhead(
            samples[('node', path)], stats[path]['echo']['p50_ms'], predict_ms))
    report.results['input_path'] = stats | {'rounds': rounds, 'seconds': seconds,
                                            'predictor_predict': summarize(predict)}
    direct, executor = stats['direct'], stats['executor']
    table = Table(f'Input path at {args.rate:g} pairs/s: a thread of its own (direct_input: '
                  'true, the default) vs executor callbacks', [
                      'process', 'direct p50 ms', 'executor p50 ms', 'direct p95 ms',
                      'executor p95 ms', 'executor / direct p50'])
    labels = {'echo': 'echo', 'node': 'node',
              'overhead': 'node overhead (node - echo p50 - predict p50)'}
    for name, label in labels.items():
        table.add(label, direct[name]['p50_ms'], executor[name]['p50_ms'],
                  direct[name]['p95_ms'], executor[name]['p95_ms'],
                  f"{executor[name]['p50_ms'] / direct[name]['p50_ms']:.2f}x")
    table.notes.append(f'{rounds} interleaved rounds of {seconds:g} s per process '
                       'and path (echo direct, echo executor, node direct, node executor), '
                       'after the other runs; same rate, frames and client. Predictor.predict '
                       f'as the node calls it: p50 {predict_ms:.3g} ms, timed in the gaps of '
                       'the node rounds.')
    report.tables.append(table)


def _tiny_checkpoint(folder: Path) -> Path:
    from convitac_ros.checkpoint import save_checkpoint
    from convitac_ros.model import ConViTac, ModelConfig

    return save_checkpoint(folder / 'tiny_random.safetensors', ConViTac(ModelConfig.tiny()))


def _pieces(predictor: Any, args: argparse.Namespace) -> dict[str, Any]:
    (cam_h, cam_w), (tac_h, tac_w) = args.camera_size, args.tactile_size
    visual = camera_frames(predictor.visual_len, cam_h, cam_w)
    tactile = [camera_frames(predictor.tactile_len, tac_h, tac_w, seed=1 + sensor)
               for sensor in range(predictor.num_tactile)]
    predictor.warmup()
    pieces = predictor_pieces(predictor, visual, tactile)
    # What the node's worker calls: frames at their received size for a predictor that resizes
    # on its device; else each set resized to the model's size once, on arrival.
    size = predictor.image_size
    sized = (visual, tactile) if predictor.resize_on_device else (
        [resize_frame(frame, size) for frame in visual],
        [[resize_frame(frame, size) for frame in sensor] for sensor in tactile])
    pieces['node_predict'] = lambda: predictor.predict(*sized)
    return pieces


def _latencies(client: Client, sent: list[Sent]) -> tuple[list[float], list[float]]:
    """End-to-end (publish -> result) and node-internal latencies, in seconds."""
    matched = client.matched(sent)
    e2e = [(received - item.sent_ns) / 1e9 for item, received, _ in matched]
    internal = [payload.get('latency_ms', float('nan')) / 1e3 for _, _, payload in matched]
    return e2e, internal


def node_overhead(end_to_end_s: list[float], floor_p50_ms: float, predict_p50_ms: float
                  ) -> list[float]:
    """The node's own work per pair: end to end minus the echo floor and ``predict``.

    Args:
        end_to_end_s: Each answered pair's end-to-end latency, in seconds.
        floor_p50_ms: The echo floor's p50 (the transport), in ms.
        predict_p50_ms: ``Predictor.predict``'s p50 on the frames the node hands it, in ms.

    Returns:
        Per pair, in seconds (negative where a pair beat the medians it is compared with).
    """
    subtract = (floor_p50_ms + predict_p50_ms) / 1e3
    return [latency - subtract for latency in end_to_end_s]


class GapTimer:
    """A ``between`` hook for :meth:`Client.run_rate`: times calls in the gaps between pairs.

    After each pair it waits for that pair's result, then times one of ``calls`` (by turns)
    if it fits before the next publication, so that the timing never overlaps the node's work.
    """

    def __init__(self, client: Client, calls: dict[str, Any]) -> None:
        """Time ``calls`` (name -> zero-argument callable) in ``client``'s gaps."""
        self._client = client
        self._calls = calls
        self.times: dict[str, list[float]] = {name: [] for name in calls}
        # The estimate that decides whether a call fits in the gap; updated as samples come.
        self._estimate = {name: float(np.median(time_calls(call, 5, 2)))
                          for name, call in calls.items()}
        self._turn = 0

    def __call__(self, item: Sent, next_time: float) -> None:
        """Wait for ``item``'s result, then time the next call if it fits before ``next_time``."""
        self._client.wait_result(item.stamp_ns, next_time - 1e-3)
        names = list(self._calls)
        name = names[self._turn % len(names)]
        if next_time - time.perf_counter() > 2 * self._estimate[name]:
            self._turn += 1
            self.times[name].extend(time_calls(self._calls[name], 1, 0))
            self._estimate[name] = float(np.median(self.times[name][-20:]))
        else:  # a slow first estimate must not shut the gap out for good
            self._estimate[name] *= 0.9


def _echo_run(client: Client, args: argparse.Namespace) -> dict[str, Any]:
    """End-to-end latency of the echo node: the transport floor (sent, answered, stats)."""
    sent = client.run_rate(args.rate, min(args.duration_s, ECHO_MAX_S))
    client.settle(0.5)
    e2e, _ = _latencies(client, sent)
    return {'sent': len(sent), 'answered': len(e2e), 'stats': summarize(e2e)}


def _latency_run(client: Client, pieces: dict[str, Any], args: argparse.Namespace,
                 floor: dict[str, Any], report: Report) -> None:
    gaps = GapTimer(client, {name: pieces[name]
                             for name in ('forward', 'predict', 'node_predict')})
    model_times = gaps.times
    sent = client.run_rate(args.rate, args.duration_s, gaps)
    client.settle(0.5)
    in_gap = {name: len(times) for name, times in model_times.items()}
    for name, times in model_times.items():  # too few gaps (a slow node): time the rest now
        times.extend(time_calls(pieces[name], max(0, MIN_MODEL_SAMPLES - len(times)), 0))
    e2e, internal = _latencies(client, sent)
    stats = {'end_to_end': summarize(e2e), 'node_internal': summarize(internal),
             'model_forward': summarize(model_times['forward']),
             'predictor_predict': summarize(model_times['predict']),
             'node_predict': summarize(model_times['node_predict'])}
    stats['echo_floor'] = floor['stats']
    stats['node_overhead'] = summarize(node_overhead(
        e2e, floor['stats']['p50_ms'], stats['node_predict']['p50_ms']))
    overhead = stats['node_overhead']
    forward = stats['model_forward']['p50_ms']
    ratio = stats['end_to_end']['p50_ms'] / forward
    # The best a node on this transport can do: the floor plus the Predictor's own work.
    bound = (floor['stats']['p50_ms'] + stats['predictor_predict']['p50_ms']) / forward
    report.results['latency'] = {'rate_hz': args.rate, 'sent': len(sent), 'answered': len(e2e),
                                 'stats': stats, 'node_over_forward_p50': ratio,
                                 'floor_plus_predict_over_forward_p50': bound,
                                 'echo': {'sent': floor['sent'], 'answered': floor['answered']},
                                 'model_samples_in_gap': in_gap}
    table = Table(f'Node latency at {args.rate:g} pairs/s ({len(e2e)} of {len(sent)} answered)',
                  ['measurement', 'p50 ms', 'p95 ms', 'p99 ms', 'max ms', 'p50 / forward p50'])
    labels = {'end_to_end': 'node end to end (publish -> ~/result)',
              'node_internal': 'inside the node (pair complete -> published)',
              'predictor_predict': 'Predictor.predict alone (same run)',
              'node_predict': 'Predictor.predict on the frames the node hands it',
              'model_forward': 'model forward alone (same run)',
              'echo_floor': 'echo floor: same topics, no model (same run)',
              'node_overhead': 'node overhead: end to end - echo floor p50 - predict p50'}
    for key, label in labels.items():
        row = stats[key]
        table.add(label, row['p50_ms'], row['p95_ms'], row['p99_ms'], row['max_ms'],
                  f"{row['p50_ms'] / forward:.2f}x")
    (cam_h, cam_w), (tac_h, tac_w) = args.camera_size, args.tactile_size
    qos = 'reliable' if args.reliable else 'best-effort'
    kind = ('JPEG sensor_msgs/CompressedImage' if args.compressed
            else 'rgb8 sensor_msgs/Image')
    sizes_kb = ' + '.join(f'{size / 1000:.0f} kB' for size in client.message_bytes)
    report.results['latency']['message_bytes'] = client.message_bytes
    table.notes.append(f'inputs: camera {cam_w}x{cam_h} and tactile {tac_w}x{tac_h} {kind} '
                       f'({sizes_kb} per pair, {qos} QoS), one shared stamp per pair; forward and '
                       'predict are timed in this process in the idle gap after each result '
                       f'({in_gap["forward"]}, {in_gap["predict"]} and {in_gap["node_predict"]} '
                       'calls; the rest of '
                       f'{MIN_MODEL_SAMPLES} right after the run). End to end starts right '
                       'before the publication of the last message of a pair.')
    table.notes.append(f'echo floor: a node that answers each pair at once, without a model '
                       f'(benchmarks.echo; {floor["answered"]} of {floor["sent"]} '
                       'answered, run before the node): what DDS and rclpy cost alone. Echo '
                       f'floor + Predictor.predict = {bound:.2f}x the forward: the best this '
                       'transport allows.')
    profile = 'with' if report.settings.get('fastdds_profile') else 'without'
    settings = report.settings
    where = 'resized on the device' if settings['resize_on_device'] else 'resized on the host'
    table.notes.append(f"model: {Path(settings['checkpoint']).name} on {settings['device']}, "
                       f"{settings['backend']} backend"
                       + (f" ({', '.join(settings['providers'])})" if settings['providers']
                          else '') + f', frames {where}.')
    table.notes.append("node overhead: the node's own work (synchronizer, window, conversion, "
                       'queue hand-off, outputs, publishing, diagnostics), per pair its end to '
                       'end minus the echo floor p50 and the p50 of Predictor.predict on the '
                       'frames the node hands it (at their received size when the predictor '
                       "resizes on its device, else resized to the model's size once per set "
                       'by the node) of this run; '
                       f'budget {OVERHEAD_BUDGET_MS:g} ms at p50. Every process ran {profile} '
                       'the Fast DDS profile config/fastdds.xml.')
    report.tables.append(table)
    report.checks.append(Check(
        f'node p50 within {LATENCY_BAR}x of the model forward p50', ratio <= LATENCY_BAR,
        f'{stats["end_to_end"]["p50_ms"]:.2f} ms / {forward:.2f} ms = {ratio:.2f}x (echo floor '
        f'+ predict alone: {bound:.2f}x)'))
    report.checks.append(Check(
        f'node overhead p50 within {OVERHEAD_BUDGET_MS:g} ms (end to end - echo floor - '
        'predict)', overhead['p50_ms'] <= OVERHEAD_BUDGET_MS,
        f"{stats['end_to_end']['p50_ms']:.3g} - {floor['stats']['p50_ms']:.3g} - "
        f"{stats['node_predict']['p50_ms']:.3g} = {overhead['p50_ms']:.3g} ms "
        f"(p95 {overhead['p95_ms']:.3g} ms)"))


def _own_work_pieces(predictor: Any, sizes: list[tuple[int, int]],
                     args: argparse.Namespace, report: Report) -> None:
    """Time the node's per-pair work piece by piece in this process (interleaved rounds).

    The same functions the node runs on each new set, on messages built as the client builds
    them: conversion of each input, its resize to the model's size (once per set), the contact
    score and the result JSON. What the node overhead holds besides them is thread hand-off,
    scheduling and publishing.
    """
    names = ['camera'] + [f'tactile {index}' for index in range(len(sizes) - 1)]
    size = predictor.image_size
    calls: dict[str, Any] = {}
    frames = []
    for seed, (name, (height, width)) in enumerate(zip(names, sizes)):
        if args.compressed:
            convert = partial(compressed_to_rgb,
                              compressed_message(smooth_scene(height, width, seed)))
        else:
            convert = partial(image_to_rgb,
                              image_message(camera_frames(1, height, width, seed)[0]))
        kind = 'JPEG' if args.compressed else 'rgb8'
        calls[f'convert {name} {width}x{height} ({kind})'] = convert
        frame = convert()
        if predictor.resize_on_device:  # the node hands received frames; nothing to resize
            frames.append(frame)
            continue
        calls[f'resize {name} to {size} px'] = partial(resize_frame, frame, size)
        frames.append(resize_frame(frame, size))
    contact = ContactDetector()
    sample = ([frames[0]] * predictor.visual_len,
              [[frame] * predictor.tactile_len for frame in frames[1:]])
    probabilities = predictor.predict(*sample)
    header = image_message(frames[0], stamp_ns=1).header

    def outputs() -> str:
        state = contact.update(frames[1:], 10.0)
        return result_json(header, probabilities, predictor.heads,
                           {'contact': state.in_contact, 'contact_score': state.score})

    calls['contact score + result JSON'] = outputs
    times = time_interleaved(calls, args.runs, args.warmup, args.budget_s)
    rounds = len(times['contact score + result JSON'])
    stats = {name: summarize(durations) for name, durations in times.items()}
    total = sum(row['p50_ms'] for row in stats.values())
    report.results['own_work_pieces'] = stats | {'sum_p50_ms': total}
    table = Table(f"The node's own work per pair, piece by piece (sum of p50 {total:.3g} ms)",
                  ['piece', 'p50 ms', 'p95 ms', 'share of the sum'])
    for name, row in stats.items():
        table.add(name, row['p50_ms'], row['p95_ms'], f"{row['p50_ms'] / total:.0%}")
    table.notes.append('the functions the node runs on each new set, timed in this process in '
                       f'interleaved rounds after the latency run ({rounds} rounds); '
                       'the node overhead beyond their sum is the hand-off between its input '
                       'and inference threads, scheduling and publishing.')
    report.tables.append(table)


def _growth(before_ms: float, after_ms: float) -> tuple[float, bool]:
    """The latency ratio after/before, and whether it grew beyond scheduling noise."""
    growth = after_ms / before_ms if before_ms > 0 else float('inf')
    return growth, growth > GROWTH and after_ms - before_ms > GROWTH_SLACK_MS


def _step(client: Client, process: NodeProcess, rate: float, seconds: float) -> dict[str, Any]:
    """Publish at one rate and judge whether the node kept up."""
    cpu_before, wall_before = process.cpu_seconds(), time.perf_counter()
    sent = client.run_rate(rate, seconds)
    wall = time.perf_counter() - wall_before
    client.settle(0.3)
    cpu = (process.cpu_seconds() - cpu_before) / wall
    e2e, _ = _latencies(client, sent)
    half = len(sent) // 2
    first, second = (_latencies(client, part)[0] for part in (sent[:half], sent[half:]))
    p50 = [summarize(part)['p50_ms'] for part in (first, second)]
    answered = len(e2e) / max(len(sent), 1)
    growth, grew = _growth(*p50)
    return {'rate_hz': rate, 'achieved_hz': len(sent) / wall, 'sent': len(sent),
            'answered': answered, 'latency': summarize(e2e), 'growth': growth,
            'node_cpu_cores': cpu,
            'sustained': answered >= ANSWERED and not grew and len(sent) / wall >= 0.9 * rate}


def _rate_steps(client: Client, process: NodeProcess, args: argparse.Namespace,
                report: Report) -> float:
    rates = list(args.rates or [args.rate * 2**i for i in range(12)])
    steps, best, failed = [], 0.0, None
    for rate in rates:
        step = _step(client, process, rate, args.step_s)
        steps.append(step)
        if not step['sustained']:
            failed = rate
            break
        best = rate
    for _ in range(2 if failed is not None and best > 0 and not args.rates else 0):
        step = _step(client, process, round((best + failed) / 2), args.step_s)
        steps.append(step)
        best, failed = (step['rate_hz'], failed) if step['sustained'] else (best, step['rate_hz'])
    report.results['rate_steps'] = steps
    report.results['sustainable_hz'] = best
    table = Table(f'Input rate steps ({args.step_s:g} s each): sustainable {best:g} pairs/s',
                  ['target /s', 'achieved /s', 'answered', 'p50 ms', 'p99 ms',
                   'p50 growth', 'node CPU cores', 'sustained'])
    for step in steps:
        table.add(step['rate_hz'], step['achieved_hz'], f"{step['answered']:.1%}",
                  step['latency']['p50_ms'], step['latency']['p99_ms'],
                  f"{step['growth']:.2f}x", step['node_cpu_cores'], step['sustained'])
    table.notes.append(f'sustained: >= {ANSWERED:.0%} of pairs answered, p50 of the second half '
                       f'not above {GROWTH}x (and {GROWTH_SLACK_MS:g} ms over) the first half, '
                       'publisher within 90% of the target rate; after the first failure the '
                       'rate is bisected twice.')
    report.tables.append(table)
    return best


def _overload_run(client: Client, process: NodeProcess, args: argparse.Namespace,
                  sustained: float, report: Report) -> None:
    if sustained <= 0:
        report.checks.append(Check('overload run', False, 'no sustainable rate was found'))
        return
    rate = args.overload_factor * sustained
    windows = 6
    samples: list[dict[str, Any]] = []
    start = time.perf_counter()

    def sample(_: Sent, __: float) -> None:
        elapsed = time.perf_counter() - start
        if not samples or elapsed - samples[-1]['t_s'] >= 1.0:
            samples.append({'t_s': elapsed, 'rss_mib': process.rss_mib(),
                            'dropped': client.counter('dropped total'),
                            'queue': client.counter('queue length')})

    sent = client.run_rate(rate, args.overload_s, sample)
    client.settle(1.5)  # let /diagnostics catch up
    rows = []
    bounds = np.linspace(0, len(sent), windows + 1).astype(int)
    times = np.array([s['t_s'] for s in samples])
    for index in range(windows):
        part = sent[bounds[index]:bounds[index + 1]]
        e2e, _ = _latencies(client, part)
        end = (index + 1) * args.overload_s / windows
        last = samples[max(0, int(np.searchsorted(times, end)) - 1)]
        rows.append({'until_s': end, 'sent': len(part), 'answered': len(e2e),
                     'latency': summarize(e2e), 'rss_mib': last['rss_mib'],
                     'dropped_total': last['dropped'], 'queue': last['queue']})
    counters = dict(client.diagnostics)
    report.results['overload'] = {'rate_hz': rate, 'achieved_hz': len(sent) / args.overload_s,
                                  'windows': rows, 'samples': samples,
                                  'final_diagnostics': counters}
    table = Table(f'Overload: {rate:g} pairs/s ({args.overload_factor:g}x sustainable) for '
                  f'{args.overload_s:g} s, achieved {len(sent) / args.overload_s:.1f}/s',
                  ['until s', 'sent', 'answered', 'p50 ms', 'p95 ms', 'node RSS MiB',
                   'node drops (cumulative)', 'queue'])
    for row in rows:
        table.add(round(row['until_s'], 1), row['sent'], row['answered'],
                  row['latency']['p50_ms'], row['latency']['p95_ms'], row['rss_mib'],
                  row['dropped_total'], row['queue'])
    drops = {k: v for k, v in counters.items() if k.startswith('dropped')}
    table.notes.append(f'node counters at the end: {drops}; received by the node: '
                       + ', '.join(f'{k}={v}' for k, v in counters.items()
                                   if k.endswith(' received')))
    report.tables.append(table)
    first, last = rows[0], rows[-1]
    growth, grew = _growth(first['latency']['p50_ms'], last['latency']['p50_ms'])
    rss_growth = last['rss_mib'] - first['rss_mib']
    report.checks += [
        Check(f'no latency growth under overload (p50 last/first window <= {GROWTH}x or '
              f'<= {GROWTH_SLACK_MS:g} ms more)', not grew, f'{growth:.2f}x'),
        Check(f'no memory growth under overload (RSS last - first window <= '
              f'{RSS_SLACK_MIB:g} MiB)', rss_growth <= RSS_SLACK_MIB, f'{rss_growth:+.1f} MiB'),
        Check('overload drops are counted and reported', int(counters.get('dropped total', 0))
              > 0 or len(sent) == sum(r['answered'] for r in rows),
              f"dropped total = {counters.get('dropped total')}"),
    ]
