"""The one contract check and the one output check of both runtimes, without a model."""

from __future__ import annotations

import numpy as np
import pytest

from convitac_ros.contract import (
    check_outputs,
    ContractError,
    MAX_INPUT_BYTES,
    model_contract,
    OutputError,
)

HEADS = {'material': ['wood', 'metal', 'foam'], 'hardness': ['hard', 'soft']}
PREPROCESS = {'image_size': 224, 'visual_len': 2, 'tactile_len': 2, 'num_tactile': 1}


def test_a_well_formed_declaration_gives_its_sizes():
    contract = model_contract(HEADS, PREPROCESS, 'model.onnx')
    assert contract.heads == HEADS and contract.frames_per_sample == 4
    assert contract.input_bytes(2) == 2 * 4 * 224 * 224 * 3 * 5
    contract.check_memory(16)


@pytest.mark.parametrize('heads,preprocess,field', [
    ({}, PREPROCESS, 'heads is empty'),
    ([['material', ['a']]], PREPROCESS, 'heads must map'),
    ({'material': [1, 2]}, PREPROCESS, "heads.material: class name '1'"),
    ({'material': ['a', '']}, PREPROCESS, "class name ''"),
    ({'material': [' a']}, PREPROCESS, "class name ' a'"),
    ({'material': ['a', 'a']}, PREPROCESS, 'repeated class names'),
    ({'material': []}, PREPROCESS, 'non-empty list'),
    ({'': ['a']}, PREPROCESS, 'head name'),
    (HEADS, {**PREPROCESS, 'image_size': 1025}, 'preprocess.image_size'),
    (HEADS, {**PREPROCESS, 'image_size': 224.0}, 'preprocess.image_size'),
    (HEADS, {**PREPROCESS, 'image_size': True}, 'preprocess.image_size'),
    (HEADS, {**PREPROCESS, 'tactile_len': 33, 'visual_len': 0, 'num_tactile': 2},
     '66 frames per sample'),
    (HEADS, {**PREPROCESS, 'visual_len': 0, 'tactile_len': 0}, '0 frames per sample'),
    (HEADS, 'nope', 'preprocess must be a mapping'),
])
def test_a_broken_declaration_is_one_line_naming_file_and_field(heads, preprocess, field):
    with pytest.raises(ContractError) as caught:
        model_contract(heads, preprocess, 'model.onnx')
    assert str(caught.value).startswith('model.onnx: ') and field in str(caught.value)
    assert '\n' not in str(caught.value)


def test_input_buffers_beyond_the_limit_are_refused_before_allocation():
    contract = model_contract(HEADS, {**PREPROCESS, 'image_size': 1024, 'visual_len': 16,
                                      'tactile_len': 16}, 'big.onnx')
    assert contract.input_bytes(1) <= MAX_INPUT_BYTES
    with pytest.raises(ContractError, match='a batch of 8 needs .* MiB of input buffers'):
        contract.check_memory(8)


def rows(material, hardness=(0.5, 0.5), batch=1):
    return [np.tile(np.asarray(material, np.float32), (batch, 1)),
            np.tile(np.asarray(hardness, np.float32), (batch, 1))]


def test_probabilities_pass_and_come_back_as_float32():
    outputs = check_outputs(rows([0.2, 0.3, 0.5], batch=3), HEADS, 3)
    assert [o.dtype for o in outputs] == [np.float32, np.float32]
    assert outputs[0].shape == (3, 3)


@pytest.mark.parametrize('outputs,message', [
    (rows([np.nan, 0.5, 0.5]), 'non-finite probabilities for head material in 1 of 1'),
    (rows([np.inf, 0.0, 0.0]), 'non-finite'),
    (rows([-50.0, 1e30, 0.0]), 'head material: not probabilities'),
    (rows([0.5, 0.5, 0.5]), 'sum 1.5'),
    (rows([1.2, -0.2, 0.0]), 'not probabilities'),
    (rows([0.2, 0.8]), 'output of shape (1, 2), expected (1, 3)'),
    (rows([0.2, 0.3, 0.5])[:1], '1 outputs for 2 heads'),
])
def test_outputs_that_are_not_probabilities_as_declared_are_refused(outputs, message):
    with pytest.raises(OutputError, match=message.replace('(', r'\(').replace(')', r'\)')):
        check_outputs(outputs, HEADS, 1)


def test_fp16_rounding_of_a_softmax_passes():
    probabilities = np.asarray([0.3335, 0.3335, 0.3335], np.float16).astype(np.float32)
    check_outputs(rows(probabilities), HEADS, 1)
