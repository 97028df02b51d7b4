"""Stage 1 with two views of each sample (``stage1.views``) and the within-modality term."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from convitac_ros.data.transforms import FrameAugmentation
from convitac_ros.model import ContrastiveEncoder, ModelConfig, nt_xent_loss
from training.data import BatchCollator
from training.distributed import DistContext
from training.pretrain import ContrastiveTask, SimCLRModel
from training.train_config import ConfigError, load_config

torch.set_num_threads(2)


@pytest.mark.parametrize('overrides, words', [
    (['stage1.views=3'], 'views must be 1 or 2'),
    (['stage1.intra_weight=1'], 'needs views: 2'),
    (['stage1.views=2', 'stage1.intra_weight=-1'], 'intra_weight must be in'),
    (['stage1.views=2', 'stage1.augment=false'], 'needs augment: true'),
])
def test_a_views_setting_that_cannot_work_is_one_clear_error(overrides, words) -> None:
    with pytest.raises(ConfigError, match=words):
        load_config('demo', overrides)


class _Sample:

    def __init__(self, seed: int) -> None:
        rng = np.random.default_rng(seed)
        self.visual = [rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)]
        self.tactile = [[rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)]]


def test_two_views_are_two_augmentations_of_the_same_pairs_and_repeat_per_seed() -> None:
    augment = FrameAugmentation.simclr()
    items = [(_Sample(i), 1234) for i in range(4)]
    collate = BatchCollator(32, (0.5,) * 3, (0.25,) * 3, augment, pairs=True, views=2)
    first, second = collate(items)
    assert first[0].shape == second[0].shape == (4, 3, 32, 32)
    assert not torch.equal(first[0], second[0]) and not torch.equal(first[1], second[1])
    again = collate(items)
    assert all(torch.equal(a, b) for view, other in zip((first, second), again)
               for a, b in zip(view, other))
    # view 1 is exactly the one-view batch: views=1 runs are unchanged
    single = BatchCollator(32, (0.5,) * 3, (0.25,) * 3, augment, pairs=True)(items)
    assert torch.equal(single[0], first[0]) and torch.equal(single[1], first[1])
    with pytest.raises(ValueError, match='augmented'):
        BatchCollator(32, (0.5,) * 3, (0.25,) * 3, None, pairs=True, views=2)


def _task(overrides: list[str]) -> ContrastiveTask:
    return ContrastiveTask(load_config('demo', overrides), None,
                           DistContext(device=torch.device('cpu')))


def test_two_view_loss_is_the_mean_cross_loss_plus_the_weighted_within_modality_loss() -> None:
    torch.manual_seed(0)
    model = SimCLRModel(ContrastiveEncoder(ModelConfig.tiny())).eval()  # per-image embeddings
    v1, t1, v2, t2 = (torch.randn(6, 3, 64, 64) for _ in range(4))
    with torch.no_grad():
        one = _task([])
        cross = (one.loss(model, (v1, t1))[0] + one.loss(model, (v2, t2))[0]) / 2
        two = _task(['stage1.views=2']).loss(model, ((v1, t1), (v2, t2)))[0]
        assert torch.allclose(two, cross, atol=1e-5)
        cam = model(torch.cat([v1, v2]), torch.cat([t1, t2]))
        cam_1, cam_2, gel_1, gel_2 = cam.chunk(4)
        intra = (nt_xent_loss(torch.cat([cam_1, cam_2]), 0.1)
                 + nt_xent_loss(torch.cat([gel_1, gel_2]), 0.1)) / 2
        loss, logs = _task(['stage1.views=2', 'stage1.intra_weight=0.5']).loss(
            model, ((v1, t1), (v2, t2)))
        assert torch.allclose(loss, cross + 0.5 * intra, atol=1e-5)
        assert logs['intra_loss'] == pytest.approx(float(intra), abs=1e-5)
