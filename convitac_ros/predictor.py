"""The one choice of runtime for a model file: torch for a checkpoint, onnxruntime for an export.

`open_predictor` is the factory of the node and the evaluator: the one place that picks the
runtime (`Predictor.from_checkpoint` is the torch half, `OnnxPredictor` the other). Importing
this module imports neither torch nor onnxruntime, and opening an `.onnx` file never
imports torch (a robot runs it from `requirements-runtime.txt`, and a configure that fails on
an `.onnx` leaves the process small). Both predictors validate the file's declared contract
(`convitac_ros.contract`) before they allocate anything; here the input buffers of the largest
batch are checked against the limit before any warm-up.
"""

from __future__ import annotations

import os
from typing import Any

from convitac_ros.runtime_onnx import DeviceError, resolve_backend

__all__ = ['DeviceError', 'open_predictor']


def open_predictor(path: str | os.PathLike, *, backend: str = 'auto', device: str = 'auto',
                   precision: str = 'auto', threads: int = 0, compile: bool = False,  # noqa: A002
                   cuda_graph: bool | None = None, max_batch: int = 1,
                   calibrated: bool = True) -> Any:
    """Load a model file into the predictor of its runtime.

    Args:
        path: a 'convitac' checkpoint (`.safetensors`) or an `.onnx` export.
        backend: 'auto' (by the file's suffix), 'torch' or 'onnxruntime'.
        device: 'auto', 'cpu', 'cuda' or 'cuda:N'.
        precision: 'auto', 'fp32', 'bf16' or 'fp16' (onnxruntime: the exported one).
        threads: CPU threads (onnxruntime intra-op threads, or `torch.set_num_threads`);
            0 keeps the runtime's default.
        compile: torch.compile the model (torch only; onnxruntime ignores it, as the node's
            parameter says).
        cuda_graph: replay a CUDA graph for single predictions (torch only, likewise); None:
            on CUDA devices.
        max_batch: the largest batch that will be asked for; its input buffers must fit
            `convitac_ros.contract.MAX_INPUT_BYTES`.
        calibrated: probabilities with the checkpoint's temperatures
            (`convitac_ros.calibration`); False: the uncalibrated softmax (an `.onnx` file must
            have been exported that way).

    Returns:
        A `convitac_ros.inference.Predictor` or a `convitac_ros.runtime_onnx.OnnxPredictor`
        (same interface, with a `contract`).

    Raises:
        ValueError: a backend that cannot run the file, a device that does not exist
            (`DeviceError`), or a file whose contract is refused
            (`convitac_ros.contract.ContractError`).
        FileNotFoundError: no such file.
    """
    if resolve_backend(backend, path) == 'onnxruntime':
        from convitac_ros.runtime_onnx import OnnxPredictor

        predictor = OnnxPredictor(path, device=str(device), precision=precision,
                                  threads=threads, calibrated=calibrated)
    else:
        import torch

        from convitac_ros.inference import Predictor, resolve_device

        resolve_device(device)  # a missing device is blamed before the checkpoint is read
        if threads:
            torch.set_num_threads(threads)
        predictor = Predictor.from_checkpoint(path, device=device, precision=precision,
                                              compile=compile, cuda_graph=cuda_graph,
                                              backend='torch', calibrated=calibrated)
    predictor.contract.check_memory(max_batch)
    return predictor
