"""Stage 1 (SimCLR on visual-tactile pairs): the two causes of the collapse to log(2B - 1).

Measured on the demo world (tiny model, batch 32, 10 epochs): with a plain Linear-ReLU-Linear
projection head every embedding converged to one direction (mean cosine 0.999, zero gradient,
validation loss exactly log(2B - 1)), and the image-only SimCLR augmentation (crops down to a
fifth of the frame, strong colour jitter, grayscale) removed the cues that link the camera to
the gel.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from convitac_ros.checkpoint import (
    CheckpointError,
    load_checkpoint,
    load_contrastive_encoder,
    read_metadata,
    save_contrastive_encoder,
)
from convitac_ros.data.transforms import FrameAugmentation
from convitac_ros.model import ContrastiveEncoder, ConViTac, ModelConfig
from convitac_ros.model.config import LEGACY_PROJECTION_HEAD, PROJECTION_HEADS
from convitac_ros.model.contrastive import TACTILE, VISUAL

DEFAULT_HEAD = 'linear'

torch.set_num_threads(2)


def test_simclr_crop_always_keeps_the_central_contact_area() -> None:
    augment, rng = FrameAugmentation.simclr(), np.random.default_rng(0)
    for _ in range(2000):
        top, left, height, width = augment.sample_crop(rng)
        assert top <= 0.4 and top + height >= 0.6
        assert left <= 0.4 and left + width >= 0.6
    assert augment.grayscale == 0.0 and max(augment.brightness, augment.saturation) <= 0.2
    assert augment.hflip == 0.0  # a flip of one modality would mirror the shared texture


def test_projection_head_centres_each_modality_in_training_and_embeds_alone_in_eval() -> None:
    torch.manual_seed(0)
    encoder = ContrastiveEncoder(ModelConfig.tiny()).train()
    # Two modalities with very different common components, like camera and gel images.
    images = torch.cat([3.0 + torch.randn(8, 3, 64, 64), -2.0 + 0.5 * torch.randn(8, 3, 64, 64)])
    modality = torch.tensor([VISUAL] * 8 + [TACTILE] * 8)
    head = encoder.projection_head
    with torch.no_grad():
        for _ in range(30):  # running statistics converge to those of this batch
            encoder.projection_embed(images, modality)
        tokens = encoder(images)
        weights = torch.softmax(encoder.pool_score(tokens), dim=1)
        hidden = head.linear((weights * tokens).sum(dim=1))
        for index, norm in enumerate(head.norms):
            normalised = norm(hidden[modality == index])
            assert normalised.mean(dim=0).abs().max() < 1e-4
            assert normalised.std(dim=0, unbiased=False).min() > 0.5
        encoder.eval()
        together = encoder.projection_embed(images, modality)
        alone = torch.cat([encoder.projection_embed(image[None], kind[None])
                           for image, kind in zip(images, modality)])
    torch.testing.assert_close(together, alone, rtol=1e-4, atol=1e-5)


# ----------------------------------------------------------------------- projection head forms
DEMO = Path(__file__).resolve().parents[1] / 'models' / 'convitac_demo.safetensors'


def test_new_models_get_the_new_head_and_a_config_without_the_field_gets_the_legacy_head() -> None:
    assert ModelConfig().projection_head == DEFAULT_HEAD == ModelConfig.tiny().projection_head
    saved = ModelConfig.tiny().to_dict()
    assert ModelConfig.from_dict(saved).projection_head == DEFAULT_HEAD  # round trip keeps it
    del saved['projection_head']
    assert ModelConfig.from_dict(saved).projection_head == LEGACY_PROJECTION_HEAD == 'relu'
    with pytest.raises(ValueError, match='projection_head'):
        ModelConfig.tiny(projection_head='tanh')


def test_the_committed_demo_checkpoint_keeps_its_relu_head_and_its_exact_outputs() -> None:
    loaded = load_checkpoint(DEMO)
    assert 'projection_head' not in read_metadata(DEMO)['model_config']
    assert loaded.config.projection_head == 'relu'
    encoder = loaded.model.contrastive_encoder
    head = encoder.projection_head
    assert head.output is None
    torch.manual_seed(0)
    images = torch.randn(6, 3, 64, 64)
    modality = torch.tensor([VISUAL] * 3 + [TACTILE] * 3)
    with torch.no_grad():
        tokens = encoder(images)
        pooled = (torch.softmax(encoder.pool_score(tokens), dim=1) * tokens).sum(dim=1)
        hidden = head.linear(pooled)
        # The head as it was before the field existed: Linear, per-modality BatchNorm, ReLU.
        expected = torch.cat([torch.relu(head.norms[int(kind)](row[None]))
                              for row, kind in zip(hidden, modality)])
        embedded = encoder.projection_embed(images, modality)
    assert torch.equal(embedded, expected) and bool((embedded >= 0).all())


@pytest.mark.parametrize('kind', PROJECTION_HEADS)
def test_every_head_form_survives_a_checkpoint_round_trip(kind: str, tmp_path: Path) -> None:
    encoder = ContrastiveEncoder(ModelConfig.tiny(projection_head=kind)).eval()
    path = tmp_path / 'encoder.safetensors'
    save_contrastive_encoder(path, encoder)
    loaded = load_checkpoint(path, kind='contrastive_encoder')
    assert loaded.config.projection_head == kind
    images, modality = torch.randn(4, 3, 64, 64), torch.tensor([VISUAL, VISUAL, TACTILE, TACTILE])
    with torch.no_grad():
        embedded = encoder.projection_embed(images, modality)
        assert torch.equal(loaded.model.projection_embed(images, modality), embedded)
    assert bool((embedded < 0).any()) == (kind != 'relu')  # only the legacy head is >= 0


def test_an_encoder_with_another_head_is_refused_by_a_model_naming_the_field(
        tmp_path: Path) -> None:
    path = tmp_path / 'encoder.safetensors'
    save_contrastive_encoder(path, ContrastiveEncoder(ModelConfig.tiny(projection_head='relu')))
    with pytest.raises(CheckpointError, match='projection_head'):
        load_contrastive_encoder(path, ConViTac(ModelConfig.tiny()))


def test_stage2_draws_only_transforms_stage1_trained_the_frozen_encoder_on() -> None:
    # The condition is E^c's embedding of the latest augmented frame of each stream.
    stage1, stage2 = FrameAugmentation.simclr(), FrameAugmentation.light()
    assert stage2.hflip == 0.0 and stage1.covers(stage2)
    assert not stage1.covers(FrameAugmentation(hflip=0.5))  # the old stage-2 flip


@pytest.mark.parametrize('crop_min, jitter', [(0.05, 0.1), (0.4, 0.3), (0.8, 0.99)])
def test_every_stage1_strength_the_config_accepts_covers_stage2(crop_min, jitter) -> None:
    from training.train_config import load_config

    stage1 = load_config('demo', [f'stage1.crop_min={crop_min}', f'stage1.jitter={jitter}']).stage1
    augment = FrameAugmentation.simclr(stage1.crop_min, stage1.jitter)
    assert augment.crop_scale == (crop_min, 1.0) and augment.brightness == jitter
    assert augment.covers(FrameAugmentation.light())


@pytest.mark.parametrize('override', ['stage1.crop_min=0.9', 'stage1.crop_min=0',
                                      'stage1.jitter=0.05', 'stage1.jitter=1.5'])
def test_a_stage1_strength_stage2_would_leave_is_one_clear_error(override) -> None:
    from training.train_config import ConfigError, load_config

    with pytest.raises(ConfigError, match=override.split('.')[1].split('=')[0]):
        load_config('demo', [override])


def test_ablation_table_pairs_each_variant_with_the_default_by_seed():
    """The per-cause table lists every seed and the paired difference to the default."""
    from training.stage1_ablation import table

    def record(top1: float) -> dict:
        return {'test_top1': top1, 'chance_top1': 1 / 32, 'curve': [0.05, 0.2, 0.1],
                'epochs': 12, 'seconds': 90.0}

    results = {'world_a': {
        'default': {'0': record(0.30), '1': record(0.20), '2': record(0.10)},
        'cause': {'0': record(0.05), '2': record(0.15)},  # seed 1 not run
    }}
    rows = {line.split(' | ')[1]: line.split(' | ') for line in table(results).splitlines()[2:]}
    assert rows['default'][3] == '30.0 / 20.0 / 10.0'
    assert rows['default'][4] == '20.0 [10.0, 30.0]'
    assert rows['default'][6] == '2/3'  # 30 % and 20 % are >= 5 x 3.125 %, 10 % is not
    assert rows['default'][7] == '-'
    # paired on the seeds both have: 5 - 30 = -25, 15 - 10 = +5
    assert rows['cause'][7] == '-10.0 [-25.0, +5.0] (n=2)'
    assert rows['cause'][2] == '0, 2'


def test_ablation_refuses_a_mistyped_reference_before_training(tmp_path, capsys):
    from training.stage1_ablation import main

    with pytest.raises(SystemExit) as exit_info:
        main(['--work-dir', str(tmp_path / 'runs'), '--world', 'w=data/none',
              '--variant', 'default=', '--variant', 'cross=stage1.negatives=cross',
              '--reference', 'defualt'])
    assert exit_info.value.code == 2
    assert "--reference 'defualt' is not a --variant" in capsys.readouterr().err
    assert not (tmp_path / 'runs').exists()


def test_material_only_reference_is_one_over_the_label_count_in_the_batch():
    """What aligning only the label would score: exact where every batching is the same."""
    import numpy as np

    from training.retrieval import label_only_top1

    assert label_only_top1(np.arange(64)) == 1.0  # every pair its own label
    assert label_only_top1(np.zeros(64, dtype=int)) == 1 / 32  # one label: chance
    # B = N = 6: every batching is the whole set; labels 3 / 2 / 1 frames
    assert np.isclose(label_only_top1(np.array([0, 0, 0, 1, 1, 2]), batch_size=6),
                      (3 * (1 / 3) + 2 * (1 / 2) + 1) / 6)
