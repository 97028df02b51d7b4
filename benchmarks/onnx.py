"""Benchmark part `onnx`: torch eager against ONNX Runtime, model and Predictor, in one run.

For each configuration the model is exported with `convitac_ros.export.export_model` (the graph
`convitac_export` writes) and four calls are timed in interleaved rounds: the model (uint8
staging frames at the model's size -> probabilities) in torch eager and in onnxruntime, and
`predict` on raw camera and tactile frames with the torch `Predictor` and the `OnnxPredictor`.
Both runtimes get the same number of CPU threads. The largest probability difference between
the two predictors on the timed frames is reported with the timings.
"""

from __future__ import annotations

from pathlib import Path
import tempfile
from typing import Any

import numpy as np
import torch

from benchmarks.model import camera_frames, Subject
from benchmarks.report import device_sync, Report, summarize, Table, time_interleaved
from convitac_ros.export import export_model, InferenceGraph
from convitac_ros.inference import Predictor
from convitac_ros.runtime_onnx import INPUT_NAME, OnnxPredictor
from convitac_ros.staging import InputSpec

AIM = 1.3  # the aim: ONNX Runtime this much faster than eager, paper config on CPU


def onnx_calls(subject: Subject, onnx_path: Path, device: torch.device,
               visual: list[np.ndarray], tactile: list[list[np.ndarray]]
               ) -> tuple[dict[str, Any], float, list[str]]:
    """The four timed calls, the probability difference and the onnxruntime providers."""
    threads = torch.get_num_threads()
    predictor = Predictor(subject.model, subject.heads, subject.preprocess, device=device,
                          model_name=subject.name)
    runtime = OnnxPredictor(onnx_path, device=device.type,
                            threads=threads if device.type == 'cpu' else 0)
    graph = InferenceGraph(subject.model, subject.heads, subject.preprocess).to(device)
    staging = InputSpec.from_record(subject.preprocess).random_frames(1)
    staged = torch.from_numpy(staging).to(device)
    session = runtime._session  # noqa: SLF001 - the same session predict() runs

    def torch_model() -> Any:
        with torch.inference_mode():
            return graph(staged)

    calls = {
        'torch model': torch_model,
        'onnxruntime model': lambda: session.run(None, {INPUT_NAME: staging}),
        'torch predict': lambda: predictor.predict(visual, tactile),
        'onnxruntime predict': lambda: runtime.predict(visual, tactile),
    }
    ours, theirs = runtime.predict(visual, tactile), predictor.predict(visual, tactile)
    difference = max(float(np.abs(ours[h] - theirs[h]).max()) for h in ours)
    return calls, difference, runtime.providers


def run_onnx(subjects: list[Subject], devices: list[torch.device],
             frame_sizes: dict[str, tuple[int, int]], options: dict[str, Any]) -> Report:
    """Part `onnx`: torch eager vs ONNX Runtime per config and device, with ratios."""
    report = Report('onnx', settings={**options, 'frame_sizes': frame_sizes,
                                      'threads': torch.get_num_threads()})
    table = Table('torch eager vs ONNX Runtime, batch 1 (same run, interleaved rounds)',
                  ['config', 'device', 'onnxruntime provider', 'model torch p50 ms',
                   'model ORT p50 ms', 'model ORT speed-up', 'predict torch p50 ms',
                   'predict ORT p50 ms', 'predict ORT speed-up', 'max abs diff of p'])
    (cam_h, cam_w), (tac_h, tac_w) = frame_sizes['camera'], frame_sizes['tactile']
    rows = report.results.setdefault('rows', [])
    with tempfile.TemporaryDirectory() as directory:
        for subject in subjects:
            preprocess = subject.preprocess
            data, _ = export_model(subject.model, subject.heads, preprocess)
            onnx_path = Path(directory) / f'{subject.name}.onnx'
            onnx_path.write_bytes(data)
            visual = camera_frames(preprocess['visual_len'], cam_h, cam_w)
            tactile = [camera_frames(preprocess['tactile_len'], tac_h, tac_w, seed=1 + sensor)
                       for sensor in range(preprocess['num_tactile'])]
            for device in devices:
                try:
                    calls, difference, providers = onnx_calls(subject, onnx_path, device,
                                                              visual, tactile)
                except ValueError as exc:  # e.g. no CUDA provider in this onnxruntime
                    table.add(subject.name, str(device), str(exc)[:90], *[None] * 7)
                    rows.append({'config': subject.name, 'device': str(device),
                                 'error': str(exc)})
                    continue
                durations = time_interleaved(calls, options['runs'], options['warmup'],
                                             options['budget_s'], device_sync(device))
                stats = {name: summarize(samples) for name, samples in durations.items()}
                p50 = {name: s['p50_ms'] for name, s in stats.items()}
                model_ratio = p50['torch model'] / p50['onnxruntime model']
                predict_ratio = p50['torch predict'] / p50['onnxruntime predict']
                rows.append({'config': subject.name, 'device': str(device),
                             'providers': providers, 'stats': stats,
                             'model_speedup': model_ratio, 'predict_speedup': predict_ratio,
                             'max_abs_diff': difference})
                table.add(subject.name, str(device), providers[0], p50['torch model'],
                          p50['onnxruntime model'], f'{model_ratio:.2f}x', p50['torch predict'],
                          p50['onnxruntime predict'], f'{predict_ratio:.2f}x',
                          f'{difference:.1e}')
            subject.model.to('cpu')
    table.notes.append(
        f'model = uint8 frames at the model size -> probabilities (the exported graph; torch '
        f'runs the same InferenceGraph eagerly); predict = raw camera {cam_w}x{cam_h} and '
        f'tactile {tac_w}x{tac_h} uint8 frames -> probabilities (resize included); speed-up > 1x '
        f'means ONNX Runtime is faster; both runtimes use {torch.get_num_threads()} CPU '
        f'thread(s); the aim for the paper config on CPU is {AIM}x.')
    report.tables.append(table)
    return report
