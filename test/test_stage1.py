"""Stage 1 (SimCLR on visual-tactile pairs): the two causes of the collapse to log(2B - 1).

Measured on the demo world (tiny model, batch 32, 10 epochs): with a plain Linear-ReLU-Linear
projection head every embedding converged to one direction (mean cosine 0.999, zero gradient,
validation loss exactly log(2B - 1)), and the image-only SimCLR augmentation (crops down to a
fifth of the frame, strong colour jitter, grayscale) removed the cues that link the camera to
the gel.
"""

from __future__ import annotations

import numpy as np
import torch

from convitac_ros.data.transforms import FrameAugmentation
from convitac_ros.model import ContrastiveEncoder, ModelConfig
from convitac_ros.model.contrastive import TACTILE, VISUAL

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
