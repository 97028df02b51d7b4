"""Local pretrained weights: every common DINO layout for E^c, timm files for the fusion encoders.

The files are written here in the layouts the real releases use (DINO's `main_dino.py` saves
`{'student', 'teacher', 'optimizer', 'epoch', 'args': argparse.Namespace, 'dino_loss'}`), then
loaded through the same functions the training scripts call.
"""

import argparse
import os
from pathlib import Path
import pickle

import pytest
from safetensors.torch import save_file
import timm
import torch

from convitac_ros.model import ContrastiveEncoder, ConViTac, ModelConfig
from convitac_ros.model.dino import load_backbone_weights, load_dino_weights

torch.set_num_threads(1)


def _vit_state(encoder: ContrastiveEncoder, seed: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {key: torch.randn(value.shape, generator=generator)
            for key, value in encoder.backbone.state_dict().items()}


def _assert_loaded(encoder: ContrastiveEncoder, state: dict[str, torch.Tensor]) -> None:
    loaded = encoder.backbone.state_dict()
    assert all(torch.equal(loaded[key], value) for key, value in state.items())


def test_a_dino_training_checkpoint_with_its_args_namespace_loads_the_teacher(tmp_path):
    encoder = ContrastiveEncoder(ModelConfig.tiny())
    teacher, student = _vit_state(encoder, 1), _vit_state(encoder, 2)
    checkpoint = {
        'student': {f'module.backbone.{k}': v for k, v in student.items()}
        | {'module.head.mlp.0.weight': torch.zeros(4, 4)},
        'teacher': {f'backbone.{k}': v for k, v in teacher.items()}
        | {'head.last_layer.weight_g': torch.zeros(1, 4)},
        'optimizer': {'state': {}, 'param_groups': [{'lr': 0.1, 'params': [0, 1]}]},
        'epoch': 100,
        'args': argparse.Namespace(arch='vit_small', patch_size=16, out_dim=65536,
                                   lr=0.0005, data_path='/path/to/imagenet/train'),
        'dino_loss': {'center': torch.zeros(1, 65536)},
    }
    torch.save(checkpoint, tmp_path / 'checkpoint.pth')
    load_dino_weights(encoder, tmp_path / 'checkpoint.pth')
    _assert_loaded(encoder, teacher)


def test_the_official_dino_release_and_timm_safetensors_load(tmp_path):
    encoder = ContrastiveEncoder(ModelConfig.tiny())
    release = _vit_state(encoder, 3)
    torch.save(release, tmp_path / 'dino_deitsmall16_pretrain.pth')
    load_dino_weights(encoder, tmp_path / 'dino_deitsmall16_pretrain.pth')
    _assert_loaded(encoder, release)
    timm_file = _vit_state(encoder, 4)
    save_file(timm_file, str(tmp_path / 'model.safetensors'))
    load_dino_weights(encoder, tmp_path / 'model.safetensors')
    _assert_loaded(encoder, timm_file)


class _Payload:
    """Unpickling this would run os.system: the loader must refuse it without running it."""

    def __reduce__(self):
        return os.system, ('touch PWNED',)


def test_a_file_that_needs_arbitrary_unpickling_is_refused_in_one_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    encoder = ContrastiveEncoder(ModelConfig.tiny())
    with open(tmp_path / 'evil.pth', 'wb') as stream:
        pickle.dump({'teacher': _vit_state(encoder, 5), 'args': _Payload()}, stream)
    with pytest.raises(ValueError) as error:
        load_dino_weights(encoder, tmp_path / 'evil.pth')
    message = str(error.value)
    assert 'evil.pth' in message and 'read safely' in message and '\n' not in message
    assert not (tmp_path / 'PWNED').exists()
    (tmp_path / 'junk.pth').write_bytes(b'not a checkpoint')
    with pytest.raises(ValueError, match=r'junk.pth: not a weight file'):
        load_dino_weights(encoder, tmp_path / 'junk.pth')


def test_a_file_of_another_architecture_is_named_and_described_in_one_line(tmp_path):
    resnet = timm.create_model('resnet18', pretrained=False)
    torch.save(resnet.state_dict(), tmp_path / 'resnet18.pth')
    with pytest.raises(ValueError) as error:
        load_dino_weights(ContrastiveEncoder(ModelConfig.tiny()), tmp_path / 'resnet18.pth')
    message = str(error.value)
    assert message.startswith(f'{tmp_path / "resnet18.pth"} does not fit the contrastive')
    assert 'a ViT with 2 blocks, width 64, patch 8' in message  # the model
    assert 'the file holds a CNN with a (64, 3, 7, 7) stem' in message
    assert '\n' not in message and len(message) < 600


def test_fusion_encoders_start_from_timm_files_with_their_classifier(tmp_path):
    config = ModelConfig.tiny(visual_arch='resnet18', visual_kwargs=())
    model = ConViTac(config)
    source = timm.create_model('resnet18', pretrained=False, num_classes=1000)
    torch.save({'state_dict': source.state_dict()}, tmp_path / 'resnet18_in1k.pth')
    load_backbone_weights(model.visual_encoder.tokenizer.backbone,
                          tmp_path / 'resnet18_in1k.pth', 'the visual fusion encoder')
    assert torch.equal(model.visual_encoder.tokenizer.backbone.conv1.weight,
                       source.conv1.weight)
    with pytest.raises(ValueError, match='resnet18_in1k.pth does not fit the tactile fusion'):
        load_backbone_weights(model.tactile_encoder.tokenizer.backbone,
                              tmp_path / 'resnet18_in1k.pth', 'the tactile fusion encoder')


def test_missing_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match='nothing.pth'):
        load_dino_weights(ContrastiveEncoder(ModelConfig.tiny()), Path(tmp_path) / 'nothing.pth')
