"""Parameter specs, descriptors, validation reasons and the demo checkpoint location."""

from __future__ import annotations

from pathlib import Path

import pytest

from convitac_ros.ros.parameters import (
    demo_checkpoint,
    NodeParameters,
    SPECS,
    validate,
)


def test_every_spec_is_a_typed_field_with_a_description():
    params = NodeParameters.from_values({})
    for name, spec in SPECS.items():
        assert getattr(params, name) == spec.default
        assert len(spec.description) > 20
        descriptor = spec.descriptor(name)
        assert descriptor.name == name and spec.description in descriptor.description
        assert validate(name, spec.default) is None


def test_numeric_specs_carry_their_range_in_the_descriptor():
    queue = SPECS['queue_depth'].descriptor('queue_depth')
    assert (queue.integer_range[0].from_value, queue.integer_range[0].to_value) == (1, 100)
    slop = SPECS['sync_slop'].descriptor('sync_slop')
    assert slop.floating_point_range[0].to_value == 10.0
    assert 'One of: raw, compressed' in SPECS['image_transport'].descriptor('x').description


@pytest.mark.parametrize('name,value,reason', [
    ('queue_depth', 0, 'queue_depth must be within [1, 100]; got 0'),
    ('queue_depth', 2.5, 'queue_depth must be a int, got float 2.5'),
    ('publish_debug_image', 1, 'publish_debug_image must be a bool'),
    ('image_transport', 'h264', 'image_transport must be one of raw, compressed'),
    ('zero_stamp_policy', 'ignore', 'one of receive_time, drop'),
    ('device', 'tpu', 'device must be auto, cpu, cuda or cuda:N'),
    ('device', 'cuda:x', 'cuda:N'),
    ('checkpoint', 'model.pt', 'must be a .safetensors or .onnx file'),
    ('backend', 'tensorrt', 'backend must be one of auto, torch, onnxruntime'),
    ('sync_slop', 11.0, 'within [0.0, 10.0]'),
])
def test_bad_values_are_refused_with_a_reason(name, value, reason):
    assert reason in validate(name, value)


@pytest.mark.parametrize('name,value', [
    ('device', 'cuda:1'), ('device', 'cpu'), ('sync_slop', 0), ('checkpoint', ''),
    ('checkpoint', '/x/y.safetensors'), ('checkpoint', '/x/y.onnx'), ('backend', 'torch'),
    ('latency_budget_ms', 0.0), ('unknown', object()),
])
def test_good_values_pass(name, value):
    assert validate(name, value) is None


def test_with_changes_coerces_ints_for_float_parameters():
    params = NodeParameters.from_values({}).with_changes({'sync_slop': 1})
    assert params.sync_slop == 1.0 and isinstance(params.sync_slop, float)


def test_demo_checkpoint_only_when_asked_for_and_an_empty_one_is_an_error(tmp_path):
    with pytest.raises(ValueError, match='checkpoint is empty: give a .safetensors path'):
        NodeParameters.from_values({}).resolved_checkpoint()
    params = NodeParameters.from_values({'checkpoint': 'demo'})
    assert params.uses_demo and params.resolved_checkpoint() == demo_checkpoint()
    assert demo_checkpoint().is_file()
    assert demo_checkpoint().name == 'convitac_demo.safetensors'
    assert demo_checkpoint().parent.name == 'models'
    chosen = NodeParameters.from_values({'checkpoint': str(tmp_path / 'm.safetensors')})
    assert chosen.resolved_checkpoint() == Path(tmp_path / 'm.safetensors')
    assert not chosen.uses_demo
