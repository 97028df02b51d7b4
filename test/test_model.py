"""ConViTac model: config, shapes for every switch, gradients, frozen E^c, attention, DINO init."""

import itertools
import json

import pytest
from safetensors.torch import save_file
import timm
import torch

from convitac_ros.model import ContrastiveEncoder, ConViTac, ModelConfig
from convitac_ros.model.config import CONDITIONS, FUSIONS, MODALITIES
from convitac_ros.model.dino import load_dino_weights

torch.set_num_threads(1)


def make_inputs(config, batch=2, seed=0):
    generator = torch.Generator().manual_seed(seed)
    size = config.image_size
    visual = torch.randn(batch, config.visual_len, 3, size, size, generator=generator)
    tactile = torch.randn(batch, config.num_tactile * config.tactile_len, 3, size, size,
                          generator=generator)
    return visual, tactile


def test_config_round_trips_through_json():
    config = ModelConfig.tiny(num_tactile=2, fusion='concat', heads=(('grasp_success', 2),))
    restored = ModelConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert restored == config
    assert restored.visual_kwargs == config.visual_kwargs


def test_config_accepts_dicts_for_heads_and_backbone_arguments():
    config = ModelConfig.tiny(heads={'hardness': 2, 'roughness': 2}, visual_kwargs={'depth': 1})
    assert config.heads == (('hardness', 2), ('roughness', 2))
    assert config == ModelConfig.tiny(heads=(('hardness', 2), ('roughness', 2)),
                                      visual_kwargs=(('depth', 1),))


def test_config_from_dict_rejects_unknown_keys():
    data = ModelConfig.tiny().to_dict()
    data['wings'] = 2
    with pytest.raises(ValueError, match='unknown ModelConfig keys.*wings'):
        ModelConfig.from_dict(data)


@pytest.mark.parametrize('change, message', [
    ({'fusion': 'sum'}, 'fusion'),
    ({'modalities': 'smell'}, 'modalities'),
    ({'condition': 'global'}, 'condition'),
    ({'num_pooled_tokens': 15}, 'square'),
    ({'dim': 30, 'num_heads': 4}, 'divisible'),
    ({'visual_len': 0}, 'visual_len'),
    ({'image_size': 64.0}, 'image_size'),
    ({'dropout': 1.0}, 'dropout'),
    ({'heads': ()}, 'at least one'),
    ({'heads': (('material', 1),)}, 'num_classes'),
    ({'heads': (('a', 2), ('a', 3))}, 'duplicate'),
])
def test_config_rejects_bad_values_with_a_reason(change, message):
    with pytest.raises(ValueError, match=message):
        ModelConfig.tiny(**change)


def test_paper_preset_is_dino_vit_s16_at_224_with_16_tokens():
    config = ModelConfig.paper()
    assert (config.contrastive_arch, config.image_size) == ('vit_small_patch16_224', 224)
    assert config.num_pooled_tokens == 16
    assert (config.fusion, config.condition, config.modalities) == ('cec', 'embedding', 'both')


@pytest.mark.parametrize('fusion, modalities, condition',
                         list(itertools.product(FUSIONS, MODALITIES, CONDITIONS)))
def test_forward_gives_finite_logits_per_head_for_every_switch(fusion, modalities, condition):
    config = ModelConfig.tiny(fusion=fusion, modalities=modalities, condition=condition,
                              num_tactile=2, heads=(('material', 5), ('hardness', 2)))
    model = ConViTac(config).eval()
    logits = model(*make_inputs(config, batch=3))
    assert list(logits) == ['material', 'hardness']
    assert logits['material'].shape == (3, 5) and logits['hardness'].shape == (3, 2)
    assert all(torch.isfinite(value).all() for value in logits.values())
    assert (model.contrastive_encoder is not None) == (fusion == 'cec')


def test_forward_rejects_wrongly_shaped_input():
    config = ModelConfig.tiny()
    visual, tactile = make_inputs(config)
    with pytest.raises(ValueError, match='tactile must be'):
        ConViTac(config)(visual, tactile[:, :1])


def test_vision_only_model_ignores_the_tactile_input():
    config = ModelConfig.tiny(modalities='vision')
    model = ConViTac(config).eval()
    visual, tactile = make_inputs(config)
    with_touch, without = model(visual, tactile), model(visual, None)
    assert torch.equal(with_touch['material'], without['material'])
    assert model.tactile_encoder is None


@pytest.mark.parametrize('fusion, modalities, condition',
                         list(itertools.product(FUSIONS, MODALITIES, CONDITIONS)))
def test_backward_reaches_every_trainable_parameter(fusion, modalities, condition):
    # DistributedDataParallel needs every trainable parameter to get a gradient.
    config = ModelConfig.tiny(fusion=fusion, modalities=modalities, condition=condition,
                              num_tactile=2)
    model = ConViTac(config).train()
    logits = model(*make_inputs(config))
    sum(value.logsumexp(dim=1).sum() for value in logits.values()).backward()
    for name, parameter in model.named_parameters():
        if name.startswith('contrastive_encoder.'):
            assert parameter.grad is None, name
        else:
            assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), name


def test_contrastive_encoder_is_bit_identical_after_stage_two_steps():
    config = ModelConfig.tiny()
    model = ConViTac(config).train()
    before = {k: v.clone() for k, v in model.contrastive_encoder.state_dict().items()}
    fusion_before = model.fusion.query_embed.detach().clone()
    # Even an optimiser handed every parameter (with weight decay) must not move E^c.
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    for seed in range(3):
        optimizer.zero_grad()
        logits = model(*make_inputs(config, seed=seed))
        torch.nn.functional.cross_entropy(logits['material'], torch.tensor([1, 2])).backward()
        optimizer.step()
    after = model.contrastive_encoder.state_dict()
    assert all(torch.equal(before[key], after[key]) for key in before)
    assert not torch.equal(fusion_before, model.fusion.query_embed)
    assert all(not p.requires_grad for p in model.contrastive_encoder.parameters())
    trainable = set(map(id, model.trainable_parameters()))
    assert not trainable & set(map(id, model.contrastive_encoder.parameters()))


def test_contrastive_encoder_stays_in_eval_mode_and_runs_without_grad():
    config = ModelConfig.tiny()
    model = ConViTac(config).train()
    assert model.training and model.visual_encoder.training
    assert not model.contrastive_encoder.training
    outputs = []
    model.contrastive_encoder.register_forward_hook(lambda *args: outputs.append(args[2]))
    model(*make_inputs(config))
    assert not outputs[0].requires_grad


def test_contrastive_encoder_runs_once_on_latest_visual_and_tactile_frames():
    config = ModelConfig.tiny(num_tactile=2, tactile_len=3)
    model = ConViTac(config).eval()
    calls = []
    model.contrastive_encoder.register_forward_hook(lambda module, args, out: calls.append(args))
    visual, tactile = make_inputs(config, batch=2)
    model(visual, tactile)
    assert len(calls) == 1
    images = calls[0][0].reshape(2, 3, 3, config.image_size, config.image_size)
    assert torch.equal(images[:, 0], visual[:, -1])
    # Gel frames reach E^c's backbone high-passed (ModelConfig.tactile_highpass).
    high_pass = model.contrastive_encoder.tactile_filter
    assert torch.allclose(images[:, 1], high_pass(tactile[:, 2]))  # sensor 0, latest of 3
    assert torch.allclose(images[:, 2], high_pass(tactile[:, 5]))  # sensor 1, latest of 3


@pytest.mark.parametrize('condition', CONDITIONS)
def test_condition_changes_the_output(condition):
    config = ModelConfig.tiny(condition=condition)
    model = ConViTac(config).eval()
    if model.condition_gate is not None:  # open the gate (zero at initialisation)
        torch.nn.init.ones_(model.condition_gate.gate)
    inputs = make_inputs(config)
    before = model(*inputs)['material']
    with torch.no_grad():
        model.contrastive_encoder.tokenizer.proj.bias.add_(torch.randn(config.dim))
    assert not torch.allclose(before, model(*inputs)['material'])


def test_contrastive_encoder_gives_p_tokens_and_projection_embeddings():
    config = ModelConfig.tiny()
    encoder = ContrastiveEncoder(config)
    images = torch.randn(5, 3, config.image_size, config.image_size)
    assert encoder(images).shape == (5, config.num_pooled_tokens, config.dim)
    modality = torch.tensor([0, 0, 1, 1, 1])
    assert encoder.projection_embed(images, modality).shape == (5, config.projection_dim)


@pytest.mark.parametrize('modalities', MODALITIES)
def test_cec_at_initialisation_equals_the_cross_attention_baseline(modalities):
    # The same weights everywhere they exist in both: the gated condition adds exactly zero,
    # whatever E^c says, and the gate still gets a gradient, so training can open it.
    baseline = ConViTac(ModelConfig.tiny(fusion='cross_attention', modalities=modalities,
                                         num_tactile=2)).eval()
    config = ModelConfig.tiny(fusion='cec', modalities=modalities, num_tactile=2)
    model = ConViTac(config).eval()
    missing, unexpected = model.load_state_dict(baseline.state_dict(), strict=False)
    assert not unexpected
    assert {key.split('.')[0] for key in missing} == {'contrastive_encoder', 'condition_gate'}
    inputs = make_inputs(config, batch=3)
    with torch.no_grad():
        expected = baseline(*inputs)
    logits = model(*inputs)
    for head, value in expected.items():
        assert torch.equal(logits[head], value), head
    logits['material'].logsumexp(dim=1).sum().backward()
    assert model.condition_gate.gate.grad.abs().sum() > 0


@pytest.mark.parametrize('fusion', ['cec', 'cross_attention'])
def test_attention_path_matches_fused_kernel_and_gives_unit_maps(fusion):
    config = ModelConfig.tiny(fusion=fusion, num_tactile=2, num_blocks=2)
    model = ConViTac(config).eval()
    inputs = make_inputs(config)
    logits, maps = model.forward_with_attention(*inputs)
    torch.testing.assert_close(logits['material'], model(*inputs)['material'])
    grid = config.feature_grid
    assert maps.visual.shape == (2, config.visual_len, grid, grid)
    assert maps.tactile.shape == (2, 2, config.tactile_len, grid, grid)
    for frames in (maps.visual.flatten(0, -3), maps.tactile.flatten(0, -3)):
        assert frames.min() >= 0
        torch.testing.assert_close(frames.amax(dim=(1, 2)), torch.ones(len(frames)))


@pytest.mark.parametrize('change', [{'fusion': 'concat'}, {'condition': 'pooled'}])
def test_attention_maps_are_none_without_token_attention(change):
    config = ModelConfig.tiny(**change)
    assert ConViTac(config).eval().forward_with_attention(*make_inputs(config))[1] is None


def _dino_style_state(encoder):
    """Build a DINO training checkpoint layout: teacher weights, DDP + backbone prefixes, head."""
    state = {f'module.backbone.{k}': torch.randn_like(v)
             for k, v in encoder.backbone.state_dict().items()}
    state['module.head.mlp.0.weight'] = torch.randn(4, 4)
    return {'teacher': state, 'student': {}}


def test_load_dino_weights_maps_keys_from_a_pth_training_checkpoint(tmp_path):
    encoder = ContrastiveEncoder(ModelConfig.tiny())
    state = _dino_style_state(encoder)
    torch.save(state, tmp_path / 'dino.pth')
    load_dino_weights(encoder, tmp_path / 'dino.pth')
    loaded = encoder.backbone.state_dict()
    assert all(torch.equal(loaded[k[len('module.backbone.'):]], v)
               for k, v in state['teacher'].items() if 'backbone' in k)


def test_load_dino_weights_resamples_position_embedding_from_safetensors(tmp_path):
    kwargs = dict(ModelConfig.tiny().contrastive_kwargs)
    source = timm.create_model('vit_small_patch16_224', pretrained=False, num_classes=0,
                               img_size=32, **kwargs)
    save_file({k: v.contiguous() for k, v in source.state_dict().items()},
              str(tmp_path / 'dino.safetensors'))
    encoder = ContrastiveEncoder(ModelConfig.tiny())
    load_dino_weights(encoder, tmp_path / 'dino.safetensors')
    assert torch.equal(encoder.backbone.blocks[0].attn.qkv.weight,
                       source.blocks[0].attn.qkv.weight)


def test_load_dino_weights_reports_missing_and_unexpected_keys(tmp_path):
    encoder = ContrastiveEncoder(ModelConfig.tiny())
    state = {k: v for k, v in encoder.backbone.state_dict().items() if k != 'norm.weight'}
    state['extra.weight'] = torch.zeros(1)
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / 'bad.safetensors'))
    with pytest.raises(ValueError, match=r'bad.safetensors.*1 missing keys \(norm.weight\)'
                                         r'.*1 unexpected \(extra.weight\)'):
        load_dino_weights(encoder, tmp_path / 'bad.safetensors')
    with pytest.raises(FileNotFoundError, match='nothing.pth'):
        load_dino_weights(encoder, tmp_path / 'nothing.pth')
