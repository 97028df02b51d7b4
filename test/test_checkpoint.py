"""Checkpoints: exact round trip, strict loading, clear errors naming the file, atomic writes."""

import json
import os
import struct

import pytest
from safetensors.torch import load_file, save, save_file
import torch

from convitac_ros.checkpoint import (
    CheckpointError,
    CheckpointNotFoundError,
    load_checkpoint,
    load_contrastive_encoder,
    read_metadata,
    save_checkpoint,
    save_contrastive_encoder,
)
from convitac_ros.model import ContrastiveEncoder, ConViTac, ModelConfig

torch.set_num_threads(1)

HEADS = {'material': [f'm{i}' for i in range(20)], 'hardness': ['hard', 'soft'],
         'roughness': ['smooth', 'rough']}


@pytest.fixture(scope='module')
def model():
    torch.manual_seed(0)
    return ConViTac(ModelConfig.tiny()).eval()


@pytest.fixture
def saved(model, tmp_path):
    return save_checkpoint(tmp_path / 'model.safetensors', model, heads=HEADS,
                           training={'dataset': 'synthetic', 'epochs': 1})


def inputs(config):
    generator = torch.Generator().manual_seed(1)
    size = config.image_size
    return (torch.randn(2, config.visual_len, 3, size, size, generator=generator),
            torch.randn(2, config.tactile_len, 3, size, size, generator=generator))


def test_round_trip_gives_identical_outputs_and_metadata(model, saved):
    loaded = load_checkpoint(saved)
    assert loaded.config == model.config and loaded.kind == 'convitac'
    assert loaded.heads == HEADS and loaded.training == {'dataset': 'synthetic', 'epochs': 1}
    assert loaded.preprocess['image_size'] == 64 and loaded.preprocess['channel_order'] == 'RGB'
    assert loaded.path == saved and not loaded.model.training
    expected, actual = model(*inputs(model.config)), loaded.model(*inputs(model.config))
    assert all(torch.equal(expected[head], actual[head]) for head in HEADS)
    assert not loaded.model.contrastive_encoder.training
    assert all(not p.requires_grad for p in loaded.model.contrastive_encoder.parameters())


def test_file_is_plain_safetensors_with_json_metadata(saved):
    raw = saved.read_bytes()
    header_size = struct.unpack('<Q', raw[:8])[0]
    metadata = json.loads(raw[8:8 + header_size])['__metadata__']
    assert json.loads(metadata['format']) == 'convitac/1'
    assert json.loads(metadata['model_config']) == ModelConfig.tiny().to_dict()
    assert read_metadata(saved)['heads'] == HEADS


def test_contrastive_encoder_moves_from_stage_one_to_stage_two(tmp_path):
    config = ModelConfig.tiny()
    encoder = ContrastiveEncoder(config)
    path = save_contrastive_encoder(tmp_path / 'ec.safetensors', encoder)
    stage_two = ConViTac(config.replace(heads=(('grasp_success', 2),), num_tactile=2))
    loaded = load_contrastive_encoder(path, stage_two)
    assert loaded.kind == 'contrastive_encoder'
    ours, theirs = stage_two.contrastive_encoder.state_dict(), encoder.state_dict()
    assert all(torch.equal(ours[key], theirs[key]) for key in theirs)
    assert all(not p.requires_grad for p in stage_two.contrastive_encoder.parameters())


def test_contrastive_encoder_with_other_width_is_refused_naming_the_field(tmp_path):
    path = save_contrastive_encoder(tmp_path / 'ec.safetensors',
                                    ContrastiveEncoder(ModelConfig.tiny(dim=32)))
    with pytest.raises(CheckpointError, match=r'ec.safetensors.*fields differ: dim'):
        load_contrastive_encoder(path, ConViTac(ModelConfig.tiny()))


def test_kind_mismatch_is_an_error(saved):
    with pytest.raises(CheckpointError, match=r"model.safetensors.*'convitac'.*expected "
                                              r"'contrastive_encoder'"):
        load_checkpoint(saved, kind='contrastive_encoder')


def test_missing_file_is_an_error_naming_it(tmp_path):
    with pytest.raises(CheckpointNotFoundError, match='absent.safetensors'):
        load_checkpoint(tmp_path / 'absent.safetensors')


def test_random_bytes_are_an_error_naming_the_file(tmp_path):
    path = tmp_path / 'noise.safetensors'
    path.write_bytes(os.urandom(4096))
    with pytest.raises(CheckpointError, match='noise.safetensors.*not a readable'):
        load_checkpoint(path)


def test_truncated_file_is_an_error_naming_the_file(saved):
    data = saved.read_bytes()
    saved.write_bytes(data[:len(data) // 2])
    with pytest.raises(CheckpointError, match='model.safetensors.*truncated'):
        load_checkpoint(saved)


def _rewrite(path, tensors=None, **metadata_changes):
    """Rewrite a checkpoint with changed tensors and/or metadata entries (JSON-encoded)."""
    metadata = {key: json.dumps(value) for key, value in read_metadata(path).items()}
    metadata.update({key: json.dumps(value) for key, value in metadata_changes.items()})
    path.write_bytes(save(tensors if tensors is not None else load_file(str(path)), metadata))


def test_unknown_format_version_is_an_error(saved):
    _rewrite(saved, format='convitac/9')
    with pytest.raises(CheckpointError,
                       match='model.safetensors.*unknown checkpoint format .convitac/9.'):
        load_checkpoint(saved)


def test_safetensors_without_our_metadata_is_an_error(tmp_path):
    path = tmp_path / 'foreign.safetensors'
    save_file({'weight': torch.zeros(2)}, str(path))
    with pytest.raises(CheckpointError, match='foreign.safetensors.*not a convitac'):
        load_checkpoint(path)


def test_shape_mismatch_is_an_error_naming_the_tensor(saved):
    tensors = load_file(str(saved))
    tensors['heads.classifiers.hardness.weight'] = torch.zeros(3, 64)
    _rewrite(saved, tensors)
    with pytest.raises(CheckpointError, match=r'model.safetensors.*heads.classifiers.hardness.'
                                              r'weight: file \(3, 64\) vs model \(2, 64\)'):
        load_checkpoint(saved)


def test_missing_tensor_is_an_error_naming_it(saved):
    tensors = load_file(str(saved))
    del tensors['fusion.query_embed']
    _rewrite(saved, tensors)
    with pytest.raises(CheckpointError, match=r"missing \['fusion.query_embed'\]"):
        load_checkpoint(saved)


def test_config_with_unknown_keys_is_an_error(saved):
    config = ModelConfig.tiny().to_dict()
    config['future_switch'] = True
    _rewrite(saved, model_config=config)
    with pytest.raises(CheckpointError, match='model.safetensors.*invalid model_config.*'
                                              'future_switch'):
        load_checkpoint(saved)


def test_heads_that_do_not_match_the_config_are_refused(model, tmp_path):
    with pytest.raises(ValueError, match='heads'):
        save_checkpoint(tmp_path / 'x.safetensors', model, heads={'material': ['a', 'b']})
    assert not list(tmp_path.iterdir())


def test_atomic_write_leaves_no_temporary_file(saved):
    assert [p.name for p in saved.parent.iterdir()] == ['model.safetensors']


def test_failed_write_keeps_the_old_file_and_cleans_up(model, saved, monkeypatch):
    original = saved.read_bytes()

    def broken_fsync(descriptor):
        raise OSError('disk full')

    monkeypatch.setattr(os, 'fsync', broken_fsync)
    with pytest.raises(OSError, match='disk full'):
        save_checkpoint(saved, ConViTac(ModelConfig.tiny()), heads=HEADS)
    monkeypatch.undo()
    assert saved.read_bytes() == original
    assert [p.name for p in saved.parent.iterdir()] == ['model.safetensors']


def test_shared_tensors_are_saved(tmp_path):
    config = ModelConfig.tiny(heads=(('hardness', 2), ('roughness', 2)))
    model = ConViTac(config)
    model.heads.classifiers['roughness'].weight = model.heads.classifiers['hardness'].weight
    path = save_checkpoint(tmp_path / 'tied.safetensors', model)
    loaded = load_checkpoint(path).model
    assert torch.equal(loaded.heads.classifiers['roughness'].weight,
                       model.heads.classifiers['hardness'].weight)
