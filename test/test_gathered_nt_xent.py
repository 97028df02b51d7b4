"""NT-Xent over two CPU processes (gloo) equals the single-process loss on the whole batch."""

from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from convitac_ros.model import nt_xent_loss
from training.pretrain import gathered_nt_xent

WORLD, HALF, DIM, TAU = 2, 3, 5, 0.2


def _full_batch() -> torch.Tensor:
    """The global batch in the single-process layout: all visual rows, then all tactile rows."""
    return torch.randn(2 * WORLD * HALF, DIM, generator=torch.Generator().manual_seed(0))


def _shard(full: torch.Tensor, rank: int) -> torch.Tensor:
    """What rank `rank` holds: its own visual rows, then its own tactile rows."""
    visual, tactile = full.chunk(2)
    rows = slice(rank * HALF, (rank + 1) * HALF)
    return torch.cat([visual[rows], tactile[rows]])


def _worker(rank: int, store: str, out: str) -> None:
    dist.init_process_group('gloo', init_method=f'file://{store}', rank=rank,
                            world_size=WORLD)
    try:
        local = _shard(_full_batch(), rank).requires_grad_(True)
        loss = gathered_nt_xent(local, TAU)
        loss.backward()
        torch.save({'loss': loss.detach(), 'grad': local.grad}, f'{out}/rank{rank}.pt')
    finally:
        dist.destroy_process_group()


def test_gathered_loss_and_gradients_equal_the_single_process_batch(tmp_path: Path) -> None:
    mp.spawn(_worker, args=(str(tmp_path / 'store'), str(tmp_path)), nprocs=WORLD, join=True)
    full = _full_batch().requires_grad_(True)
    expected = nt_xent_loss(full, TAU)
    expected.backward()
    for rank in range(WORLD):
        result = torch.load(tmp_path / f'rank{rank}.pt', weights_only=True)
        torch.testing.assert_close(result['loss'], expected.detach())
        # Each rank's rows get WORLD x the gradient; DDP's mean over ranks restores it.
        torch.testing.assert_close(result['grad'] / WORLD, _shard(full.grad, rank))


def test_a_world_of_one_is_the_plain_loss() -> None:
    embeddings = _full_batch()
    assert torch.equal(gathered_nt_xent(embeddings, TAU), nt_xent_loss(embeddings, TAU))
