"""The onnxruntime backend: an exported `.onnx` model behind the Predictor's interface, no torch.

`convitac_export` writes the whole inference graph (normalisation, E^c, encoders, fusion, heads,
softmax) with one uint8 input and one probability output per head, and the checkpoint's metadata
in the file's `metadata_props`. `OnnxPredictor` reads that metadata, resizes frames into one
uint8 staging array with the frame stager the torch Predictor uses (`convitac_ros.staging`, the
training's OpenCV resize) and runs an `onnxruntime.InferenceSession` on the best execution
provider present (TensorRT, CUDA, CPU). Nothing here imports torch, so a robot can run the
node from `requirements-runtime.txt`.
"""

from __future__ import annotations

from collections.abc import Sequence
import json
import os
from pathlib import Path
import threading
from typing import Any

import numpy as np

from convitac_ros.calibration import temperatures_of
from convitac_ros.contract import check_outputs, model_contract
from convitac_ros.preprocess import TactileFrames, VisualFrames, warm_up
from convitac_ros.staging import FrameStager, InputSpec

BACKENDS = ('auto', 'torch', 'onnxruntime')
ONNX_FORMAT = 'convitac-onnx/1'
INPUT_NAME = 'frames'
# JSON-valued metadata_props keys: the checkpoint's own entries, then what the export adds.
JSON_KEYS = ('model_config', 'heads', 'preprocess', 'training', 'source', 'export')
# Execution providers in order of preference; the first one present runs the model.
PROVIDERS = {'cpu': ('CPUExecutionProvider',),
             'cuda': ('TensorrtExecutionProvider', 'CUDAExecutionProvider',
                      'CPUExecutionProvider')}


class DeviceError(ValueError):
    """The requested inference device does not exist here (the text names it; both runtimes)."""


class OnnxModelError(ValueError):
    """An `.onnx` file that is not a convitac export; the message names the file."""


def resolve_backend(backend: str, path: str | os.PathLike) -> str:
    """Map 'auto' to 'onnxruntime' for an `.onnx` file and 'torch' otherwise, and check the pair.

    Raises:
        ValueError: an unknown backend, or one that cannot run this file (torch needs a
            `.safetensors` checkpoint, onnxruntime an `.onnx` export).
    """
    if backend not in BACKENDS:
        raise ValueError(f'backend must be one of {BACKENDS}, got {backend!r}')
    is_onnx = Path(path).suffix.lower() == '.onnx'
    if backend == 'auto':
        return 'onnxruntime' if is_onnx else 'torch'
    if (backend == 'onnxruntime') != is_onnx:
        raise ValueError(
            f'backend {backend!r} cannot run {Path(path).name}: the torch backend takes a '
            '.safetensors checkpoint, the onnxruntime backend an .onnx file (convitac_export)')
    return backend


def resolve_providers(device: str, available: Sequence[str]) -> list[str]:
    """Pick the execution providers for a device from those onnxruntime offers.

    Args:
        device: 'auto' (CUDA providers when present, else CPU), 'cpu', 'cuda' or 'cuda:N'.
        available: `onnxruntime.get_available_providers()`.

    Returns:
        Provider names, most preferred first, always ending with the CPU provider.

    Raises:
        DeviceError: an unknown device, or 'cuda' asked for where onnxruntime has no CUDA or
            TensorRT provider.
    """
    kind = device.split(':')[0]
    if kind not in ('auto', 'cpu', 'cuda'):
        raise DeviceError(f'device must be auto, cpu, cuda or cuda:N, got {device!r}')
    preferred = PROVIDERS['cpu' if kind == 'cpu' else 'cuda']
    chosen = [name for name in preferred if name in available]
    if kind == 'cuda' and chosen == ['CPUExecutionProvider']:
        raise DeviceError(f'device {device!r}: this onnxruntime has no CUDA or TensorRT '
                          f'execution provider (it has {list(available)}); install '
                          f'onnxruntime-gpu or use device cpu')
    return chosen


class OnnxPredictor:
    """Runs an exported ConViTac model with onnxruntime; the torch `Predictor`'s interface.

    Thread-safe (one call at a time). Attributes: `heads` (head -> class names), `visual_len`,
    `tactile_len`, `num_tactile`, `image_size`, `device` ('cpu' or 'cuda[:N]'), `precision`
    (the exported weights' 'fp32' or 'fp16'), `temperatures` (head -> the temperature the graph
    divides its logits by), `model_name`, `backend` ('onnxruntime'),
    `providers` (the session's execution providers), `metadata` (the file's convitac metadata).
    """

    backend = 'onnxruntime'

    def __init__(self, path: str | os.PathLike, *, device: str = 'auto',
                 precision: str = 'auto', threads: int = 0, calibrated: bool = True) -> None:
        """Load an exported model.

        Args:
            path: the `.onnx` file written by `convitac_export`.
            device: 'auto', 'cpu', 'cuda' or 'cuda:N' (see `resolve_providers`).
            precision: 'auto', or the precision the file was exported in ('fp32' or 'fp16');
                the weights' precision is fixed at export.
            threads: onnxruntime intra-op threads; 0 keeps its default (one per core).
            calibrated: whether the probabilities must carry the checkpoint's temperatures
                (`convitac_ros.calibration`); they are applied in the graph at export, so a
                file exported the other way is refused unless its temperatures are all 1.

        Raises:
            FileNotFoundError: no such file.
            OnnxModelError: not a convitac export.
            ValueError: a device this onnxruntime cannot serve, or another precision.
        """
        import onnxruntime

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f'model not found: {path}')
        providers = resolve_providers(str(device), onnxruntime.get_available_providers())
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = int(threads)
        # One call at a time: a second pool of inter-op threads only costs CPU. Idle intra-op
        # threads sleep instead of spinning, which would take the CPU from the rest of the node
        # (and, on a robot, from everything else) between predictions.
        options.inter_op_num_threads = 1
        options.add_session_config_entry('session.intra_op.allow_spinning', '0')
        options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
        device_id = int(device.split(':')[1]) if ':' in str(device) else 0
        provider_options = [{'device_id': device_id} if name != 'CPUExecutionProvider' else {}
                            for name in providers]
        self._session = _session(path, options, providers, provider_options)
        self.metadata = _decode_metadata(self._session.get_modelmeta().custom_metadata_map,
                                         path)
        self.providers = self._session.get_providers()
        self.device = 'cpu' if self.providers[0] == 'CPUExecutionProvider' else (
            f'cuda:{device_id}')
        self.contract = model_contract(self.metadata['heads'], self.metadata['preprocess'],
                                       str(path))
        self.precision = _exported_precision(self.metadata['export'], path)
        if precision not in ('auto', self.precision):
            raise ValueError(f'{path.name} was exported in {self.precision}; precision '
                             f'{precision!r} needs another export (convitac_export --fp16 for '
                             f'fp16) or precision auto')
        self.heads = self.contract.heads
        self.temperatures = _temperatures(self.metadata, self.heads, path, calibrated)
        self.spec = InputSpec.from_record(self.metadata['preprocess'])
        self.visual_len, self.tactile_len = self.spec.visual_len, self.spec.tactile_len
        self.num_tactile, self.image_size = self.spec.num_tactile, self.spec.image_size
        self.resize_on_device = False  # the graph takes frames resized to S (on the host)
        self.model_name = path.stem
        self._check_signature(path)
        self._stager = FrameStager(self.spec)
        self._lock = threading.Lock()
        # interrupt() sets terminate on it: a graph that never ends (a Loop of 1e12 steps)
        # returns with an error instead of holding configure and the node.
        self._run_options = onnxruntime.RunOptions()

    def predict(self, visual_frames: VisualFrames, tactile_frames: TactileFrames
                ) -> dict[str, np.ndarray]:
        """Classify one sample: the arguments, result and errors of `Predictor.predict`."""
        return self.predict_batch([(visual_frames, tactile_frames)])[0]

    def predict_batch(self, samples: Sequence[tuple[VisualFrames, TactileFrames]]
                      ) -> list[dict[str, np.ndarray]]:
        """Classify many samples in one run of the graph (as `Predictor.predict_batch`)."""
        if not samples:
            return []
        with self._lock:
            staging = self._stager.resized(samples)
            outputs = self._session.run(list(self.heads), {INPUT_NAME: staging},
                                        self._run_options)
        outputs = check_outputs(outputs, self.heads, len(samples))
        return [{name: output[row] for name, output in zip(self.heads, outputs)}
                for row in range(len(samples))]

    def interrupt(self) -> None:
        """End the run in progress (and refuse later ones) from another thread.

        For a configure that ran out of time or a stop signal during a warm-up; the predictor
        is not used afterwards.
        """
        self._run_options.terminate = True

    def predict_with_attention(self, visual_frames: VisualFrames, tactile_frames: TactileFrames
                               ) -> tuple[dict[str, np.ndarray], None]:
        """Classify one sample; the exported graph has no attention output, so maps are None."""
        return self.predict(visual_frames, tactile_frames), None

    def warmup(self, iterations: int = 3, batch_size: int = 1) -> None:
        """Run dummy predictions so that the first real one is not slow (TensorRT builds here)."""
        warm_up(self, iterations, batch_size)

    def _check_signature(self, path: Path) -> None:
        inputs = self._session.get_inputs()
        expected = list(self.spec.staging_shape(1)[1:])
        if (len(inputs) != 1 or inputs[0].name != INPUT_NAME
                or inputs[0].type != 'tensor(uint8)' or list(inputs[0].shape[1:]) != expected):
            found = [(i.name, i.type, i.shape) for i in inputs]
            raise OnnxModelError(f'{path}: expected one uint8 input {INPUT_NAME!r} of shape '
                                 f'(N, {", ".join(map(str, expected))}), found {found}')
        outputs = {output.name: output.shape for output in self._session.get_outputs()}
        for name, classes in self.heads.items():
            if name not in outputs or outputs[name][1:] != [len(classes)]:
                raise OnnxModelError(f'{path}: no output {name!r} of shape (N, {len(classes)}) '
                                     f'for its head (outputs {outputs})')


def _session(path: Path, options: Any, providers: Sequence[str],
             provider_options: Sequence[dict] | None = None) -> Any:
    import onnxruntime

    try:
        return onnxruntime.InferenceSession(str(path), options, providers=list(providers),
                                            provider_options=provider_options)
    except (onnxruntime.capi.onnxruntime_pybind11_state.Fail,
            onnxruntime.capi.onnxruntime_pybind11_state.InvalidProtobuf,
            onnxruntime.capi.onnxruntime_pybind11_state.InvalidGraph) as error:
        raise OnnxModelError(f'{path}: not a loadable ONNX model: {error}') from error


def _temperatures(metadata: dict[str, Any], heads: dict[str, list[str]], path: Path,
                  calibrated: bool) -> dict[str, float]:
    """The temperatures the graph applies, checked against what the caller wants.

    Raises:
        OnnxModelError: The file applies other temperatures than wanted (calibrated: the
            checkpoint's; uncalibrated: none), or records invalid ones.
    """
    try:
        recorded = temperatures_of(metadata['training'], heads, str(path))
        export = metadata['export'] if isinstance(metadata['export'], dict) else {}
        applied = export.get('temperatures') or {}
        applied = temperatures_of({'calibration': {'temperatures': applied}}, heads, str(path))
    except ValueError as error:
        raise OnnxModelError(str(error)) from None
    wanted = recorded if calibrated else dict.fromkeys(heads, 1.0)
    if any(abs(applied[head] - wanted[head]) > 1e-6 for head in heads):
        how = ('convitac_export --no-calibration' if not calibrated else 'convitac_export')
        raise OnnxModelError(f'{path}: the graph applies temperatures {applied}, '
                             f'{"calibrated" if calibrated else "uncalibrated"} output needs '
                             f'{wanted}; export again with {how}')
    return applied


def _exported_precision(export: Any, path: Path) -> str:
    precision = export.get('precision') if isinstance(export, dict) else None
    if precision not in ('fp32', 'fp16'):
        raise OnnxModelError(f'{path}: metadata export.precision must be fp32 or fp16, got '
                             f'{str(precision)[:50]}')
    return precision


def _decode_metadata(raw: dict[str, str], path: Path) -> dict[str, Any]:
    if raw.get('format') != ONNX_FORMAT:
        raise OnnxModelError(f'{path}: not a convitac export (metadata format '
                             f'{raw.get("format")!r}, expected {ONNX_FORMAT!r}); export '
                             f'checkpoints with convitac_export')
    missing = [key for key in JSON_KEYS if key not in raw]
    if missing:
        raise OnnxModelError(f'{path}: metadata lacks {missing}')
    try:
        decoded = {key: json.loads(raw[key]) for key in JSON_KEYS}
    except json.JSONDecodeError as error:
        raise OnnxModelError(f'{path}: metadata is not valid JSON: {error}') from error
    return {**raw, **decoded}
