"""Device choice and the optional torchrun / DistributedDataParallel context.

A plain ``python training/train.py`` run is a world of one and never touches
``torch.distributed``; ``torchrun --nproc_per_node N training/train.py ...`` sets ``WORLD_SIZE``
and friends, and then every rank trains on its shard and only rank 0 logs and saves.
"""

from __future__ import annotations

from dataclasses import dataclass
import os

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistContext:
    """Where this process runs and which part of the world it is."""

    device: torch.device
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that logs, writes checkpoints and shows progress bars."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """Whether a process group is in use."""
        return self.world_size > 1

    def barrier(self) -> None:
        """Waits for every rank (no-op in a world of one)."""
        if self.distributed:
            dist.barrier()

    def all_agree(self, flag: bool) -> bool:
        """True only when ``flag`` is true on every rank."""
        if not self.distributed:
            return flag
        value = torch.tensor(1 if flag else 0, device=self.device)
        dist.all_reduce(value, op=dist.ReduceOp.MIN)
        return bool(value.item())

    def sum_floats(self, values: list[float]) -> list[float]:
        """Sums a list of floats over all ranks."""
        if not self.distributed:
            return list(values)
        tensor = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor.tolist()


def gather_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    """Every rank's ``tensor`` concatenated along dim 0 in rank order, gradients kept.

    The backward pass sums, for each rank's own rows, the gradients that every rank's copy
    received (``torch.distributed.nn.functional.all_gather``). When every rank computes the same
    loss of the gathered rows, each rank's rows thus get ``world_size`` times the gradient of
    that loss, and DistributedDataParallel's averaging over ranks gives exactly the gradient of
    the global loss. A world of one returns ``tensor`` itself.

    Args:
        tensor: ``(N, ...)``, the same shape on every rank.

    Returns:
        ``(world_size * N, ...)``.
    """
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return tensor
    from torch.distributed.nn.functional import all_gather  # loads the autograd functions
    return torch.cat(all_gather(tensor), dim=0)


def launched_as_main() -> bool:
    """Whether this process is rank 0 of a torchrun launch (or not launched by torchrun)."""
    return int(os.environ.get('RANK', '0')) == 0


def pick_device(preference: str, local_rank: int = 0) -> torch.device:
    """Resolves ``auto | cpu | cuda | cuda:N`` (CUDA without a GPU is an error, not a fallback).

    Raises:
        ValueError: For an unknown preference or CUDA on a machine without it.
    """
    kind, colon, index = preference.partition(':')
    if kind not in ('auto', 'cpu', 'cuda') or (colon and (kind != 'cuda' or not index.isdigit())):
        raise ValueError(f'device must be auto, cpu or cuda, got {preference!r}')
    if kind == 'cuda' and not torch.cuda.is_available():
        raise ValueError(f'device={preference} requested but CUDA is not available')
    if kind == 'cpu' or not torch.cuda.is_available():
        return torch.device('cpu')
    return torch.device('cuda', int(index) if index else local_rank)


def init_distributed(preference: str) -> DistContext:
    """Joins the torchrun process group when ``WORLD_SIZE > 1``; otherwise a world of one."""
    world_size = int(os.environ.get('WORLD_SIZE', '1'))
    local_rank = int(os.environ.get('LOCAL_RANK', '0'))
    device = pick_device(preference, local_rank)
    if world_size <= 1:
        return DistContext(device=device)
    if device.type == 'cuda':
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend='nccl' if device.type == 'cuda' else 'gloo')
    return DistContext(device=device, rank=dist.get_rank(), world_size=world_size,
                       local_rank=local_rank)


def shutdown_distributed(context: DistContext) -> None:
    """Leaves the process group if this process joined one."""
    if context.distributed and dist.is_initialized():
        dist.destroy_process_group()
