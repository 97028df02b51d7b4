"""The small ResNet E^c (``resnet_small``, demo.yaml's since 0.6): built here, checked as data."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from convitac_ros.checkpoint import load_checkpoint, save_contrastive_encoder
from convitac_ros.model import ContrastiveEncoder, ModelConfig
from convitac_ros.model.contrastive import TACTILE, VISUAL

torch.set_num_threads(2)

SMALL = {'contrastive_arch': 'resnet_small', 'contrastive_kwargs': (('width', 8), ('blocks', 2))}


def test_width_and_blocks_shape_the_network() -> None:
    encoder = ContrastiveEncoder(ModelConfig.tiny(**SMALL))
    backbone = encoder.backbone
    assert backbone.num_features == 64  # 8, 16, 32, 64 channels
    assert [len(stage) for stage in (backbone.layer1, backbone.layer2, backbone.layer3,
                                     backbone.layer4)] == [2, 2, 2, 2]
    tokens = encoder(torch.randn(3, 3, 64, 64))
    assert tokens.shape == (3, 16, 64)  # P = 16 tokens of width d = 64


def test_demo_config_trains_the_small_resnet_as_e_c() -> None:
    from training.train_config import load_config

    config = load_config('demo', [])
    assert config.model.preset == 'tiny_resnet'
    model = ModelConfig.tiny_resnet(**config.model.overrides)
    assert model.contrastive_arch == 'resnet_small'
    assert dict(model.contrastive_kwargs) == {'width': 32, 'blocks': 1}


@pytest.mark.parametrize('kwargs, words', [
    ((('width', 0),), 'width of resnet_small must be an int in \\[1, 512\\]'),
    ((('width', 10 ** 6),), 'width of resnet_small must be an int'),
    ((('blocks', 2.5),), 'blocks of resnet_small must be an int in \\[1, 8\\]'),
    ((('blocks', True),), 'blocks of resnet_small must be an int'),
    ((('channels', 3),), "'channels' is not an allowed argument of resnet_small"),
])
def test_a_checkpoint_config_with_bad_numbers_is_refused_before_building(kwargs, words) -> None:
    with pytest.raises(ValueError, match=words):
        ModelConfig.tiny(contrastive_arch='resnet_small', contrastive_kwargs=kwargs)


def test_the_small_resnet_survives_a_checkpoint_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(0)
    encoder = ContrastiveEncoder(ModelConfig.tiny(**SMALL)).eval()
    path = tmp_path / 'ec.safetensors'
    save_contrastive_encoder(path, encoder)
    loaded = load_checkpoint(path, kind='contrastive_encoder')
    assert loaded.config.contrastive_arch == 'resnet_small'
    loaded = loaded.model.eval()
    images = torch.randn(4, 3, 64, 64)
    modality = torch.tensor([VISUAL, VISUAL, TACTILE, TACTILE])
    with torch.no_grad():
        assert torch.equal(loaded.projection_embed(images, modality),
                           encoder.projection_embed(images, modality))
