"""Datasets, splits and the resumable, distributed batch order used by the training scripts."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, DistributedSampler, Subset

from convitac_ros.data import build_dataset, Sample
from convitac_ros.data.files import DataError
from convitac_ros.data.transforms import (
    collate_contrastive_pairs,
    collate_samples,
    FrameAugmentation,
)
from training.train_config import DataConfig

HOLDOUT = 'holdout'


class ResumableSampler(torch.utils.data.Sampler[list[tuple[int, int]]]):
    """Batches of indices in a seeded per-epoch order that can start mid-epoch.

    The order of epoch ``e`` is torch's :class:`DistributedSampler` order for seed ``seed`` and
    epoch ``e`` (a permutation shared by all ranks, each rank taking every ``world_size``-th
    index); the shard is cut into full batches (the incomplete tail is dropped). Because the
    order depends only on ``(seed, epoch)``, a resumed run skips the ``start_batch`` batches it
    already trained on and sees exactly the batches an uninterrupted run would have seen.

    With ``groups`` (one recording session per index) every batch is drawn from as few
    sessions as possible: the epoch's order takes the sessions in a seeded random order and
    each session's indices shuffled, cut into batches, and the batches are shuffled; rank r
    takes every ``world_size``-th batch. Stage 1 uses this: within one session nothing that is
    the same all session long (the lighting, the gel's tint, the camera's noise) tells a pair
    from the other pairs of the batch, so the encoder cannot align camera and touch by session
    alone and must learn what the contact shows.
    """

    def __init__(self, size: int, batch_size: int, seed: int, rank: int = 0,
                 world_size: int = 1, groups: Sequence[Any] | np.ndarray | None = None) -> None:
        if batch_size < 1:
            raise ValueError(f'batch_size must be >= 1, got {batch_size}')
        if groups is not None and len(groups) != size:
            raise ValueError(f'groups has {len(groups)} entries for {size} samples')
        self.order = DistributedSampler(range(size), num_replicas=world_size, rank=rank,
                                        shuffle=True, seed=seed, drop_last=False)
        self.batch_size, self.seed = batch_size, seed
        self.size, self.world_size = size, world_size
        self.members = None
        if groups is not None:  # the indices of each group, in one pass over the N labels
            _, inverse = np.unique(np.asarray(groups), return_inverse=True)
            order = np.argsort(inverse, kind='stable')
            self.members = np.split(order, np.cumsum(np.bincount(inverse))[:-1])
        self.start_batch = 0
        if len(self) == 0:
            raise ValueError(f'{size} training samples over {world_size} rank(s) make no full '
                             f'batch of {batch_size}; lower the batch size')

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Selects the epoch's order and the first batch to yield."""
        self.order.set_epoch(epoch)
        self.start_batch = start_batch

    def __len__(self) -> int:
        """Full batches per epoch on this rank."""
        if self.members is None:
            return len(self.order) // self.batch_size
        return self.size // self.batch_size // self.world_size

    def _batches(self) -> list[list[int]]:
        if self.members is None:
            indices = list(self.order)
            return [indices[batch * self.batch_size:(batch + 1) * self.batch_size]
                    for batch in range(len(self))]
        rng = np.random.default_rng([self.seed, self.order.epoch])
        flat = np.concatenate([rng.permutation(self.members[group])
                               for group in rng.permutation(len(self.members))])
        whole = len(flat) // self.batch_size
        cut = flat[:whole * self.batch_size].reshape(whole, self.batch_size)
        mine = cut[rng.permutation(whole)][self.order.rank::self.world_size][:len(self)]
        return [row.tolist() for row in mine]

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        """Yields the batches of the current epoch from ``start_batch`` on.

        Each element is ``(index, batch_seed)`` (see :class:`KeyedDataset`).
        """
        batches = self._batches()
        for batch in range(self.start_batch, len(self)):
            batch_seed = batch_seed_of(self.seed, self.order.rank, self.order.epoch, batch)
            yield [(index, batch_seed) for index in batches[batch]]


def sample_groups(dataset: Dataset) -> np.ndarray | None:
    """The recording session (or object) of every sample, through subsets; None if unknown."""
    if isinstance(dataset, Subset):
        groups = sample_groups(dataset.dataset)
        return None if groups is None else groups[np.asarray(dataset.indices, dtype=np.int64)]
    return dataset.group_array() if hasattr(dataset, 'group_array') else None


def batch_seed_of(seed: int, rank: int, epoch: int, batch: int) -> int:
    """A well-mixed 63-bit seed for one batch of one rank in one epoch."""
    state = np.random.SeedSequence([seed, rank, epoch, batch]).generate_state(2, np.uint32)
    return int(state[0]) << 31 | int(state[1]) >> 1


def open_split(data: DataConfig, split: str, image_size: int | None = None,
               **overrides: Any) -> Dataset:
    """Builds one split of the configured dataset (``data.options`` plus ``overrides``).

    With ``data.frame_cache`` and ``image_size``, the split's frames come from its frame cache
    (:mod:`training.frame_cache`; built on first use).
    """
    options = {**data.options, **overrides}
    dataset = build_dataset(data.dataset, data.root, split, **options)
    if data.frame_cache and image_size:
        from training.frame_cache import open_cached

        identity = {'dataset': data.dataset, 'split': split, 'options': options}
        dataset = open_cached(dataset, data.frame_cache, data.root, identity, image_size,
                              data.num_workers)
    return dataset


def holdout_indices(size: int, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Seeded random (train, validation) index lists holding out ``fraction`` of ``size``.

    Raises:
        DataError: When the fraction leaves either side empty.
    """
    count = int(round(size * fraction))
    if not 0 < count < size:
        raise DataError(f'cannot hold out a validation set: val_fraction {fraction} of '
                        f'{size} training sample(s) leaves one side empty (more data, or set '
                        'data.val_split to a split of its own)')
    order = np.random.default_rng(seed).permutation(size)
    return sorted(order[count:].tolist()), sorted(order[:count].tolist())


def holdout_groups(groups: np.ndarray, fraction: float, seed: int
                   ) -> tuple[list[int], list[int]]:
    """Seeded (train, validation) index lists holding out ``fraction`` of the groups, whole.

    Args:
        groups: ``(N,)`` group of every sample (recording session, object).
        fraction: Share of the groups to hold out (at least one, never all).
        seed: Seed of the group draw.

    Raises:
        ValueError: When there are fewer than two groups.
    """
    names = np.unique(groups)
    if len(names) < 2:
        raise ValueError(f'a group holdout needs at least 2 sessions/objects, got {len(names)}')
    count = min(len(names) - 1, max(1, int(round(len(names) * fraction))))
    held_names = np.random.default_rng(seed).permutation(names)[:count]
    held = np.isin(groups, held_names)
    return np.flatnonzero(~held).tolist(), np.flatnonzero(held).tolist()


def train_and_val(data: DataConfig, seed: int, image_size: int | None = None,
                  **overrides: Any) -> tuple[Dataset, Dataset]:
    """The training set and the validation set: a named split, or a seeded holdout of train.

    ``image_size`` (the model's S) is what the frame cache keeps, when ``data.frame_cache`` is
    set (see :func:`open_split`).

    The holdout takes whole recording sessions or objects when the dataset says which sample
    belongs to which (``group_array``: Touch and Go, the Feeling of Success), so that model
    selection is not rewarded for memorising near-duplicate frames of the training sessions;
    otherwise single samples.

    Raises:
        DataError: An empty training split, or too few samples to hold some out.
    """
    train = open_split(data, data.train_split, image_size, **overrides)
    if len(train) == 0:
        raise DataError(f'the {data.train_split!r} split of {data.dataset} at {data.root} has no '
                        'samples: its list file is empty or names no usable frames')
    if data.val_split != HOLDOUT:
        return train, open_split(data, data.val_split, image_size, **overrides)
    groups = train.group_array() if hasattr(train, 'group_array') else None
    if groups is not None and len(np.unique(groups)) >= 2:
        kept, held = holdout_groups(groups, data.val_fraction, seed)
    else:  # one recording: single frames are all there is (training/checks.py says so)
        kept, held = holdout_indices(len(train), data.val_fraction, seed)
    return with_info(Subset(train, kept), train), with_info(Subset(train, held), train)


STAGE1_FRAMES = ('all', 'disk', 'labelled')


def frame_keys(dataset: Dataset) -> list[tuple[str, str]] | None:
    """(session, frame) of every sample when the dataset can tell (Touch and Go), else None."""
    if isinstance(dataset, Subset):
        keys = frame_keys(dataset.dataset)
        return None if keys is None else [keys[i] for i in dataset.indices]
    return dataset.frame_keys() if hasattr(dataset, 'frame_keys') else None


def stage1_frames(data: DataConfig, train: Dataset, val: Dataset) -> Dataset:
    """The frames stage 1 learns from, given stage 2's training and validation sets.

    With ``data.stage1_frames`` 'all' (the default; the paper pretrains on "all visual-tactile
    data") or 'disk', Touch and Go contributes every frame of its training data, labelled or not
    (``TouchAndGo(task='frames')``: no Inconclusive/approach frame, no test frame), as single
    (camera, GelSight) pairs; the validation frames, and every other frame of a session that
    only validation holds, are left out, so that held-out retrieval stays held out. The other
    datasets label every sample: stage 1 gets stage 2's training set, as with 'labelled'.

    Raises:
        DataError: For an unknown ``stage1_frames`` or when nothing is left.
    """
    if data.stage1_frames not in STAGE1_FRAMES:
        raise DataError(f'data.stage1_frames must be one of {", ".join(STAGE1_FRAMES)}, got '
                        f'{data.stage1_frames!r}')
    if data.stage1_frames == 'labelled' or data.dataset != 'touch_and_go':
        return train
    frames = open_split(data, data.train_split, getattr(train, 'frame_size', None),
                        task='frames', visual_len=1, tactile_len=1,
                        frames='disk' if data.stage1_frames == 'disk' else 'listed',
                        frames_task=data.options.get('task', 'material'))
    keys, val_keys, train_keys = frames.frame_keys(), frame_keys(val) or [], frame_keys(train)
    val_only = {s for s, _ in val_keys} - {s for s, _ in train_keys or []}
    held = set(val_keys)
    kept = [i for i, key in enumerate(keys) if key not in held and key[0] not in val_only]
    if not kept:
        raise DataError(f'stage 1 has no frames at {data.root}: every training frame is '
                        'Inconclusive (-1), a test frame or held out for validation')
    return with_info(Subset(frames, kept), frames)


def unlabelled_frames(data: DataConfig, seed: int) -> tuple[Dataset, Dataset]:
    """Stage 1 without labels: every contact frame of the training data, and held-out frames.

    For a dataset nobody has labelled yet (``convitac_make_dataset`` of unlabelled recordings:
    the frames in contact are listed, no sample). Validation (held-out retrieval) takes whole
    sessions.

    Raises:
        DataError: A dataset other than Touch and Go's layout, one recording session only, or
            too few frames.
    """
    if data.dataset != 'touch_and_go':
        raise DataError(f'stage 1 without labels reads the Touch and Go layout, not '
                        f'{data.dataset!r}')
    frames = open_split(data, data.train_split, task='frames', visual_len=1, tactile_len=1,
                        frames='listed', frames_task=data.options.get('task', 'material'))
    groups = frames.group_array()
    if len(np.unique(groups)) < 2:
        raise DataError(f'stage 1: {data.root} holds one recording session, so no held-out '
                        'session can judge retrieval; give two or more recordings '
                        '(convitac_make_dataset --unlabelled BAG BAG ...)')
    kept, held = holdout_groups(groups, data.val_fraction, seed)
    return with_info(Subset(frames, kept), frames), with_info(Subset(frames, held), frames)


def with_info(subset: Subset, source: Dataset) -> Subset:
    """Copies the dataset declarations (heads, sequence lengths, sensors) onto a subset."""
    for name in ('heads', 'num_tactile', 'visual_len', 'tactile_len'):
        setattr(subset, name, getattr(source, name))
    if hasattr(source, 'frame_size'):  # frames from a frame cache: stage 1 caches its own too
        subset.frame_size = source.frame_size
    return subset


def targets(dataset: Dataset, head: str) -> np.ndarray:
    """Labels of one head for every sample (without decoding images when the dataset can)."""
    if isinstance(dataset, Subset):
        return targets(dataset.dataset, head)[np.asarray(dataset.indices, dtype=np.int64)]
    if hasattr(dataset, 'target_array'):
        return dataset.target_array(head)
    return np.array([dataset[i].labels[head] for i in range(len(dataset))], dtype=np.int64)


class KeyedDataset(Dataset):
    """Wraps a dataset so that items are requested as ``(index, batch_seed)`` keys.

    :class:`ResumableSampler` hands out such keys; the item is ``(sample, batch_seed)`` and
    :class:`BatchCollator` draws the batch's augmentation from ``batch_seed``. Augmentation is
    then a pure function of (seed, rank, epoch, batch), the same with any number of DataLoader
    workers and after a resume.
    """

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        """Number of samples of the wrapped dataset."""
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> tuple[Sample, int]:
        """Returns ``(sample, batch_seed)`` for ``key = (index, batch_seed)``."""
        index, batch_seed = key
        return self.dataset[index], batch_seed


def augment_on_device(data: DataConfig, device: torch.device) -> bool:
    """Whether training batches are augmented on the device: with the frame cache, on CUDA.

    On a CPU the batched augmentation (``training.device_augment``) cut the loader's wait to
    1-2 % of the step but lowered the tiny config's throughput (stage 1 83.6 -> 57 samples/s,
    stage 2 55.9 -> 39.1, no workers; docs/benchmarks/training-cpu-frame-cache.md), so the CPU
    keeps OpenCV in the loader.
    """
    return bool(data.frame_cache) and device.type == 'cuda'


class BatchCollator:
    """Collates ``(sample, batch_seed)`` items with optional seeded augmentation (picklable).

    Args:
        image_size: Side S of the model's frames.
        mean: RGB mean of the normalisation.
        std: RGB std of the normalisation.
        augment: Training augmentation, or None for the deterministic eval transform.
        pairs: Stage 1: single (visual, tactile) image pairs instead of full sequences.
        on_device: Augment on the training device: the collate draws the same numbers and
            gives a :class:`training.device_augment.DeviceBatch` of uint8 frames at S, which
            the trainer's ``to_device`` augments there (with ``data.frame_cache``).
        views: With 2 (stage 1 pairs, augmented): the batch is a tuple of two independently
            augmented batches of the same samples (``stage1.views``).
    """

    def __init__(self, image_size: int, mean: Sequence[float], std: Sequence[float],
                 augment: FrameAugmentation | None, pairs: bool = False,
                 on_device: bool = False, views: int = 1) -> None:
        if views != 1 and (augment is None or not pairs):
            raise ValueError('views > 1 needs augmented stage-1 pairs')
        self.image_size, self.mean, self.std = image_size, tuple(mean), tuple(std)
        self.augment, self.pairs, self.on_device = augment, pairs, on_device
        self.views = views

    def __call__(self, items: Sequence[tuple[Sample, int] | Sample]) -> Any:
        """Returns what ``collate_samples`` (or ``collate_contrastive_pairs``) returns.

        With ``views`` 2: a tuple of two of them, drawn one after the other from the batch's
        random stream.
        """
        if self.views == 1:
            return self._collate(items)
        rng = np.random.default_rng(items[0][1])
        return tuple(self._collate(items, rng) for _ in range(self.views))

    def _collate(self, items: Sequence[tuple[Sample, int] | Sample],
                 rng: np.random.Generator | None = None) -> Any:
        keyed = isinstance(items[0], tuple)
        samples = [item[0] for item in items] if keyed else list(items)
        if self.augment is not None:
            if not keyed:
                raise ValueError('augmentation needs (sample, batch_seed) items')
            rng = rng or np.random.default_rng(items[0][1])
            if self.on_device:
                from training.device_augment import collate_for_device

                return collate_for_device(samples, self.image_size, self.mean, self.std,
                                          self.augment, rng, self.pairs)
        collate = collate_contrastive_pairs if self.pairs else collate_samples
        return collate(samples, self.image_size, self.mean, self.std, self.augment, rng)
