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

torch.set_num_threads(2)


def test_simclr_crop_always_keeps_the_central_contact_area() -> None:
    augment, rng = FrameAugmentation.simclr(), np.random.default_rng(0)
    for _ in range(2000):
        top, left, height, width = augment.sample_crop(rng)
        assert top <= 0.4 and top + height >= 0.6
        assert left <= 0.4 and left + width >= 0.6
    assert augment.grayscale == 0.0 and max(augment.brightness, augment.saturation) <= 0.2


def test_projection_head_centres_on_the_batch_in_training_and_embeds_alone_in_eval() -> None:
    torch.manual_seed(0)
    encoder = ContrastiveEncoder(ModelConfig.tiny()).train()
    # Inputs sharing a large common component, like a batch of nearly identical gel images.
    images = 3.0 + torch.randn(8, 3, 64, 64)
    head = encoder.projection_head
    with torch.no_grad():
        for _ in range(30):  # running statistics converge to those of this batch
            encoder.projection_embed(images)
        tokens = encoder(images)
        weights = torch.softmax(encoder.pool_score(tokens), dim=1)
        hidden = head.norm(head[0]((weights * tokens).sum(dim=1)))
        assert hidden.mean(dim=0).abs().max() < 1e-4
        assert hidden.std(dim=0, unbiased=False).min() > 0.5
        encoder.eval()
        together = encoder.projection_embed(images)
        alone = torch.cat([encoder.projection_embed(image[None]) for image in images])
    torch.testing.assert_close(together, alone, rtol=1e-4, atol=1e-5)
