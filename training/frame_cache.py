"""Decoded frames cached once at the model's input size, memory-mapped (`data.frame_cache`).

Decoding PNG/JPEG frames and resizing them took most of each training step on a GPU. With
`data.frame_cache` set to a folder, every split is decoded once, each frame resized to the
model's side S with the training preprocessing (`convitac_ros.preprocess.resize_frame`), and
kept as one uint8 array `(N, T_v + S_t*T_t, S, S, 3)` in a file that every DataLoader worker
maps (`numpy.memmap`; the page cache holds it once). The dataset's labels go beside it.

The cache never changes what the model sees: a frame already at S passes `resize_frame`
untouched, so batches from the cache equal batches of the same frames resized to S on the fly
(`test/test_frame_cache.py`). With augmentation, the crop is then taken from the S-sized frame
rather than the full-resolution one.

A cache is built by the first run that needs it (or by `python training/cache_frames.py --config
CONFIG`), in a folder per dataset, split and options, and is keyed by the data (every file under
`data.root`: path, size, modification time) and the preprocessing (S, the resize). A cache made
from other data or for another preprocessing is rebuilt, and that is said once. Writes go to a
temporary folder renamed into place, so a killed build leaves nothing half-written.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from pathlib import Path
import shutil
import sys
from typing import Any

import numpy as np
from torch.utils.data import DataLoader, Dataset

from convitac_ros.data.sample import Sample
from convitac_ros.preprocess import resize_frame

FORMAT = 'convitac-frame-cache/1'
RESIZE = 'convitac_ros.preprocess.resize_frame: OpenCV INTER_AREA shrinking, INTER_LINEAR else'
FRAMES_FILE, LABELS_FILE, KEY_FILE = 'frames.u8', 'labels.npy', 'key.json'
ABSENT = -2  # in the label table: the sample has no entry for the head (MISSING_LABEL: unknown)


def data_fingerprint(root: str | os.PathLike, exclude: Path | None = None) -> str:
    """SHA-256 over every file under `root`: relative path, size and modification time (ns).

    Args:
        root: the dataset folder.
        exclude: a folder inside `root` to leave out (a cache kept there).
    """
    root = Path(root)
    digest = hashlib.sha256()
    entries = []
    for folder, names, files in os.walk(root):
        if exclude is not None and Path(folder).resolve() == exclude.resolve():
            names.clear()
            continue
        names.sort()
        for name in files:
            stat = os.stat(os.path.join(folder, name))
            entries.append((os.path.relpath(os.path.join(folder, name), root), stat.st_size,
                            stat.st_mtime_ns))
    for entry in sorted(entries):
        digest.update(repr(entry).encode())
    return digest.hexdigest()


def _resized_sample(sample: Sample, image_size: int) -> tuple[np.ndarray, dict[str, int]]:
    """One sample's frames resized to S in staging order `(T_v + S_t*T_t, S, S, 3)`."""
    frames = [*sample.visual, *(frame for sensor in sample.tactile for frame in sensor)]
    return (np.stack([resize_frame(frame, image_size) for frame in frames]),
            dict(sample.labels))


class FrameCache(Dataset):
    """A dataset's samples with their frames read from the cache (same labels and lengths).

    Attributes not defined here (heads, sequence lengths, `target_array`, `group_array`, ...)
    are the source dataset's: nothing else is decoded.

    Args:
        source: the dataset to cache (its samples must all have the same lengths).
        folder: this dataset's cache folder.
        image_size: S.
        key: what the cache must have been made from (data fingerprint, preprocessing, ...).
        workers: DataLoader workers decoding while the cache is built.
    """

    def __init__(self, source: Dataset, folder: str | os.PathLike, image_size: int,
                 key: dict[str, Any], workers: int = 0) -> None:
        self.source, self.folder, self.frame_size = source, Path(folder), int(image_size)
        self.key = {'format': FORMAT, 'image_size': self.frame_size, 'resize': RESIZE,
                    'samples': len(source), **key}
        self.rebuilt_because: str | None = None
        stored = self._stored_key()
        if stored != self.key:
            self.rebuilt_because = _why(stored, self.key)
            if stored is not None:
                print(f'frame cache {self.folder}: {self.rebuilt_because}; rebuilding',
                      file=sys.stderr)
            self._build(workers)
        self._heads: list[str] = json.loads((self.folder / KEY_FILE).read_text())['heads']
        self._labels = np.load(self.folder / LABELS_FILE)
        self._frames: np.ndarray | None = None  # mapped on first use, in each process

    def __len__(self) -> int:
        """Number of samples."""
        return len(self._labels)

    def __getattr__(self, name: str) -> Any:
        """The source dataset's declarations and label arrays."""
        if name.startswith('_') or name in ('source', 'folder', 'frame_size', 'key'):
            raise AttributeError(name)
        return getattr(self.source, name)

    def __getstate__(self) -> dict[str, Any]:
        """Pickled for DataLoader workers without the mapping (each maps the file itself)."""
        return {**self.__dict__, '_frames': None}

    def __getitem__(self, index: int) -> Sample:
        """Sample `index` with uint8 `(S, S, 3)` frames (read-only views of the mapping)."""
        if self._frames is None:
            shape = tuple(json.loads((self.folder / KEY_FILE).read_text())['shape'])
            self._frames = np.memmap(self.folder / FRAMES_FILE, dtype=np.uint8, mode='r',
                                     shape=shape)
        frames = self._frames[index]
        visual_len, tactile_len = self.source.visual_len, self.source.tactile_len
        tactile = [list(frames[visual_len + sensor * tactile_len:
                               visual_len + (sensor + 1) * tactile_len])
                   for sensor in range(self.source.num_tactile)]
        labels = {head: int(value) for head, value in zip(self._heads, self._labels[index])
                  if value != ABSENT}
        return Sample(visual=list(frames[:visual_len]), tactile=tactile, labels=labels,
                      meta={'frame_cache': str(self.folder), 'index': int(index)})

    def _stored_key(self) -> dict[str, Any] | None:
        try:
            return json.loads((self.folder / KEY_FILE).read_text())['key']
        except (OSError, ValueError, KeyError):
            return None

    def _build(self, workers: int) -> None:
        count = len(self.source)
        if count == 0:
            raise ValueError(f'frame cache {self.folder}: the dataset has no samples')
        staging = self.folder.with_name(self.folder.name + '.building')
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        loader = DataLoader(self.source, batch_size=None, num_workers=workers,
                            collate_fn=functools.partial(_resized_sample,
                                                         image_size=self.frame_size))
        frames: np.ndarray | None = None
        labels: list[dict[str, int]] = []
        step = max(1, count // 10)
        for index, (resized, sample_labels) in enumerate(loader):
            if frames is None:
                frames = np.memmap(staging / FRAMES_FILE, dtype=np.uint8, mode='w+',
                                   shape=(count, *resized.shape))
            if resized.shape != frames.shape[1:]:
                raise ValueError(f'frame cache {self.folder}: sample {index} has frames '
                                 f'{resized.shape}, the first one {frames.shape[1:]}')
            frames[index] = resized
            labels.append(sample_labels)
            if (index + 1) % step == 0 or index + 1 == count:
                print(f'frame cache {self.folder.name}: {index + 1}/{count} samples',
                      file=sys.stderr)
        frames.flush()
        heads = list(dict.fromkeys(head for item in labels for head in item))
        table = np.array([[item.get(head, ABSENT) for head in heads] for item in labels],
                         dtype=np.int64).reshape(count, len(heads))
        np.save(staging / LABELS_FILE, table)
        (staging / KEY_FILE).write_text(json.dumps(
            {'key': self.key, 'heads': heads, 'shape': list(frames.shape)}, indent=1))
        del frames
        if self.folder.exists():
            shutil.rmtree(self.folder)
        staging.rename(self.folder)


def _why(stored: dict[str, Any] | None, wanted: dict[str, Any]) -> str:
    if stored is None:
        return 'no cache yet'
    if stored.get('data') != wanted.get('data') or stored.get('samples') != wanted['samples']:
        return 'the data changed since it was made'
    differing = sorted(k for k in wanted if stored.get(k) != wanted[k])
    return ('it was made for another preprocessing ('
            + ', '.join(f'{k} {stored.get(k)!r}, now {wanted[k]!r}' for k in differing) + ')')


def open_cached(source: Dataset, cache_root: str | os.PathLike, data_root: str | os.PathLike,
                identity: dict[str, Any], image_size: int, workers: int = 0) -> FrameCache:
    """The cache of one split: its folder named after `identity`, keyed by the data.

    Args:
        source: the split's dataset.
        cache_root: `data.frame_cache`.
        data_root: `data.root` (fingerprinted; a cache kept inside it is left out).
        identity: what makes this split (dataset, split, build options), JSON-serialisable.
        image_size: S.
        workers: decoding workers for a build.
    """
    cache_root = Path(cache_root)
    text = json.dumps(identity, sort_keys=True, default=str)
    name = f'{identity.get("dataset", "data")}-{identity.get("split", "")}-' + hashlib.sha256(
        text.encode()).hexdigest()[:12]
    key = {'identity': json.loads(text), 'data': data_fingerprint(data_root, exclude=cache_root)}
    return FrameCache(source, cache_root / name, image_size, key, workers)
