"""NT-Xent (paper eq. 2-3) against a naive loop written from the formula and its closed form."""

import math

from hypothesis import given, settings
from hypothesis import strategies as st
import pytest
import torch

from convitac_ros.model import nt_xent_loss


def naive_nt_xent(embeddings: torch.Tensor, temperature: float) -> float:
    """Eq. 2-3 literally: cosine similarity / tau, positive i <-> i+B, mean over 2B anchors."""
    rows = [e / e.norm() for e in embeddings.double()]
    count = len(rows)
    half = count // 2
    total = 0.0
    for i in range(count):
        positive = (i + half) % count
        similarity = [float(rows[i] @ rows[j]) / temperature for j in range(count)]
        denominator = sum(math.exp(similarity[j]) for j in range(count) if j != i)
        total += -math.log(math.exp(similarity[positive]) / denominator)
    return total / count


@settings(max_examples=25, deadline=None)
@given(half=st.integers(1, 6), dim=st.integers(2, 12), temperature=st.floats(0.05, 2.0),
       seed=st.integers(0, 10_000))
def test_nt_xent_equals_naive_loop_from_the_paper(half, dim, temperature, seed):
    embeddings = torch.randn(2 * half, dim, generator=torch.Generator().manual_seed(seed))
    loss = nt_xent_loss(embeddings, temperature)
    assert loss.item() == pytest.approx(naive_nt_xent(embeddings, temperature), rel=1e-4)


@pytest.mark.parametrize('half', [1, 2, 8, 33])
def test_nt_xent_of_identical_embeddings_is_log_2b_minus_1(half):
    embeddings = torch.ones(2 * half, 5)
    assert nt_xent_loss(embeddings, 0.1).item() == pytest.approx(math.log(2 * half - 1), abs=1e-5)


def test_nt_xent_is_low_for_aligned_pairs_and_high_for_swapped_ones():
    visual = torch.eye(4)
    aligned = nt_xent_loss(torch.cat([visual, visual]), 0.1)
    swapped = nt_xent_loss(torch.cat([visual, visual.flip(0)]), 0.1)
    assert aligned.item() < 1e-3
    assert swapped.item() > 5.0


def test_nt_xent_gradient_is_finite():
    embeddings = torch.randn(8, 16, requires_grad=True)
    nt_xent_loss(embeddings, 0.07).backward()
    assert torch.isfinite(embeddings.grad).all()
    assert embeddings.grad.abs().sum() > 0


@pytest.mark.parametrize('temperature', [0.0, -0.5, float('nan'), float('inf'), '0.1', None])
def test_nt_xent_rejects_bad_temperature(temperature):
    with pytest.raises(ValueError, match='temperature'):
        nt_xent_loss(torch.randn(4, 3), temperature)


@pytest.mark.parametrize('shape', [(3, 4), (0, 4), (4,), (2, 2, 2)])
def test_nt_xent_rejects_bad_shapes(shape):
    with pytest.raises(ValueError, match='2B'):
        nt_xent_loss(torch.randn(*shape), 0.1)


def naive_cross_modal(embeddings: torch.Tensor, temperature: float) -> float:
    """The symmetric cross-modal (CLIP) loss: each anchor against the other modality's rows."""
    unit = torch.nn.functional.normalize(embeddings.double(), dim=1)
    half = len(unit) // 2
    logits = unit[:half] @ unit[half:].T / temperature  # (B, B) camera x touch
    target = torch.arange(half)
    return float((torch.nn.functional.cross_entropy(logits, target)
                  + torch.nn.functional.cross_entropy(logits.T, target)) / 2)


@pytest.mark.parametrize('half,temperature', [(1, 0.1), (4, 0.1), (7, 0.5)])
def test_cross_modal_negatives_give_the_symmetric_clip_loss(half, temperature):
    embeddings = torch.randn(2 * half, 6, generator=torch.Generator().manual_seed(half))
    loss = nt_xent_loss(embeddings, temperature, negatives='cross')
    assert loss.item() == pytest.approx(naive_cross_modal(embeddings, temperature), rel=1e-5)
    # Identical embeddings: chance among the B candidates of the other modality.
    assert nt_xent_loss(torch.ones(2 * half, 3), 0.1, 'cross').item() == pytest.approx(
        math.log(half), abs=1e-5)
    with pytest.raises(ValueError, match='negatives'):
        nt_xent_loss(embeddings, temperature, negatives='some')
