"""Crafted `.onnx` files with the convitac export's signature, built with onnx's helper API.

`constant_model` answers every sample with the same row per head (any values, NaN included);
its metadata and sizes can be anything, so that each case breaks one promise of the contract.
`looping_model` runs a Loop of a huge trip count before it answers.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import helper, TensorProto

from convitac_ros.runtime_onnx import INPUT_NAME, ONNX_FORMAT

HEADS = {'material': ['wood', 'metal', 'foam'], 'hardness': ['hard', 'soft']}
PREPROCESS = {'image_size': 32, 'mean': [0.5, 0.5, 0.5], 'std': [0.25, 0.25, 0.25],
              'channel_order': 'RGB', 'visual_len': 1, 'tactile_len': 1, 'num_tactile': 1}
OPSET = 17


def metadata(heads: Any = None, preprocess: Any = None, export: Any = None) -> dict[str, str]:
    """The metadata_props of an export (JSON strings), with the given entries replaced."""
    return {'format': ONNX_FORMAT, 'kind': 'convitac', 'model_config': json.dumps({}),
            'heads': json.dumps(HEADS if heads is None else heads),
            'preprocess': json.dumps(PREPROCESS if preprocess is None else preprocess),
            'training': '{}', 'source': '{}',
            'export': json.dumps({'precision': 'fp32'} if export is None else export)}


def _input(frames: int, size: int) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(INPUT_NAME, TensorProto.UINT8,
                                         ['N', frames, size, size, 3])


def _frames(props: dict[str, str]) -> tuple[int, int]:
    """Frames per sample and image size as the metadata declares them (1, 32 if unusable)."""
    try:
        pre = json.loads(props['preprocess'])
        return pre['visual_len'] + pre['num_tactile'] * pre['tactile_len'], pre['image_size']
    except (TypeError, KeyError, ValueError):
        return 2, 32


def _batch_column(nodes: list, initializers: list) -> None:
    """Nodes that turn the input into `col` (N, 1) float zeros (the batch dimension)."""
    initializers.append(helper.make_tensor('zero', TensorProto.FLOAT, [], [0.0]))
    nodes += [helper.make_node('Cast', [INPUT_NAME], ['as_float'], to=TensorProto.FLOAT),
              helper.make_node('ReduceMean', ['as_float'], ['mean'], axes=[1, 2, 3, 4],
                               keepdims=0),
              helper.make_node('Unsqueeze', ['mean', 'axis1'], ['mean_col']),
              helper.make_node('Mul', ['mean_col', 'zero'], ['col'])]
    initializers.append(helper.make_tensor('axis1', TensorProto.INT64, [1], [1]))


def constant_model(path: Path, rows: dict[str, list[float]] | None = None,
                   props: dict[str, str] | None = None) -> Path:
    """An `.onnx` file answering `rows[head]` for every sample.

    Args:
        path: the file to write.
        rows: head -> the output row (its length is the declared output width); default a
            uniform distribution over each head of `HEADS`.
        props: metadata_props (default `metadata()`).
    """
    props = metadata() if props is None else props
    rows = rows or {head: [1.0 / len(classes)] * len(classes) for head, classes in HEADS.items()}
    frames, size = _frames(props)
    nodes: list = []
    initializers: list = []
    _batch_column(nodes, initializers)
    outputs = []
    for head, row in rows.items():
        initializers.append(helper.make_tensor(f'{head}_row', TensorProto.FLOAT, [1, len(row)],
                                               np.asarray(row, np.float32).tolist()))
        nodes.append(helper.make_node('Add', ['col', f'{head}_row'], [head]))
        outputs.append(helper.make_tensor_value_info(head, TensorProto.FLOAT, ['N', len(row)]))
    return _save(path, nodes, initializers, [_input(frames, size)], outputs, props)


def looping_model(path: Path, trips: int = 10 ** 12) -> Path:
    """An `.onnx` file whose outputs wait for a Loop of `trips` iterations (uniform answers)."""
    props = metadata()
    frames, size = _frames(props)
    nodes: list = []
    initializers: list = [
        helper.make_tensor('trips', TensorProto.INT64, [], [trips]),
        helper.make_tensor('keep_going', TensorProto.BOOL, [], [True]),
        helper.make_tensor('start', TensorProto.FLOAT, [], [0.0])]
    _batch_column(nodes, initializers)
    body = helper.make_graph(
        [helper.make_node('Identity', ['cond_in'], ['cond_out']),
         helper.make_node('Add', ['carried', 'step'], ['carried_out'])],
        'body',
        [helper.make_tensor_value_info('i', TensorProto.INT64, []),
         helper.make_tensor_value_info('cond_in', TensorProto.BOOL, []),
         helper.make_tensor_value_info('carried', TensorProto.FLOAT, [])],
        [helper.make_tensor_value_info('cond_out', TensorProto.BOOL, []),
         helper.make_tensor_value_info('carried_out', TensorProto.FLOAT, [])],
        [helper.make_tensor('step', TensorProto.FLOAT, [], [1.0])])
    nodes.append(helper.make_node('Loop', ['trips', 'keep_going', 'start'], ['total'],
                                  body=body))
    nodes.append(helper.make_node('Mul', ['total', 'zero'], ['nothing']))
    nodes.append(helper.make_node('Add', ['col', 'nothing'], ['col_after']))
    outputs = []
    for head, classes in HEADS.items():
        initializers.append(helper.make_tensor(f'{head}_row', TensorProto.FLOAT,
                                               [1, len(classes)], [1.0 / len(classes)] *
                                               len(classes)))
        nodes.append(helper.make_node('Add', ['col_after', f'{head}_row'], [head]))
        outputs.append(helper.make_tensor_value_info(head, TensorProto.FLOAT,
                                                     ['N', len(classes)]))
    return _save(path, nodes, initializers, [_input(frames, size)], outputs, props)


def _save(path: Path, nodes: list, initializers: list, inputs: list, outputs: list,
          props: dict[str, str]) -> Path:
    graph = helper.make_graph(nodes, 'hostile', inputs, outputs, initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', OPSET)])
    model.ir_version = 8
    helper.set_model_props(model, props)
    path.write_bytes(model.SerializeToString())
    return path
