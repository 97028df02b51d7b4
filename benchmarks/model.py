"""Benchmark parts `model` and `predictor`: the forward pass, then the whole Predictor path.

`model` times ``ConViTac.forward`` on ready, normalised tensors (batch-1 latency and batch
throughput) for each configuration, device and speed-up variant. `predictor` times
``Predictor.predict`` on raw uint8 camera and tactile frames (resize, staging, transfer,
normalisation, forward, softmax, copy back) against its pieces measured alone.
"""

from __future__ import annotations

from collections.abc import Callable
import dataclasses
import gc
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.report import (
    device_sync,
    Report,
    summarize,
    Table,
    time_interleaved,
)
from convitac_ros.checkpoint import default_preprocess, load_checkpoint
from convitac_ros.inference import autocast_context, capture_cuda_graph, Predictor
from convitac_ros.model import ConViTac, ModelConfig
from convitac_ros.runtime_onnx import INPUT_NAME, OnnxPredictor

Forward = Callable[[], Any]


@dataclasses.dataclass
class Subject:
    """A model to time: its configuration name, the network and its deployment metadata."""

    name: str
    model: ConViTac
    heads: dict[str, list[str]]
    preprocess: dict[str, Any]
    source: str


@dataclasses.dataclass(frozen=True)
class Variant:
    """A way to run the forward pass.

    Attributes:
        name: row label.
        precision: 'fp32', 'bf16' or 'fp16' (autocast).
        channels_last: model weights and input frames in channels-last layout.
        compiled: `torch.compile` the model.
        cuda_graph: capture one batch-1 forward in a CUDA graph and replay it.
        threads: torch intra-op threads while this variant runs (None: leave as set).
    """

    name: str
    precision: str = 'fp32'
    channels_last: bool = False
    compiled: bool = False
    cuda_graph: bool = False
    threads: int | None = None


def variants_for(device: torch.device, wanted: list[str]) -> list[Variant]:
    """The variants worth timing on a device ('all' or a list of names)."""
    half = 'fp16' if device.type == 'cuda' and not torch.cuda.is_bf16_supported() else 'bf16'
    candidates = [
        Variant('eager'),
        Variant('channels_last', channels_last=True),
        Variant(f'autocast_{half}', precision=half),
        Variant('compile', compiled=True),
    ]
    if device.type == 'cpu' and torch.get_num_threads() > 1:
        candidates.append(Variant('one_thread', threads=1))
    if device.type == 'cuda':
        candidates += [
            Variant(f'channels_last+{half}', precision=half, channels_last=True),
            Variant(f'compile+{half}', precision=half, channels_last=True, compiled=True),
            Variant('cuda_graph', channels_last=True, cuda_graph=True),
            Variant(f'cuda_graph+{half}', precision=half, channels_last=True, cuda_graph=True),
        ]
        if half != 'fp16':
            candidates.append(Variant('autocast_fp16', precision='fp16'))
    if 'all' in wanted:
        return candidates
    return [v for v in candidates if v.name in wanted or v.name.split('_')[0] in wanted]


def load_subjects(names: list[str], checkpoint: Path | None) -> list[Subject]:
    """Build the models to time: 'tiny' (the checkpoint's when given) and 'paper' (random)."""
    subjects = []
    for name in names:
        if name == 'tiny' and checkpoint is not None:
            loaded = load_checkpoint(checkpoint, kind='convitac')
            subjects.append(Subject('tiny', loaded.model, loaded.heads, loaded.preprocess,
                                    f'checkpoint {checkpoint}'))
            continue
        presets = {'tiny': ModelConfig.tiny, 'paper': ModelConfig.paper}
        if name not in presets:
            raise ValueError(f'unknown config {name!r}; choose from {sorted(presets)}')
        config = presets[name]()
        heads = {head: [f'class_{i}' for i in range(size)] for head, size in config.heads}
        subjects.append(Subject(name, ConViTac(config), heads, default_preprocess(config),
                                f'ModelConfig.{name}(), random weights'))
    return subjects


def model_inputs(config: ModelConfig, batch: int, device: torch.device, channels_last: bool
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Random normalised `(B, T_v, 3, S, S)` and `(B, S*T_t, 3, S, S)` inputs.

    Channels-last inputs are permuted views of `(..., S, S, 3)` storage, which is exactly the
    layout the Predictor's HWC staging buffer produces.
    """
    size = config.image_size
    frames = config.visual_len + config.num_tactile * config.tactile_len
    if channels_last:
        pixels = torch.randn(batch, frames, size, size, 3, device=device).movedim(-1, -3)
    else:
        pixels = torch.randn(batch, frames, 3, size, size, device=device)
    return pixels[:, :config.visual_len], pixels[:, config.visual_len:]


def build_forward(model: ConViTac, variant: Variant, device: torch.device, batch: int
                  ) -> Forward:
    """A zero-argument callable running one forward pass of `variant` at batch size `batch`."""
    network: Callable[..., Any] = model
    if variant.compiled:
        network = torch.compile(model, dynamic=False)
    visual, tactile = model_inputs(model.config, batch, device, variant.channels_last)

    def forward() -> Any:
        threads = torch.get_num_threads()
        if variant.threads:
            torch.set_num_threads(variant.threads)
        try:
            with torch.inference_mode(), autocast_context(device, variant.precision,
                                                          not variant.cuda_graph):
                return network(visual, tactile)
        finally:
            torch.set_num_threads(threads)

    if not variant.cuda_graph:
        return forward
    graph, _ = capture_cuda_graph(forward, device)  # the Predictor's own capture
    return graph.replay


def build_forwards(model: ConViTac, variants: list[Variant], device: torch.device, batch: int,
                   errors: dict[str, str]) -> dict[str, Forward]:
    """The forward callables of every variant at one batch size (failures go to `errors`).

    Variants in channels-last layout run on their own copy of the model, so that the others
    keep contiguous weights. CUDA graphs are captured, and compiled variants compiled, for
    batch 1 only (one compilation of the paper config took minutes on an H100).
    """
    copies: dict[bool, ConViTac] = {}
    forwards = {}
    for variant in variants:
        if variant.name in errors or ((variant.cuda_graph or variant.compiled) and batch != 1):
            continue
        if variant.channels_last not in copies:
            copy = model if not variant.channels_last else copy_module(model)
            layout = torch.channels_last if variant.channels_last else torch.contiguous_format
            copies[variant.channels_last] = copy.to(device, memory_format=layout)
        try:
            forward = build_forward(copies[variant.channels_last], variant, device, batch)
            forward()  # compilation and capture happen here: a failure is a result
            forwards[variant.name] = forward
        except Exception as exc:  # noqa: BLE001 - a failed speed-up is reported, not fatal
            errors[variant.name] = f'{type(exc).__name__}: {str(exc).splitlines()[0][:120]}'
    return forwards


def copy_module(model: ConViTac) -> ConViTac:
    """An independent copy of a model (same weights)."""
    clone = ConViTac(model.config)
    clone.load_state_dict(model.state_dict())
    return clone.eval()


def measure_device(model: ConViTac, variants: list[Variant], device: torch.device,
                   batch_sizes: list[int], options: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Batch-1 latency and per-batch throughput of every variant, timed interleaved.

    Returns:
        variant name -> {'latency': stats, 'throughput': {batch: samples/s}, 'error'?}.
    """
    results: dict[str, dict[str, Any]] = {v.name: {'throughput': {}} for v in variants}
    errors: dict[str, str] = {}
    sync = device_sync(device)
    for batch in [1, *batch_sizes]:
        forwards = build_forwards(model, variants, device, batch, errors)
        durations = time_interleaved(forwards, options['runs'], options['warmup'],
                                     options['budget_s'], sync)
        for name, samples in durations.items():
            stats = summarize(samples)
            if batch == 1:
                results[name]['latency'] = stats
            else:
                results[name]['throughput'][str(batch)] = batch / (stats['p50_ms'] / 1e3)
    for name, error in errors.items():
        results[name]['error'] = error
    torch._dynamo.reset()
    model.eval().to('cpu', memory_format=torch.contiguous_format)
    return results


def run_model(subjects: list[Subject], devices: list[torch.device], wanted: list[str],
              batch_sizes: list[int], options: dict[str, Any]) -> Report:
    """Part `model`: forward latency and throughput per config, device and variant."""
    report = Report('model', settings={**options, 'batch_sizes': batch_sizes,
                                       'variants': wanted})
    columns = ['config', 'device', 'variant', 'b1 p50 ms', 'b1 p95 ms', 'speed-up vs eager']
    table = Table('Model forward (normalised tensors on the device, no preprocessing)',
                  columns + [f'b{b} samples/s' for b in batch_sizes])
    rows = report.results.setdefault('rows', [])
    for subject in subjects:
        params = sum(p.numel() for p in subject.model.parameters()) / 1e6
        table.notes.append(f'{subject.name}: {params:.2f} M parameters, '
                           f'{subject.model.config.image_size} px, {subject.source}')
        for device in devices:
            variants = variants_for(device, wanted)
            results = measure_device(subject.model, variants, device, batch_sizes, options)
            eager = results.get('eager', {}).get('latency', {}).get('p50_ms')
            for variant in variants:
                result = {'config': subject.name, 'device': str(device),
                          'variant': variant.name, **results[variant.name]}
                rows.append(result)
                if 'latency' not in result:
                    table.add(subject.name, str(device), variant.name, None, None,
                              result.get('error', '-')[:70], *[None] * len(batch_sizes))
                    continue
                p50 = result['latency']['p50_ms']
                table.add(subject.name, str(device), variant.name, p50,
                          result['latency']['p95_ms'], f'{eager / p50:.2f}x' if eager else None,
                          *[result['throughput'].get(str(b)) for b in batch_sizes])
        _free_memory()
    table.notes.append('speed-up > 1x means faster than eager fp32 on the same device; '
                       'throughput = batch / p50 of the batched forward; variants are timed '
                       'in interleaved rounds so that load changes affect them alike.')
    report.tables.append(table)
    return report


def _free_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def camera_frames(count: int, height: int, width: int, seed: int = 0) -> list[np.ndarray]:
    """Random uint8 RGB frames `(H, W, 3)` (content does not change the timing)."""
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for _ in range(count)]


def predictor_pieces(predictor: Predictor | OnnxPredictor, visual: list[np.ndarray],
                     tactile: list[list[np.ndarray]]) -> dict[str, Forward]:
    """Callables for the Predictor's path and its pieces alone, on the same inputs.

    The preprocessing piece is the Predictor's own (`Predictor.preprocess_batch`: staging, the
    copy to the device and the resize and normalisation wherever the Predictor runs them).
    """
    if predictor.backend == 'onnxruntime':
        return _onnx_pieces(predictor, visual, tactile)
    device = predictor.device

    def preprocess() -> tuple[torch.Tensor, torch.Tensor]:
        pixels = predictor.preprocess_batch([(visual, tactile)])
        if device.type == 'cuda':
            torch.cuda.synchronize(device)
        return pixels

    inputs = preprocess()

    def forward() -> Any:
        with torch.inference_mode(), autocast_context(device, predictor.precision):
            return predictor.model(*inputs)

    return {'predict': lambda: predictor.predict(visual, tactile), 'forward': forward,
            'preprocess': preprocess}


def _onnx_pieces(predictor: OnnxPredictor, visual: list[np.ndarray],
                 tactile: list[list[np.ndarray]]) -> dict[str, Forward]:
    """The pieces of an onnxruntime predictor: its staging, and its session on staged frames."""
    stager, session = predictor._stager, predictor._session  # noqa: SLF001 - predict()'s own
    staged = stager.resized([(visual, tactile)]).copy()
    names = list(predictor.heads)
    return {'predict': lambda: predictor.predict(visual, tactile),
            'forward': lambda: session.run(names, {INPUT_NAME: staged}),
            'preprocess': lambda: stager.resized([(visual, tactile)])}


def run_predictor(subjects: list[Subject], devices: list[torch.device],
                  settings: list[dict[str, Any]], frame_sizes: dict[str, tuple[int, int]],
                  options: dict[str, Any]) -> Report:
    """Part `predictor`: `Predictor.predict` against the forward and preprocessing alone."""
    report = Report('predictor', settings={**options, 'frame_sizes': frame_sizes})
    table = Table('Predictor: raw uint8 frames -> probabilities, batch 1',
                  ['config', 'device', 'options', 'predict p50 ms', 'predict p95 ms',
                   'forward p50 ms', 'preprocess p50 ms', 'predict / forward'])
    (cam_h, cam_w), (tac_h, tac_w) = frame_sizes['camera'], frame_sizes['tactile']
    for subject in subjects:
        preprocess = subject.preprocess
        visual = camera_frames(preprocess['visual_len'], cam_h, cam_w)
        tactile = [camera_frames(preprocess['tactile_len'], tac_h, tac_w, seed=1 + sensor)
                   for sensor in range(preprocess['num_tactile'])]
        for device in devices:
            for setting in settings:
                if setting.get('cuda_graph') and device.type != 'cuda':
                    continue
                label = ', '.join(f'{k}={v}' for k, v in setting.items()) or 'defaults'
                row = _measure_predictor(subject, device, setting, visual, tactile, options)
                row.update(config=subject.name, device=str(device), options=label)
                report.results.setdefault('rows', []).append(row)
                stats = row['stats']
                ratio = stats['predict']['p50_ms'] / stats['forward']['p50_ms']
                row['overhead_ratio'] = ratio
                table.add(subject.name, str(device), f"{label} ({row['precision']})",
                          stats['predict']['p50_ms'], stats['predict']['p95_ms'],
                          stats['forward']['p50_ms'], stats['preprocess']['p50_ms'],
                          f'{ratio:.2f}x')
        subject.model.to('cpu')
        _free_memory()
    table.notes.append(f'inputs: camera {cam_w}x{cam_h}, tactile {tac_w}x{tac_h} uint8 RGB; '
                       'forward = the eager model on ready tensors with the same precision; '
                       'preprocess = resize into the staging buffer, transfer, normalise.')
    report.tables.append(table)
    return report


def _measure_predictor(subject: Subject, device: torch.device, setting: dict[str, Any],
                       visual: list[np.ndarray], tactile: list[list[np.ndarray]],
                       options: dict[str, Any]) -> dict[str, Any]:
    predictor = Predictor(subject.model, subject.heads, subject.preprocess, device=device,
                          model_name=subject.name, **setting)
    predictor.warmup(iterations=options['warmup'])
    pieces = predictor_pieces(predictor, visual, tactile)
    durations = time_interleaved(pieces, options['runs'], options['warmup'],
                                 options['budget_s'], device_sync(device))
    stats = {name: summarize(samples) for name, samples in durations.items()}
    torch._dynamo.reset()
    return {'precision': predictor.precision, 'stats': stats}
