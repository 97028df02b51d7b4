"""`convitac_export CHECKPOINT -o model.onnx`: a checkpoint as one self-describing ONNX file.

The graph is the whole inference path of the Predictor: uint8 RGB frames in (the staging layout
`(N, T_v + S*T_t, S, S, 3)`, already resized to S), normalisation with the checkpoint's mean and
std, E^c, the fusion encoders, the fusion, the heads and the softmax; one float32 output
`(N, C)` per head, named after the head, each head's logits divided by the temperature the
checkpoint carries (`convitac_ros.calibration`; `--no-calibration` exports the uncalibrated
softmax; the export record says which in `temperatures`). The batch dimension is dynamic. The
checkpoint's metadata (model config, heads and classes, preprocessing, training summary)
travels in the file's `metadata_props` as JSON strings, with `source` (the checkpoint's name,
SHA-256 and creation time) and `export` (precision, opset, versions, and the largest
probability difference against the torch model measured at export). `--fp16` stores fp16
weights and computes in fp16 (for CUDA and TensorRT; the input stays uint8 and the
probabilities float32).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
import dataclasses
import datetime
import hashlib
import json
import os
from pathlib import Path
import sys
import warnings

import numpy as np
import onnx
import torch
from torch import nn

from convitac_ros import __version__
from convitac_ros.calibration import temperatures_of
from convitac_ros.checkpoint import CheckpointError, load_checkpoint
from convitac_ros.fileio import atomic_write_bytes
from convitac_ros.model import ConViTac
from convitac_ros.output_paths import check_output_file
from convitac_ros.preprocess import normalize_frames
from convitac_ros.runtime_onnx import INPUT_NAME, ONNX_FORMAT
from convitac_ros.staging import InputSpec

OPSET = 17  # LayerNormalization as one op; served by every onnxruntime and TensorRT 8.6+
OPSETS = (17, 20)  # LayerNormalization needs 17; the TorchScript exporter stops at 20
VERIFY_BATCH = 2


class InferenceGraph(nn.Module):
    """The exported computation: uint8 staging frames -> per-head probabilities.

    Args:
        model: the ConViTac network (eval mode).
        heads: head -> class names, in the model's head order.
        preprocess: the checkpoint's preprocessing record (mean, std, sequence lengths).
        dtype: compute dtype of the network (float32 or float16).
        temperatures: head -> the temperature its logits are divided by (default 1).
    """

    def __init__(self, model: ConViTac, heads: dict[str, list[str]], preprocess: dict,
                 dtype: torch.dtype = torch.float32,
                 temperatures: dict[str, float] | None = None) -> None:
        super().__init__()
        self.temperatures = {name: float((temperatures or {}).get(name, 1.0)) for name in heads}
        self.model = model.to(dtype).eval()
        self.head_names = list(heads)
        spec = InputSpec.from_record(preprocess)
        self.visual_len = spec.visual_len
        self.dtype = dtype
        self.register_buffer('mean', torch.tensor(spec.mean, dtype=torch.float32))
        self.register_buffer('std', torch.tensor(spec.std, dtype=torch.float32))

    def forward(self, frames: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Args: frames uint8 `(N, T_v + S*T_t, S, S, 3)`. Returns: `(N, C_h)` float32 per head."""
        pixels = normalize_frames(frames, self.mean, self.std).to(self.dtype)  # (N, T, 3, S, S)
        visual = pixels[:, :self.visual_len] if self.model.use_visual else None
        tactile = pixels[:, self.visual_len:] if self.model.use_tactile else None
        logits = self.model(visual, tactile)
        return tuple((logits[name].float() / self.temperatures[name]).softmax(dim=-1)
                     for name in self.head_names)


@dataclasses.dataclass
class ExportResult:
    """What `export_onnx` wrote and how close it is to the torch model.

    Attributes:
        path: the `.onnx` file.
        size_bytes: its size.
        precision: 'fp32' or 'fp16'.
        max_abs_diff: largest |p_onnxruntime - p_torch fp32| over all heads and classes of
            `VERIFY_BATCH` random samples (onnxruntime on the CPU).
    """

    path: Path
    size_bytes: int
    precision: str
    max_abs_diff: float


def export_onnx(checkpoint: str | os.PathLike, output: str | os.PathLike, *,
                fp16: bool = False, opset: int = OPSET, force: bool = False,
                calibrated: bool = True) -> ExportResult:
    """Export a 'convitac' checkpoint to ONNX, check it and compare it with torch.

    Args:
        checkpoint: the `.safetensors` checkpoint.
        output: the `.onnx` file to write (atomically).
        fp16: fp16 weights and compute instead of fp32.
        opset: ONNX opset, within `OPSETS`.
        force: replace an existing output file (never the checkpoint itself).
        calibrated: apply the checkpoint's temperatures in the graph (1 where it has none).

    Returns:
        The file written and its measured difference from the torch model.

    Raises:
        CheckpointError: an unreadable or non-'convitac' checkpoint.
        OutputPathError: an output that is the checkpoint, a folder, an existing file (without
            `force`), or in a place that cannot be written (checked before any work).
        ValueError: an opset out of range.
        onnx.checker.ValidationError: the exported graph is not valid ONNX.
    """
    checkpoint, output = Path(checkpoint), Path(output)
    if not OPSETS[0] <= opset <= OPSETS[1]:
        raise ValueError(f'--opset must be within {OPSETS[0]}..{OPSETS[1]}, got {opset}')
    check_output_file(output, option='-o', inputs=[checkpoint], force=force)
    loaded = load_checkpoint(checkpoint, kind='convitac')
    try:
        temperatures = temperatures_of(loaded.training, loaded.heads, str(checkpoint))
    except ValueError as error:
        raise CheckpointError(str(error)) from None
    source = {'checkpoint': checkpoint.name, 'sha256': _sha256(checkpoint),
              'created': loaded.created, 'convitac_ros_version': loaded.convitac_ros_version}
    data, max_abs_diff = export_model(loaded.model, loaded.heads, loaded.preprocess,
                                      training=loaded.training, source=source, fp16=fp16,
                                      opset=opset,
                                      temperatures=temperatures if calibrated else None)
    try:
        atomic_write_bytes(output, data, overwrite=force)
    except FileExistsError:
        raise ValueError(f'-o {output} appeared during the export; nothing was replaced'
                         ) from None
    return ExportResult(path=output, size_bytes=len(data), precision='fp16' if fp16 else 'fp32',
                        max_abs_diff=max_abs_diff)


def export_model(model: ConViTac, heads: dict[str, list[str]], preprocess: dict, *,
                 training: dict | None = None, source: dict | None = None, fp16: bool = False,
                 opset: int = OPSET, temperatures: dict[str, float] | None = None
                 ) -> tuple[bytes, float]:
    """Export a model with its metadata to a checked ONNX model in memory.

    Args:
        model: the network (converted to fp16 in place when `fp16`).
        heads: head -> class names.
        preprocess: the preprocessing record (see `convitac_ros.checkpoint`).
        training: the training summary to carry.
        source: where the weights came from (checkpoint name, hash, ...).
        fp16: fp16 weights and compute.
        opset: ONNX opset.
        temperatures: head -> temperature applied in the graph (None: none, i.e. 1).

    Returns:
        The serialised model and the largest |p_onnxruntime - p_torch fp32| on random frames.
    """
    frames = InputSpec.from_record(preprocess).random_frames(VERIFY_BATCH)
    graph = InferenceGraph(model, heads, preprocess, temperatures=temperatures)
    with torch.no_grad():
        reference = [p.numpy() for p in graph(torch.from_numpy(frames))]
    if fp16:
        graph = InferenceGraph(model, heads, preprocess, torch.float16, temperatures)
    proto = _trace(graph, torch.from_numpy(frames), opset)
    max_abs_diff = _max_abs_diff(proto, reference, frames)
    export_record = {
        'precision': 'fp16' if fp16 else 'fp32', 'opset': opset, 'input': INPUT_NAME,
        'input_layout': 'uint8 (N, T_v + S*T_t, S, S, 3) RGB, resized to S, not normalised',
        'outputs': list(heads), 'convitac_ros_version': __version__,
        'torch_version': torch.__version__, 'onnx_version': onnx.__version__,
        'exported': datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'),
        'max_abs_diff_vs_torch': max_abs_diff,
        'temperatures': graph.temperatures if temperatures is not None else None,
    }
    entries = {'format': ONNX_FORMAT, 'kind': 'convitac',
               'model_config': json.dumps(model.config.to_dict()), 'heads': json.dumps(heads),
               'preprocess': json.dumps(preprocess), 'training': json.dumps(training or {}),
               'source': json.dumps(source or {}), 'export': json.dumps(export_record)}
    onnx.helper.set_model_props(proto, entries)
    proto.doc_string = (f'ConViTac visual-tactile model exported by convitac_ros {__version__}; '
                        'metadata_props hold heads, classes and preprocessing.')
    onnx.checker.check_model(proto, full_check=True)
    return proto.SerializeToString(), max_abs_diff


def _trace(graph: InferenceGraph, frames: torch.Tensor, opset: int) -> onnx.ModelProto:
    """Export with the TorchScript exporter (the dynamo one needs onnxscript, not installed)."""
    import io

    buffer = io.BytesIO()
    names = graph.head_names
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        # Shape checks in the model are constants for the exported sizes; say nothing.
        warnings.simplefilter('ignore')
        torch.onnx.export(graph, (frames,), buffer, dynamo=False, opset_version=opset,
                          input_names=[INPUT_NAME], output_names=names,
                          dynamic_axes={name: {0: 'batch'} for name in [INPUT_NAME, *names]},
                          do_constant_folding=True)
    return onnx.load_from_string(buffer.getvalue())


def _max_abs_diff(proto: onnx.ModelProto, reference: list[np.ndarray], frames: np.ndarray
                  ) -> float:
    import onnxruntime

    session = onnxruntime.InferenceSession(proto.SerializeToString(),
                                           providers=['CPUExecutionProvider'])
    outputs = session.run(None, {INPUT_NAME: frames})
    return float(max(np.abs(out - ref).max() for out, ref in zip(outputs, reference)))


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open('rb') as handle:
        for block in iter(lambda: handle.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()


def build_parser() -> argparse.ArgumentParser:
    """Command-line options of `convitac_export`."""
    parser = argparse.ArgumentParser(
        prog='convitac_export', description='Export a ConViTac checkpoint to ONNX (whole '
        'inference graph, softmax included, metadata carried, dynamic batch).')
    parser.add_argument('checkpoint', help='the .safetensors checkpoint')
    parser.add_argument('-o', '--output', required=True, help='the .onnx file to write')
    parser.add_argument('--fp16', action='store_true',
                        help='fp16 weights and compute (for the CUDA/TensorRT providers)')
    parser.add_argument('--opset', type=int, default=OPSET,
                        help=f'ONNX opset ({OPSETS[0]} to {OPSETS[1]})')
    parser.add_argument('--force', action='store_true',
                        help='replace an existing output file (never the checkpoint)')
    parser.add_argument('--no-calibration', action='store_true',
                        help="leave out the checkpoint's temperatures (uncalibrated softmax)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `convitac_export`."""
    args = build_parser().parse_args(argv)
    try:
        result = export_onnx(args.checkpoint, args.output, fp16=args.fp16, opset=args.opset,
                             force=args.force, calibrated=not args.no_calibration)
    except (CheckpointError, ValueError, OSError, onnx.checker.ValidationError) as exc:
        text = ' '.join(str(exc).split())
        print(f'convitac_export: error: {text[:500]}', file=sys.stderr)
        return 1
    print(f'wrote {result.path} ({result.size_bytes / 2**20:.1f} MiB, {result.precision}); '
          f'max |p_onnxruntime - p_torch| = {result.max_abs_diff:.2e}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
