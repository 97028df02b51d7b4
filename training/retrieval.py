"""Held-out visual-to-tactile retrieval: what stage 1 is judged by.

For each camera frame of a batch of B synchronous pairs, the B tactile frames are ranked by the
cosine of their contrasted embeddings (`ContrastiveEncoder.projection_embed`); a hit is its own
tactile frame among the first k. The validation pairs come from held-out sessions or objects;
each pair is embedded once (in eval mode an embedding does not depend on its batch), and the
hit rate is the mean over `repeats` fixed, seeded shuffles of the pairs into full batches of B:
the same batches for every run, so the numbers of two runs are comparable, and averaging over
batchings removes most of the noise of one batching of a small validation set (which early
stopping would otherwise chase). Chance is k / B. No ceiling is reported: the synthetic world's
material-and-texture observer (`convitac_ros.data.synthetic.ideal_observer`) is not an upper
bound, because a touch's press depth is visible to both sensors and a model may use it.
"""

from __future__ import annotations

from collections.abc import Callable
import contextlib
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from convitac_ros.data.synthetic.ideal_observer import chance
from convitac_ros.model import nt_xent_loss
from training.data import BatchCollator

TOP_K = (1, 5)


def hits_at(visual: torch.Tensor, tactile: torch.Tensor, k: int) -> torch.Tensor:
    """Per camera row, whether its own tactile row is among the k most similar: bool (B,).

    Args:
        visual: `(B, D)` embeddings of the camera frames.
        tactile: `(B, D)` embeddings of their tactile frames (row i pairs with row i).
        k: How many ranks count.
    """
    similarity = nn.functional.normalize(visual.float(), dim=1) @ \
        nn.functional.normalize(tactile.float(), dim=1).T  # (B, B)
    own = similarity.diagonal()[:, None]
    rank = (similarity > own).sum(dim=1)  # ties count in the pair's favour
    return rank < k


def batchings(count: int, batch_size: int, seed: int, repeats: int) -> list[np.ndarray]:
    """The probe's fixed batchings of `count` pairs into full batches of `batch_size`.

    Batching r is a permutation seeded by seed + r, cut to a multiple of the batch size (the
    rest of the pairs is left out of that batching).
    """
    full = count // batch_size * batch_size
    return [np.random.default_rng(seed + r).permutation(count)[:full]
            for r in range(max(1, repeats))]


class RetrievalProbe:
    """Visual-to-tactile retrieval top-1 / top-5 beside chance.

    Args:
        dataset: The held-out pairs (each sample's latest camera and tactile frame).
        batch_size: B.
        collate: Turns samples into `(visual (B, 3, S, S), tactile (B, 3, S, S))`.
        seed: Seed of the fixed shuffle.
        root: Unused (kept for callers of earlier versions).
        num_workers: DataLoader workers.
        repeats: How many seeded batchings the hit rates average over.
    """

    def __init__(self, dataset: Dataset, batch_size: int, collate: Callable[[list[Any]], Any],
                 seed: int, root: str | Path | None = None, num_workers: int = 0,
                 repeats: int = 20) -> None:
        if len(dataset) < 2:
            raise ValueError(f'retrieval needs at least 2 held-out pairs, got {len(dataset)}')
        self.batch_size = min(batch_size, len(dataset))
        self.batchings = batchings(len(dataset), self.batch_size, seed, repeats)
        self.loader = DataLoader(dataset, batch_size=self.batch_size, shuffle=False,
                                 collate_fn=collate, num_workers=num_workers)

    @torch.no_grad()
    def __call__(self, embed: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                 device: torch.device, temperature: float,
                 context: Callable[[], Any] | None = None) -> dict[str, float]:
        """Run the probe.

        Args:
            embed: `(visual, tactile) -> (2B, D)` embeddings, visual rows first.
            device: Where to put the batches.
            temperature: tau of the reported NT-Xent.
            context: Optional context-manager factory (mixed precision).

        Returns:
            `loss` (mean NT-Xent of the first batching's batches), `retrieval_top1`,
            `retrieval_top5` (means over the batchings), `chance_top1` and `chance_top5`.
        """
        return scores(*self.embeddings(embed, device, context), self.batchings,
                      self.batch_size, temperature)

    @torch.no_grad()
    def embeddings(self, embed: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                   device: torch.device, context: Callable[[], Any] | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor]:
        """Every held-out pair embedded once: visual `(N, D)`, tactile `(N, D)` (float, CPU)."""
        visual_rows, tactile_rows = [], []
        for visual, tactile in self.loader:
            visual, tactile = visual.to(device), tactile.to(device)
            with (context or contextlib.nullcontext)():
                embeddings = embed(visual, tactile).float()
            half = embeddings.shape[0] // 2
            visual_rows.append(embeddings[:half].cpu())
            tactile_rows.append(embeddings[half:].cpu())
        return torch.cat(visual_rows), torch.cat(tactile_rows)


def scores(visual_all: torch.Tensor, tactile_all: torch.Tensor, orders: list[np.ndarray],
           batch_size: int, temperature: float) -> dict[str, float]:
    """What :class:`RetrievalProbe` reports, from embedded pairs and their :func:`batchings`."""
    losses, hits = [], {k: [] for k in TOP_K}
    for index, batching in enumerate(orders):
        for start in range(0, len(batching), batch_size):
            rows = torch.as_tensor(batching[start:start + batch_size])
            visual, tactile = visual_all[rows], tactile_all[rows]
            if index == 0:
                losses.append(float(nt_xent_loss(torch.cat([visual, tactile]), temperature)))
            for k in TOP_K:
                hits[k].append(hits_at(visual, tactile, k).float())
    result = {'loss': float(np.mean(losses))}
    for k in TOP_K:
        result[f'retrieval_top{k}'] = float(torch.cat(hits[k]).mean())
        result[f'chance_top{k}'] = chance(batch_size, k)
    return result


def label_only_top1(labels: np.ndarray, batch_size: int = 32, seed: int = 0,
                    repeats: int = 20) -> float:
    """Top-1 of an embedding that knows a pair's label perfectly and nothing else.

    Within a batch such an embedding ties the true tactile frame with every other frame of the
    same label, so its expected hit rate is 1 / (frames of that label in the batch); averaged
    over the probe's own batchings (:func:`batchings`: same seeds, same full batches). A
    reference for what aligning the label alone is worth on a world, not an upper bound: camera
    and gel can share more than the label (contact position, press depth, the object's shape).

    Args:
        labels: int (N,) label of every held-out pair (e.g. material); unlabelled pairs (< 0)
            count as a class of their own.
        batch_size: B.
        seed: Seed of the first batching (as RetrievalProbe).
        repeats: How many batchings.
    """
    labels = np.asarray(labels)
    batch_size = min(batch_size, len(labels))
    rates = []
    for order in batchings(len(labels), batch_size, seed, repeats):
        for batch in labels[order].reshape(-1, batch_size):
            _, inverse, counts = np.unique(batch, return_inverse=True, return_counts=True)
            rates.append(np.mean(1.0 / counts[inverse]))
    return float(np.mean(rates))


def describe(values: dict[str, float], batch: int) -> str:
    """One line: top-1 and top-5 beside chance, in percent."""
    parts = []
    for k in TOP_K:
        parts.append(f'top-{k} {100 * values[f"retrieval_top{k}"]:.1f}% (chance '
                     f'{100 * values[f"chance_top{k}"]:.1f}%)')
    return f'held-out visual->tactile retrieval, batches of {batch}: ' + ', '.join(parts)


def checkpoint_retrieval(checkpoint: str | Path, data_root: str | Path, split: str = 'test',
                         batch_size: int = 32, seed: int = 0,
                         per_session: bool = False) -> dict[str, Any]:
    """Visual-to-tactile retrieval of a checkpoint's E^c on one split of a Touch and Go world.

    Args:
        checkpoint: A ``convitac`` (with E^c) or ``contrastive_encoder`` checkpoint.
        data_root: Dataset root in the Touch and Go layout.
        split: Which split's pairs to use (the synthetic world's test sessions are unseen).
        batch_size: B.
        seed: Seed of the fixed shuffle into batches.
        per_session: Also probe each recording session alone (batches of its own pairs, B at
            most its size): ``'sessions'`` maps each session to its top-1 and chance, which
            tells a recording E^c does not align from one it does.

    Returns:
        What :class:`RetrievalProbe` returns, plus ``'sessions'`` with ``per_session``.

    Raises:
        ValueError: When the checkpoint has no contrastive encoder.
    """
    from convitac_ros.checkpoint import load_checkpoint
    from convitac_ros.data import TouchAndGo
    from convitac_ros.model.contrastive import ContrastiveEncoder, TACTILE, VISUAL

    loaded = load_checkpoint(checkpoint)
    model = loaded.model
    encoder = model if isinstance(model, ContrastiveEncoder) else model.contrastive_encoder
    if encoder is None:
        raise ValueError(f'{checkpoint}: no contrastive encoder (fusion '
                         f'{loaded.config.fusion!r})')
    encoder.eval()
    preprocess = loaded.preprocess
    dataset = TouchAndGo(data_root, split, visual_len=1, tactile_len=1)
    collate = BatchCollator(preprocess['image_size'], preprocess['mean'], preprocess['std'],
                            None, pairs=True)

    def embed(visual: torch.Tensor, tactile: torch.Tensor) -> torch.Tensor:
        modality = torch.tensor([VISUAL] * len(visual) + [TACTILE] * len(tactile))
        return encoder.projection_embed(torch.cat([visual, tactile]), modality)

    probe = RetrievalProbe(dataset, batch_size, collate, seed, data_root)
    visual, tactile = probe.embeddings(embed, torch.device('cpu'))
    result: dict[str, Any] = scores(visual, tactile, probe.batchings, probe.batch_size, 0.1)
    if per_session:  # the same embeddings, batched within each session (B at most its size)
        groups = dataset.group_array()
        result['sessions'] = {}
        for session in sorted(set(groups.tolist())):
            rows = torch.as_tensor(np.flatnonzero(groups == session))
            size = min(batch_size, len(rows))
            values = scores(visual[rows], tactile[rows],
                            batchings(len(rows), size, seed, len(probe.batchings)), size, 0.1)
            result['sessions'][str(session)] = {'retrieval_top1': values['retrieval_top1'],
                                                'chance_top1': values['chance_top1']}
    return result


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """``python -m training.retrieval --checkpoint FILE --data-root DIR [--per-session]``."""
    import argparse
    import json

    parser = argparse.ArgumentParser(description='Visual-to-tactile retrieval of an E^c.')
    parser.add_argument('--checkpoint', required=True, type=Path)
    parser.add_argument('--data-root', required=True, type=Path)
    parser.add_argument('--split', default='test')
    parser.add_argument('--batch-size', type=int, default=32)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--per-session', action='store_true',
                        help='also each recording session alone (batches of its own pairs)')
    args = parser.parse_args(argv)
    values = checkpoint_retrieval(args.checkpoint, args.data_root, args.split, args.batch_size,
                                  args.seed, args.per_session)
    print(describe(values, round(1 / values['chance_top1'])))
    for session, item in values.get('sessions', {}).items():
        print(f'  session {session}: top-1 {100 * item["retrieval_top1"]:.1f}% (chance '
              f'{100 * item["chance_top1"]:.1f}%)')
    print(json.dumps(values, indent=2))
    return values


if __name__ == '__main__':
    main()
