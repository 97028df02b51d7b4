"""Predictor: uint8 RGB numpy frames in, per-head class probabilities out.

The fast path: frames are resized on uint8 straight into one (pinned, on CUDA) staging buffer,
transferred once with a non-blocking copy, normalised on the device (the same
`normalize_frames` that training validation uses), run under `torch.inference_mode` with
optional bf16/fp16 autocast (channels-last layout comes for free from the HWC staging buffer),
and all heads' probabilities come back to the CPU in one copy. On CUDA, single predictions
replay a captured CUDA graph by default; `torch.compile` is optional (off by default). An `.onnx`
file runs on `OnnxPredictor` instead, with the same interface (`convitac_ros.predictor`
opens either).
"""

from __future__ import annotations

from collections.abc import Sequence
import contextlib
import dataclasses
import os
from pathlib import Path
import threading
from typing import Any

import cv2
import numpy as np
import torch

from convitac_ros.calibration import temperatures_of
from convitac_ros.checkpoint import CheckpointError, load_checkpoint, read_metadata
from convitac_ros.contract import check_outputs, model_contract, OutputError
from convitac_ros.model import ConViTac
from convitac_ros.preprocess import (
    normalize_frames,
    resize_frames,
    sample_frames,
    TactileFrames,
    VisualFrames,
    warm_up,
)
from convitac_ros.runtime_onnx import DeviceError, resolve_backend

PRECISIONS = ('auto', 'fp32', 'bf16', 'fp16')
_DTYPES = {'bf16': torch.bfloat16, 'fp16': torch.float16}


@dataclasses.dataclass
class AttentionFrames:
    """Per-frame attention maps at each input frame's own size, float32 in [0, 1].

    Attributes:
        visual: T_v maps `(H, W)` (empty without a visual stream).
        tactile: S lists of T_t maps `(H, W)` (empty without tactile streams).
    """

    visual: list[np.ndarray]
    tactile: list[list[np.ndarray]]


# The one output check of both runtimes raises it (`convitac_ros.contract.check_outputs`).
NonFiniteOutputError = OutputError
__all__ = ['AttentionFrames', 'DeviceError', 'NonFiniteOutputError', 'Predictor',
           'resolve_device', 'resolve_precision']


def resolve_device(device: str | torch.device) -> torch.device:
    """Map 'auto' to CUDA when available, else CPU; check that a named device exists.

    Raises:
        DeviceError: An unknown device name, CUDA asked for where torch sees none, or a CUDA
            index beyond the devices present.
    """
    if str(device) == 'auto':
        return torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise DeviceError(f'device {str(device)[:100]!r} is not a torch device: {error}') from None
    if resolved.type == 'cuda':
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise DeviceError(f'device {str(device)!r} asked for, but CUDA is not available here '
                              f'(torch {torch.__version__}); use device auto or cpu')
        if resolved.index is not None and resolved.index >= count:
            raise DeviceError(f'device {str(device)!r} asked for, but only {count} CUDA '
                              'device(s) exist')
    return resolved


def resolve_precision(precision: str) -> str:
    """Map 'auto' to fp32 on every device.

    Measured on one H100 (`docs/benchmarks/predictor-gpu.md`): at batch 1, bf16 autocast is
    slower than fp32 (paper config 21.8 vs 18.0 ms p50; the casts cost more launches than the
    narrower math saves), so autocast is opt-in.
    """
    if precision not in PRECISIONS:
        raise ValueError(f'precision must be one of {PRECISIONS}, got {precision!r}')
    return 'fp32' if precision == 'auto' else precision


class Predictor:
    """Runs a ConViTac model on raw camera and tactile frames.

    Thread-safe (one call at a time). Attributes: `heads` (head -> class names), `temperatures`
    (head -> the temperature its logits are divided by), `visual_len`, `tactile_len`,
    `num_tactile`, `image_size`, `device`, `precision`, `model_name`, `backend` ('torch'). On
    CUDA the defaults follow the H100 measurements: fp32 and CUDA-graph replay for single
    predictions.
    """

    backend = 'torch'

    def __init__(self, model: ConViTac, heads: dict[str, list[str]], preprocess: dict[str, Any],
                 *, device: str | torch.device = 'auto', precision: str = 'auto',
                 compile: bool = False, cuda_graph: bool | None = None,  # noqa: A002
                 model_name: str = 'convitac',
                 temperatures: dict[str, float] | None = None) -> None:
        self.device = resolve_device(device)
        self.precision = resolve_precision(precision)
        if cuda_graph and self.device.type != 'cuda':
            raise ValueError('cuda_graph=True needs a CUDA device')
        if cuda_graph is None:
            # On by default on CUDA: graph replay was 2.4x faster than eager launches for the
            # paper config at batch 1 on an H100 (9.1 vs 21.8 ms, predictor-gpu.md).
            cuda_graph = self.device.type == 'cuda'
        self.config = model.config
        self.contract = model_contract(heads, preprocess, model_name)
        self.heads = self.contract.heads
        # Each head's logits are divided by its temperature before the softmax
        # (convitac_ros.calibration); 1 where none was fitted or calibration is off.
        self.temperatures = {name: float((temperatures or {}).get(name, 1.0))
                             for name in self.heads}
        self.visual_len = int(preprocess['visual_len'])
        self.tactile_len = int(preprocess['tactile_len'])
        self.num_tactile = int(preprocess['num_tactile'])
        self.image_size = int(preprocess['image_size'])
        self.model_name = model_name
        self._frames_per_sample = self.visual_len + self.num_tactile * self.tactile_len
        self._mean = torch.tensor(preprocess['mean'], dtype=torch.float32, device=self.device)
        self._std = torch.tensor(preprocess['std'], dtype=torch.float32, device=self.device)
        # Column ranges of each head in the concatenated probabilities.
        bounds = np.cumsum([0, *(len(classes) for classes in self.heads.values())])
        self._head_columns = list(zip(self.heads, bounds[:-1], bounds[1:]))
        self._model = model.to(self.device).eval()
        if self.device.type == 'cuda':
            self._model = self._model.to(memory_format=torch.channels_last)
        self._forward_model = torch.compile(self._model, dynamic=False) if compile else self._model
        self._use_cuda_graph = cuda_graph
        self._graph: tuple[torch.cuda.CUDAGraph, torch.Tensor, torch.Tensor] | None = None
        self._staging: dict[int, torch.Tensor] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, device: str | torch.device = 'auto',
                        precision: str = 'auto', compile: bool = False,  # noqa: A002
                        cuda_graph: bool | None = None, backend: str = 'auto',
                        calibrated: bool = True) -> Predictor:
        """Load a 'convitac' `.safetensors` checkpoint (see `convitac_ros.checkpoint`).

        The declared contract is checked from the file's header before any tensor is read.
        An `.onnx` export runs on onnxruntime: `convitac_ros.predictor.open_predictor` opens
        either kind of file.

        Args:
            path: the checkpoint.
            device: 'auto', 'cpu', 'cuda' or 'cuda:N'.
            precision: 'auto', 'fp32', 'bf16' or 'fp16'.
            compile: torch.compile the model.
            cuda_graph: replay a CUDA graph for single predictions; None: on CUDA devices.
            backend: 'auto' or 'torch' ('onnxruntime' is refused, as is an `.onnx` file).
            calibrated: apply the temperatures the checkpoint carries (`convitac_ros.calibration`;
                1 for checkpoints without them); False: the uncalibrated softmax.
        """
        if resolve_backend(backend, path) != 'torch':
            raise ValueError(f'{Path(path).name} is an .onnx export: it runs on onnxruntime '
                             '(convitac_ros.predictor.open_predictor opens either kind)')
        metadata = read_metadata(path)
        if metadata['kind'] == 'convitac':  # any other kind is refused by load_checkpoint
            model_contract(metadata['heads'], metadata['preprocess'], str(path))
            try:
                temperatures = temperatures_of(metadata['training'], metadata['heads'],
                                               str(path))
            except ValueError as error:
                raise CheckpointError(str(error)) from None
        loaded = load_checkpoint(path, kind='convitac')
        return cls(loaded.model, loaded.heads, loaded.preprocess, device=device,
                   precision=precision, compile=compile, cuda_graph=cuda_graph,
                   model_name=Path(path).stem, temperatures=temperatures if calibrated else None)

    @property
    def model(self) -> ConViTac:
        """The underlying (eager) model."""
        return self._model

    def predict(self, visual_frames: VisualFrames, tactile_frames: TactileFrames
                ) -> dict[str, np.ndarray]:
        """Classify one sample.

        Args:
            visual_frames: T_v uint8 `(H, W, 3)` RGB camera frames, oldest first (any size).
            tactile_frames: S lists (one per sensor) of T_t uint8 `(H, W, 3)` RGB frames.

        Returns:
            {head: probabilities `(C,)` float32} in the order of `heads[head]`.

        Raises:
            ValueError: wrong number of frames or sensors, or a frame that is not uint8 RGB.
        """
        with self._lock, torch.inference_mode():
            staging = self._stage([(visual_frames, tactile_frames)])
            if self._use_cuda_graph:
                probabilities = self._replay_graph(staging)
            else:
                probabilities = self._probabilities(self._to_device(staging))
            return self._split(probabilities.cpu())[0]

    def predict_batch(self, samples: Sequence[tuple[VisualFrames, TactileFrames]]
                      ) -> list[dict[str, np.ndarray]]:
        """Classify many samples in one forward pass.

        Args:
            samples: (visual_frames, tactile_frames) pairs as for `predict`.

        Returns:
            One {head: probabilities `(C,)`} dict per sample.
        """
        if not samples:
            return []
        with self._lock, torch.inference_mode():
            staging = self._stage(samples)
            return self._split(self._probabilities(self._to_device(staging)).cpu())

    def predict_with_attention(self, visual_frames: VisualFrames, tactile_frames: TactileFrames
                               ) -> tuple[dict[str, np.ndarray], AttentionFrames | None]:
        """Classify one sample and return CEC attention maps for a debug image.

        The maps show how much attention the fused queries pay to each region of each frame
        (None when the model's fusion has no token attention: concat, add, pooled condition).
        """
        with self._lock, torch.inference_mode():
            staging = self._stage([(visual_frames, tactile_frames)])
            pixels = self._normalized(self._to_device(staging))
            with self._autocast():
                logits, maps = self._model.forward_with_attention(*pixels)
            probabilities = self._split(self._softmax(logits).cpu())[0]
        if maps is None:
            return probabilities, None
        return probabilities, AttentionFrames(
            visual=_upsample(maps.visual, visual_frames)[0] if maps.visual is not None else [],
            tactile=_upsample(maps.tactile, tactile_frames) if maps.tactile is not None else [])

    def warmup(self, iterations: int = 3, batch_size: int = 1) -> None:
        """Run dummy predictions so that the first real one is not slow.

        Covers allocations, kernel selection, compilation and CUDA-graph capture.
        """
        warm_up(self, iterations, batch_size)

    def _stage(self, samples: Sequence[tuple[VisualFrames, TactileFrames]]) -> torch.Tensor:
        """Resize every frame into the uint8 staging buffer `(N, T_v + S*T_t, S, S, 3)`."""
        frames = []
        for index, (visual, tactile) in enumerate(samples):
            frames.extend(sample_frames(visual, tactile, self.visual_len, self.tactile_len,
                                        self.num_tactile, index))
        size = self.image_size
        staging = self._staging.get(len(samples))
        if staging is None:
            staging = torch.empty((len(samples), self._frames_per_sample, size, size, 3),
                                  dtype=torch.uint8, pin_memory=self.device.type == 'cuda')
            self._staging[len(samples)] = staging
        resize_frames(frames, size, out=staging.numpy().reshape(-1, size, size, 3))
        return staging

    def _to_device(self, staging: torch.Tensor) -> torch.Tensor:
        return staging.to(self.device, non_blocking=True)

    def _normalized(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`(N, T_v + S*T_t, S, S, 3)` uint8 -> visual and tactile float tensors."""
        frames = normalize_frames(pixels, self._mean, self._std)  # (N, T, 3, S, S)
        return frames[:, :self.visual_len], frames[:, self.visual_len:]

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.precision == 'fp32':
            return contextlib.nullcontext()
        # The autocast weight-cast cache would be freed after a CUDA-graph capture while the
        # graph still points at it, so it is off whenever a graph may be captured.
        return torch.autocast(self.device.type, dtype=_DTYPES[self.precision],
                              cache_enabled=not self._use_cuda_graph)

    def _softmax(self, logits: dict[str, torch.Tensor]) -> torch.Tensor:
        """{head: `(N, C)`} -> all heads' probabilities side by side `(N, sum C)`, float32.

        Each head's logits are divided by its temperature first.
        """
        return torch.cat([(logits[name].float() / self.temperatures[name]).softmax(dim=-1)
                          for name in self.heads], dim=1)

    def _probabilities(self, pixels: torch.Tensor) -> torch.Tensor:
        visual, tactile = self._normalized(pixels)
        with self._autocast():
            return self._softmax(self._forward_model(visual, tactile))

    def _replay_graph(self, staging: torch.Tensor) -> torch.Tensor:
        """Run a batch-1 prediction by replaying a captured CUDA graph."""
        if self._graph is None:
            static_input = self._to_device(staging).clone()
            side = torch.cuda.Stream(self.device)
            side.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(side):
                for _ in range(3):
                    self._probabilities(static_input)
            torch.cuda.current_stream(self.device).wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                static_output = self._probabilities(static_input)
            self._graph = (graph, static_input, static_output)
        graph, static_input, static_output = self._graph
        static_input.copy_(staging, non_blocking=True)
        graph.replay()
        return static_output

    def _split(self, probabilities: torch.Tensor) -> list[dict[str, np.ndarray]]:
        """`(N, sum C)` CPU tensor -> one {head: `(C,)`} dict per sample.

        Raises:
            OutputError: NaN, inf, a value outside [0, 1] or a row not summing to 1
                (`convitac_ros.contract.check_outputs`): such a result must never be published
                or scored.
        """
        array = probabilities.numpy()
        outputs = check_outputs([array[:, start:end] for _, start, end in self._head_columns],
                                self.heads, len(array))
        return [{name: output[row].copy() for name, output in zip(self.heads, outputs)}
                for row in range(len(array))]


def _upsample(maps: torch.Tensor, frames: Sequence[Any]) -> list[list[np.ndarray]]:
    """Resize `(1, streams?, T, k, k)` grids to each frame's size (bilinear, clipped to [0, 1]).

    `frames` mirrors the grid layout: a list of T frames (visual) or S lists of T (tactile).
    """
    grids = maps[0].float().cpu().numpy()
    grids = grids.reshape(-1, *grids.shape[-3:])  # (streams, T, k, k)
    streams = [frames] if isinstance(frames[0], np.ndarray) else frames
    return [[np.clip(cv2.resize(grid, (frame.shape[1], frame.shape[0]),
                                interpolation=cv2.INTER_LINEAR), 0.0, 1.0)
             for grid, frame in zip(stream_grids, stream)]
            for stream_grids, stream in zip(grids, streams)]
