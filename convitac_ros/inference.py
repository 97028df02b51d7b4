"""Predictor: uint8 RGB numpy frames in, per-head class probabilities out.

The fast path on CUDA: frames go up once as uint8 at their received sizes (copied once into
reused pinned buffers, one per size group, by the shared `FrameStager`; non-blocking copies),
and the training preprocessing runs on the device (`DeviceResize`: OpenCV's INTER_AREA /
INTER_LINEAR as two matrix products, then `normalize_frames`), inside the captured CUDA graph:
one graph per distinct set of input sizes, captured at the first frame of those sizes, at most
`MAX_CUDA_GRAPHS` of them (beyond, predictions run eager and are counted in `graph_counts`).
On the CPU the frames are resized on the host by the training code itself (OpenCV is the
fastest there) into one staging buffer. Then `torch.inference_mode` with optional bf16/fp16
autocast, and all heads' probabilities come back in one copy. `torch.compile` is optional (off
by default). An `.onnx` file runs on `OnnxPredictor` instead, with the same interface
(`convitac_ros.predictor.open_predictor` opens either).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
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
from convitac_ros.device_preprocess import DeviceResize
from convitac_ros.model import ConViTac
from convitac_ros.preprocess import (
    normalize_frames,
    resize_frames,
    TactileFrames,
    VisualFrames,
    warm_up,
)
from convitac_ros.runtime_onnx import DeviceError, resolve_backend
from convitac_ros.staging import FrameStager, InputSpec, Sample, SizeGroup

PRECISIONS = ('auto', 'fp32', 'bf16', 'fp16')
_DTYPES = {'bf16': torch.bfloat16, 'fp16': torch.float16}
# Captured graphs kept: each holds its own input buffers and the memory of one batch-1 forward,
# so GPU memory is bounded by this many input-size sets (a camera and tactile sensors that keep
# their resolution need one).
MAX_CUDA_GRAPHS = 4


@dataclasses.dataclass
class _Staged:
    """One batch on the host, ready to go up.

    Attributes:
        key: what a captured graph is specialised to (the frames' received sizes).
        host: uint8 host buffers: `(N, F, S, S, 3)` resized frames, or one `(G, H, W, 3)` per
            size group.
        groups: the size groups (None: resized on the host).
        batch: N.
    """

    key: Any
    host: list[torch.Tensor]
    groups: list[SizeGroup] | None
    batch: int


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


def autocast_context(device: torch.device, precision: str, cache_enabled: bool = True
                     ) -> contextlib.AbstractContextManager:
    """The autocast context of a precision name: none for fp32, else bf16/fp16 autocast.

    Args:
        device: Where the model runs.
        precision: 'fp32', 'bf16' or 'fp16'.
        cache_enabled: The autocast weight-cast cache; off where a CUDA graph may be captured
            (the cache would be freed after the capture while the graph still points at it).
    """
    if precision == 'fp32':
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=_DTYPES[precision], cache_enabled=cache_enabled)


def capture_cuda_graph(run: Callable[[], Any], device: torch.device
                       ) -> tuple[torch.cuda.CUDAGraph, Any]:
    """Warms ``run`` up on a side stream (three calls), then captures one call in a CUDA graph.

    Returns:
        The graph (``graph.replay()`` runs it again on the same static tensors) and the output
        of the captured call, whose tensors each replay overwrites.
    """
    side = torch.cuda.Stream(device)
    side.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(side):
        for _ in range(3):
            run()
    torch.cuda.current_stream(device).wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        output = run()
    return graph, output


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
                 model_name: str = 'convitac', resize_on_device: bool | None = None,
                 temperatures: dict[str, float] | None = None) -> None:
        """Put a model on its device.

        Args:
            model: the network.
            heads: head -> class names.
            preprocess: the checkpoint's `preprocess` record (see `InputSpec`).
            device: 'auto', 'cpu', 'cuda' or 'cuda:N'.
            precision: 'auto', 'fp32', 'bf16' or 'fp16'.
            compile: torch.compile the model.
            cuda_graph: replay captured CUDA graphs for single predictions (None: on CUDA).
            model_name: reported name.
            resize_on_device: frames go to the device at their received sizes and are resized
                there (None: on CUDA; on the CPU OpenCV on the host is faster).
            temperatures: head -> the temperature its logits are divided by before the
                softmax (`convitac_ros.calibration`; default 1).
        """
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
        self.spec = InputSpec.from_record(preprocess)
        self.visual_len, self.tactile_len = self.spec.visual_len, self.spec.tactile_len
        self.num_tactile, self.image_size = self.spec.num_tactile, self.spec.image_size
        self.model_name = model_name
        if resize_on_device is None:
            resize_on_device = self.device.type == 'cuda'
        self.resize_on_device = resize_on_device
        self._device_resize = DeviceResize(self.spec, self.device)
        pinned = self.device.type == 'cuda'
        self._stager = FrameStager(self.spec, allocate=lambda shape: torch.empty(
            shape, dtype=torch.uint8, pin_memory=pinned))
        # Column ranges of each head in the concatenated probabilities.
        bounds = np.cumsum([0, *(len(classes) for classes in self.heads.values())])
        self._head_columns = list(zip(self.heads, bounds[:-1], bounds[1:]))
        self._model = model.to(self.device).eval()
        if self.device.type == 'cuda':
            self._model = self._model.to(memory_format=torch.channels_last)
        self._forward_model = torch.compile(self._model, dynamic=False) if compile else self._model
        self._use_cuda_graph = cuda_graph
        self._graphs: dict[Any, tuple[torch.cuda.CUDAGraph, list[torch.Tensor], torch.Tensor]] = {}
        self._graphs_paused = False
        # In /diagnostics: graphs captured, and predictions run eager for sizes beyond the cap.
        self.graph_counts = {'captured': 0, 'eager beyond cap': 0} if cuda_graph else {}
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
    def graph_sizes(self) -> list[Any]:
        """The input-size keys of the CUDA graphs captured so far (at most MAX_CUDA_GRAPHS)."""
        return list(self._graphs)

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
            staged = self._stage([(visual_frames, tactile_frames)])
            if self._use_cuda_graph and not self._graphs_paused:
                probabilities = self._replay_graph(staged)
            else:
                probabilities = self._probabilities(staged, self._to_device(staged))
            return self._split(probabilities.cpu())[0]

    def contrasted_embeddings(self, frames: Sequence[np.ndarray], modality: int
                              ) -> np.ndarray:
        """E^c's contrasted embeddings of single frames (drift monitoring, not the hot path).

        Args:
            frames: N uint8 ``(H, W, 3)`` RGB frames (any size).
            modality: 0 camera, 1 tactile.

        Returns:
            float32 ``(N, projection_dim)``.

        Raises:
            ValueError: The model has no contrastive encoder.
        """
        encoder = self._model.contrastive_encoder
        if encoder is None:
            raise ValueError('the model has no contrastive encoder')
        pixels = torch.from_numpy(resize_frames(frames, self.image_size)).to(self.device)
        with torch.inference_mode():
            images = normalize_frames(pixels, self._device_resize.mean,
                                      self._device_resize.std)  # (N, 3, S, S)
            kinds = torch.full((len(frames),), modality, device=self.device)
            return encoder.projection_embed(images, kinds).float().cpu().numpy()

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
            staged = self._stage(samples)
            return self._split(self._probabilities(staged, self._to_device(staged)).cpu())

    def preprocess_batch(self, samples: Sequence[Sample]) -> tuple[torch.Tensor, torch.Tensor]:
        """The model's inputs for samples, exactly as `predict_batch` makes them.

        Returns:
            Normalised float32 visual `(N, T_v, 3, S, S)` and tactile `(N, S_t*T_t, 3, S, S)`
            on the device.
        """
        with self._lock, torch.inference_mode():
            staged = self._stage(samples)
            pixels = self._normalized(staged, self._to_device(staged))
            if self.device.type == 'cuda':  # the next call may refill the pinned buffers
                torch.cuda.current_stream(self.device).synchronize()
            return pixels

    def predict_with_attention(self, visual_frames: VisualFrames, tactile_frames: TactileFrames
                               ) -> tuple[dict[str, np.ndarray], AttentionFrames | None]:
        """Classify one sample and return CEC attention maps for a debug image.

        The maps show how much attention the fused queries pay to each region of each frame
        (None when the model's fusion has no token attention: concat, add, pooled condition).
        """
        with self._lock, torch.inference_mode():
            staged = self._stage([(visual_frames, tactile_frames)])
            pixels = self._normalized(staged, self._to_device(staged))
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

        Covers allocations, kernel selection and compilation. With frames resized on the device
        it runs eager: a CUDA graph is captured at the first real frame of each size, and
        blank frames of the model's size would only take a graph's place.
        """
        self._graphs_paused = self.resize_on_device
        try:
            warm_up(self, iterations, batch_size)
        finally:
            self._graphs_paused = False

    def _stage(self, samples: Sequence[Sample]) -> _Staged:
        """Check the samples and stage their frames on the host (see `FrameStager`)."""
        if not self.resize_on_device:
            return _Staged('resized', [self._stager.resized(samples)], None, len(samples))
        key, groups = self._stager.received(samples)
        return _Staged(key, [group.buffer for group in groups], groups, len(samples))

    def _to_device(self, staged: _Staged) -> list[torch.Tensor]:
        return [buffer.to(self.device, non_blocking=True) for buffer in staged.host]

    def _normalized(self, staged: _Staged, inputs: list[torch.Tensor]
                    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Device uint8 inputs -> visual `(N, T_v, 3, S, S)` and tactile float tensors."""
        if staged.groups is None:  # (N, F, S, S, 3) resized on the host
            frames = normalize_frames(inputs[0], self._device_resize.mean,
                                      self._device_resize.std)
        else:
            count = self.spec.frames_per_sample
            frames = self._device_resize.staged(staged.groups, inputs, staged.batch * count)
            frames = frames.unflatten(0, (staged.batch, count))  # (N, F, 3, S, S)
        return frames[:, :self.visual_len], frames[:, self.visual_len:]

    def _autocast(self) -> contextlib.AbstractContextManager:
        return autocast_context(self.device, self.precision,
                                cache_enabled=not self._use_cuda_graph)

    def _softmax(self, logits: dict[str, torch.Tensor]) -> torch.Tensor:
        """{head: `(N, C)`} -> all heads' probabilities side by side `(N, sum C)`, float32.

        Each head's logits are divided by its temperature first.
        """
        return torch.cat([(logits[name].float() / self.temperatures[name]).softmax(dim=-1)
                          for name in self.heads], dim=1)

    def _probabilities(self, staged: _Staged, inputs: list[torch.Tensor]) -> torch.Tensor:
        visual, tactile = self._normalized(staged, inputs)
        with self._autocast():
            return self._softmax(self._forward_model(visual, tactile))

    def _replay_graph(self, staged: _Staged) -> torch.Tensor:
        """Run a batch-1 prediction by replaying the CUDA graph of its input sizes.

        A graph is captured at the first frame set of new sizes while fewer than
        `MAX_CUDA_GRAPHS` exist; beyond that the prediction runs eager (counted).
        """
        entry = self._graphs.get(staged.key)
        if entry is None:
            if len(self._graphs) >= MAX_CUDA_GRAPHS:
                self.graph_counts['eager beyond cap'] += 1
                return self._probabilities(staged, self._to_device(staged))
            entry = self._capture(staged)
            self._graphs[staged.key] = entry
            self.graph_counts['captured'] += 1
        graph, static_inputs, static_output = entry
        for static_input, buffer in zip(static_inputs, staged.host):
            static_input.copy_(buffer, non_blocking=True)
        graph.replay()
        return static_output

    def _capture(self, staged: _Staged
                 ) -> tuple[torch.cuda.CUDAGraph, list[torch.Tensor], torch.Tensor]:
        static_inputs = [tensor.clone() for tensor in self._to_device(staged)]
        graph, static_output = capture_cuda_graph(
            lambda: self._probabilities(staged, static_inputs), self.device)
        return graph, static_inputs, static_output

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
