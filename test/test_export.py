"""convitac_export and the onnxruntime backend: a checked, self-describing ONNX file.

Its probabilities equal torch's for the tiny and the paper configuration, one and two sensors.
"""

import hashlib
import json
import subprocess
import sys

import numpy as np
import onnx
import pytest
import torch

from convitac_ros.checkpoint import read_metadata, save_checkpoint
from convitac_ros.export import main
from convitac_ros.inference import Predictor
from convitac_ros.model import ConViTac, ModelConfig
from convitac_ros.predictor import open_predictor
from convitac_ros.runtime_onnx import OnnxModelError, OnnxPredictor, resolve_providers

torch.set_num_threads(1)

# Largest |p_onnxruntime - p_torch| allowed (fp32; measured: about 1e-7 tiny, 1e-6 paper).
TOLERANCE = 1e-5
CONFIGS = {
    'tiny-1': lambda: ModelConfig.tiny(),
    'tiny-2': lambda: ModelConfig.tiny(num_tactile=2, heads=(('grasp_success', 2),)),
    'paper-1': lambda: ModelConfig.paper(),
    'paper-2': lambda: ModelConfig.paper(num_tactile=2, heads=(('grasp_success', 2),)),
}


def write_checkpoint(directory, name):
    torch.manual_seed(0)
    config = CONFIGS[name]()
    heads = {head: [f'{head}_{i}' for i in range(size)] for head, size in config.heads}
    return save_checkpoint(directory / f'{name}.safetensors', ConViTac(config), heads=heads,
                           training={'dataset': 'none', 'note': 'random weights'})


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    directory = tmp_path_factory.mktemp('tiny')
    checkpoint = write_checkpoint(directory, 'tiny-1')
    output = directory / 'tiny.onnx'
    assert main([str(checkpoint), '-o', str(output)]) == 0
    return checkpoint, output


def frames(predictor, seed, batch=1):
    """Camera frames larger than the model, tactile smaller: resizing both ways is compared."""
    rng = np.random.default_rng(seed)
    return [([rng.integers(0, 256, (96, 128, 3), dtype=np.uint8)
              for _ in range(predictor.visual_len)],
             [[rng.integers(0, 256, (40, 30, 3), dtype=np.uint8)
               for _ in range(predictor.tactile_len)] for _ in range(predictor.num_tactile)])
            for _ in range(batch)]


def max_difference(left, right):
    return max(float(np.abs(left[head] - right[head]).max()) for head in left)


def test_export_writes_a_checked_file_carrying_the_checkpoint_metadata(tiny):
    checkpoint, output = tiny
    proto = onnx.load(str(output))
    onnx.checker.check_model(proto, full_check=True)
    props = {entry.key: entry.value for entry in proto.metadata_props}
    metadata = read_metadata(checkpoint)
    assert props['format'] == 'convitac-onnx/1'
    for key in ('model_config', 'heads', 'preprocess', 'training'):
        assert json.loads(props[key]) == metadata[key]
    source = json.loads(props['source'])
    assert source['sha256'] == hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    assert source['checkpoint'] == checkpoint.name
    export = json.loads(props['export'])
    assert export['precision'] == 'fp32' and export['max_abs_diff_vs_torch'] < TOLERANCE
    (graph_input,) = proto.graph.input
    dims = graph_input.type.tensor_type.shape.dim
    assert graph_input.type.tensor_type.elem_type == onnx.TensorProto.UINT8
    assert dims[0].dim_param == 'batch' and [d.dim_value for d in dims[1:]] == [4, 64, 64, 3]
    assert [o.name for o in proto.graph.output] == list(metadata['heads'])
    # Softmax is inside the graph: the outputs are probabilities.
    assert any(node.op_type == 'Softmax' for node in proto.graph.node)


@pytest.mark.parametrize('name', [
    'tiny-1', 'tiny-2',
    pytest.param('paper-1', marks=pytest.mark.slow),
    pytest.param('paper-2', marks=pytest.mark.slow),
])
def test_onnxruntime_predictor_equals_the_torch_predictor(name, tmp_path):
    checkpoint = write_checkpoint(tmp_path, name)
    output = tmp_path / f'{name}.onnx'
    assert main([str(checkpoint), '-o', str(output)]) == 0
    runtime = open_predictor(output, device='cpu', threads=1)
    reference = Predictor.from_checkpoint(checkpoint, device='cpu')
    assert isinstance(runtime, OnnxPredictor) and runtime.backend == 'onnxruntime'
    assert runtime.heads == reference.heads and runtime.providers == ['CPUExecutionProvider']
    assert (runtime.visual_len, runtime.tactile_len, runtime.num_tactile, runtime.image_size) \
        == (reference.visual_len, reference.tactile_len, reference.num_tactile,
            reference.image_size)
    single = frames(runtime, 1)[0]
    assert max_difference(runtime.predict(*single), reference.predict(*single)) < TOLERANCE
    batch = frames(runtime, 2, batch=3)  # the batch dimension is dynamic
    for ours, theirs in zip(runtime.predict_batch(batch), reference.predict_batch(batch)):
        assert max_difference(ours, theirs) < TOLERANCE
        assert all(p.dtype == np.float32 for p in ours.values())
        assert all(abs(float(p.sum()) - 1.0) < 1e-5 for p in ours.values())


def test_fp16_export_is_half_the_size_and_close_to_fp32(tiny, tmp_path):
    checkpoint, fp32 = tiny
    output = tmp_path / 'tiny16.onnx'
    assert main([str(checkpoint), '-o', str(output), '--fp16']) == 0
    runtime = OnnxPredictor(output, device='cpu', threads=1)
    reference = Predictor.from_checkpoint(checkpoint, device='cpu')
    assert runtime.precision == 'fp16'
    assert output.stat().st_size < 0.6 * fp32.stat().st_size
    sample = frames(runtime, 3)[0]
    assert max_difference(runtime.predict(*sample), reference.predict(*sample)) < 5e-3


def test_onnxruntime_predictor_rejects_bad_frames_like_the_torch_one(tiny):
    runtime = OnnxPredictor(tiny[1], device='cpu')
    visual, tactile = frames(runtime, 4)[0]
    with pytest.raises(ValueError, match='expected 2 visual frames'):
        runtime.predict(visual[:1], tactile)
    with pytest.raises(ValueError, match='tactile sensor 0 frame 1 must be uint8'):
        runtime.predict(visual, [[tactile[0][0], tactile[0][1].astype(np.float32)]])
    probabilities, maps = runtime.predict_with_attention(visual, tactile)
    assert maps is None and set(probabilities) == set(runtime.heads)


def test_backend_device_and_precision_errors_are_clear(tiny, tmp_path):
    checkpoint, output = tiny
    with pytest.raises(ValueError, match='onnxruntime backend an .onnx file'):
        open_predictor(checkpoint, backend='onnxruntime')
    with pytest.raises(ValueError, match='torch backend takes a .safetensors'):
        open_predictor(output, backend='torch')
    with pytest.raises(ValueError, match='runs on onnxruntime'):
        Predictor.from_checkpoint(output)
    with pytest.raises(ValueError, match='exported in fp32'):
        OnnxPredictor(output, precision='bf16')
    with pytest.raises(ValueError, match='no CUDA or TensorRT execution provider'):
        resolve_providers('cuda', ['CPUExecutionProvider'])
    assert resolve_providers('auto', ['CUDAExecutionProvider', 'CPUExecutionProvider']) == [
        'CUDAExecutionProvider', 'CPUExecutionProvider']
    assert resolve_providers('cpu', ['TensorrtExecutionProvider', 'CPUExecutionProvider']) == [
        'CPUExecutionProvider']
    foreign = tmp_path / 'foreign.onnx'
    node = onnx.helper.make_node('Identity', ['x'], ['y'])
    value = onnx.helper.make_tensor_value_info
    graph = onnx.helper.make_graph([node], 'g', [value('x', onnx.TensorProto.FLOAT, [1])],
                                   [value('y', onnx.TensorProto.FLOAT, [1])])
    # IR 8 / opset 17: loadable by every onnxruntime we meet (a newer onnx writes a newer IR
    # version by default, which an older onnxruntime refuses for the wrong reason).
    model = onnx.helper.make_model(graph, ir_version=8,
                                   opset_imports=[onnx.helper.make_opsetid('', 17)])
    onnx.save(model, str(foreign))
    with pytest.raises(OnnxModelError, match='not a convitac export'):
        OnnxPredictor(foreign)
    garbage = tmp_path / 'garbage.onnx'
    garbage.write_bytes(b'not a model')
    with pytest.raises(OnnxModelError, match='not a loadable ONNX model'):
        OnnxPredictor(garbage)


def test_export_cli_reports_a_bad_checkpoint_in_one_line(tmp_path):
    result = subprocess.run(
        [sys.executable, '-m', 'convitac_ros.export', str(tmp_path / 'missing.safetensors'),
         '-o', str(tmp_path / 'x.onnx')], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f'convitac_export: error: checkpoint not found: {tmp_path / "missing.safetensors"}']
    assert not (tmp_path / 'x.onnx').exists()
