"""Training configuration: typed sections, YAML files, dotted command-line overrides.

A run is described by one :class:`TrainConfig`. It is read from a YAML file in
``training/configs/``, changed with ``--set section.key=value`` overrides (values parsed as YAML,
so ``--set stage2.lr=3e-4`` gives a float and ``--set model.depth=2`` an int), validated (an
unknown key is an error, not a silent no-op), and saved next to the run as ``config.yaml``.

Architecture numbers do not live here: the ``model`` section only names a ``ModelConfig`` preset
and the overrides passed to it, so the network is described once, by ``convitac_ros.model``.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
import os
from pathlib import Path
from typing import Any

import yaml

from convitac_ros.fileio import atomic_write_text

CONFIG_DIR = Path(__file__).resolve().parent / 'configs'
NEGATIVES = ('all', 'cross')  # as convitac_ros.model.contrastive.NEGATIVES


class ConfigError(ValueError):
    """Raised for an unreadable config file, an unknown key or an invalid value."""


@dataclass
class DataConfig:
    """Which dataset to read and how to load it."""

    dataset: str = 'touch_and_go'
    root: str = 'data/touch_and_go'
    train_split: str = 'train'
    # A split name, or 'holdout': val_fraction of train's sessions/objects (seeded; whole groups).
    val_split: str = 'holdout'
    val_fraction: float = 0.1
    test_split: str = 'test'
    # DataLoader workers; -1: half the cores (at most 8) where there are 4 or more, else 0.
    num_workers: int = -1
    # A folder for decoded frames cached at the model's size (training/frame_cache.py); '': off.
    frame_cache: str = ''
    options: dict[str, Any] = field(default_factory=dict)  # extra build_dataset keywords
    # What stage 1 learns from (training/data.py stage1_frames): 'all' = every contact frame of
    # the training data, labelled or not (Touch and Go; the other datasets label every sample);
    # 'disk' = also frames that no list names; 'labelled' = stage 2's training samples.
    stage1_frames: str = 'all'

    def __post_init__(self) -> None:
        """Resolve ``num_workers: -1`` for this machine."""
        if self.num_workers == -1:
            cores = os.cpu_count() or 1
            self.num_workers = min(8, cores // 2) if cores >= 4 else 0
        elif self.num_workers < 0:
            raise ConfigError(f'data.num_workers must be -1 (auto) or >= 0, got '
                              f'{self.num_workers}')


@dataclass
class ModelSection:
    """A ``ModelConfig`` preset name and the fields that override it."""

    preset: str = 'tiny'
    overrides: dict[str, Any] = field(default_factory=dict)
    # Stage 1 as an initialisation (the CEC study's equal-compute control): the trainable fusion
    # encoders, of E^c's backbone and grid, start from the stage-1 encoder, which train.py runs
    # for them even when the fusion has no condition (training/configs/stage1_init.yaml).
    fusion_from_stage1: bool = False


BATCHES = ('session', 'random')  # stage 1 batch composition (StageConfig.batches)


@dataclass
class StageConfig:
    """Optimisation knobs of one stage (stage 1 = SimCLR pretraining, stage 2 = supervised)."""

    epochs: int = 30  # the cap: at most this many epochs (the cosine schedule spans them)
    # Early stopping: end after this many validations in a row without a better best_metric
    # (stage 1 held-out retrieval top-1, stage 2 mean validation accuracy); 0 = never.
    patience: int = 0
    min_epochs: int = 0  # patience cannot end the run before this many epochs (cap and budget can)
    max_minutes: float = 0.0  # wall-clock budget of the stage's training loop; 0 = none
    batch_size: int = 16
    optimizer: str = 'adamw'  # adamw | adam | sgd
    lr: float = 1e-4
    backbone_lr: float = 0.0  # lr of the timm backbones (e.g. a pretrained DINO); 0 = lr
    weight_decay: float = 0.05  # not on norms, biases and embeddings (training/optim.py)
    betas: tuple[float, float] = (0.9, 0.999)
    momentum: float = 0.9  # sgd only
    schedule: str = 'cosine'  # cosine | constant
    warmup_steps: int = 0
    min_lr_ratio: float = 0.0  # cosine floor as a fraction of lr
    grad_clip: float = 1.0  # max global grad norm; 0 disables clipping
    max_steps: int = 0  # 0 = epochs * steps_per_epoch, else a hard cap on optimizer steps
    temperature: float = 0.1  # NT-Xent tau (stage 1 only)
    # Stage 1: NT-Xent negatives: 'all' (SimCLR: the other 2B - 2 images) or 'cross' (the
    # other modality's B - 1 images only, as CLIP)
    negatives: str = 'all'
    # Stage 1: 'random': batches drawn across the whole training set; 'session': each batch
    # from as few recording sessions as possible (training/data.py's ResumableSampler). Random
    # scored higher on both worlds measured (docs/results/stage1_v0.5/README.md).
    batches: str = 'random'
    retrieval_batch: int = 32  # stage 1: held-out visual-to-tactile retrieval in batches of this
    label_smoothing: float = 0.0  # cross-entropy (stage 2 only)
    augment: bool = True
    # Stage 1 only: strength of FrameAugmentation.simclr, drawn for each modality on its own:
    # the smallest crop as a fraction of the frame's area, and the colour jitter (brightness,
    # contrast and saturation factors in [1 - jitter, 1 + jitter]). Stage 2's lighter
    # augmentation must stay within it (crop_min <= 0.8, jitter >= 0.1): the frozen E^c sees
    # stage 2's frames.
    crop_min: float = 0.7
    jitter: float = 0.15
    # Stage 1 only: views of each sample per step. With 2, every image is augmented twice and
    # the cross-modal NT-Xent is taken on both views; `intra_weight` then adds a within-modality
    # SimCLR term (camera view 1 against camera view 2, gel against gel) with this weight.
    views: int = 1
    intra_weight: float = 0.0
    # Stage 2 only: fit one temperature per head on the validation split and store it in
    # the checkpoint (convitac_ros/calibration.py); false: temperature 1.
    calibrate: bool = True

    def __post_init__(self) -> None:
        if self.patience < 0 or self.epochs < 0 or self.min_epochs < 0:
            raise ConfigError(f'epochs, patience and min_epochs must be >= 0, got '
                              f'{self.epochs}, {self.patience} and {self.min_epochs}')
        if not self.max_minutes >= 0:
            raise ConfigError(f'max_minutes must be >= 0 (0 = no budget), got '
                              f'{self.max_minutes}')
        if self.negatives not in NEGATIVES:
            raise ConfigError(f'negatives must be one of {NEGATIVES}, got {self.negatives!r}')
        if self.batches not in BATCHES:
            raise ConfigError(f'batches must be one of {BATCHES}, got {self.batches!r}')
        if not 0.05 <= self.crop_min <= 0.8:
            raise ConfigError(f'crop_min must be in [0.05, 0.8] (stage 2 crops down to 0.8 of '
                              f'the frame), got {self.crop_min}')
        if not 0.1 <= self.jitter < 1.0:
            raise ConfigError(f'jitter must be in [0.1, 1) (stage 2 jitters by 0.1), got '
                              f'{self.jitter}')
        if self.views not in (1, 2):
            raise ConfigError(f'views must be 1 or 2, got {self.views!r}')
        if not 0.0 <= self.intra_weight <= 10.0:
            raise ConfigError(f'intra_weight must be in [0, 10], got {self.intra_weight}')
        if self.intra_weight > 0 and self.views != 2:
            raise ConfigError(f'intra_weight {self.intra_weight} needs views: 2 (the '
                              'within-modality term compares two views of each image)')
        if self.views == 2 and not self.augment:
            raise ConfigError('views: 2 needs augment: true (unaugmented views are the same '
                              'image twice)')


@dataclass
class FinetuneConfig:
    """How ``train.py --init-from`` treats the weights it loads (``training/finetune.py``).

    Early stopping is ``stage2.patience`` on the validation split, which should be whole
    recordings (``convitac_make_dataset --val-recordings``).
    """

    loaded_lr_scale: float = 0.1  # lr of loaded weights = stage2.lr x this; new heads get lr
    freeze: str = 'none'  # none | encoders (fusion encoders) | fusion (all loaded but the heads)
    keep_start: bool = True  # the start wins when it validates at least as well as the result


@dataclass
class RuntimeConfig:
    """Execution knobs that do not change what is learned (except through the seed)."""

    seed: int = 0
    device: str = 'auto'  # auto | cpu | cuda
    amp: str = 'auto'  # auto (bf16 where supported, else fp16 on CUDA; off on CPU) | off
    checkpoint_every_steps: int = 0  # 0 = save the resume state at the end of each epoch only
    eval_every_epochs: int = 1
    log_every_steps: int = 10
    max_nonfinite: int = 10  # abort after this many consecutive non-finite losses
    stop_after_steps: int = 0  # testing aid: stop abruptly (as if killed) after this global step
    find_unused_parameters: bool = False  # DistributedDataParallel option
    progress: bool = True  # tqdm bars


@dataclass
class TrainConfig:
    """Everything a training run needs besides the architecture."""

    name: str = 'run'
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelSection = field(default_factory=ModelSection)
    stage1: StageConfig = field(default_factory=StageConfig)
    stage2: StageConfig = field(default_factory=StageConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)

    def to_dict(self) -> dict[str, Any]:
        """Returns plain Python containers (tuples as lists), ready for YAML or JSON."""
        return _plain(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> TrainConfig:
        """Builds a validated config; unknown keys and wrongly typed values raise ConfigError."""
        return _build(cls, raw, '')


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


def _build(cls: type, raw: Any, where: str) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f'{where or "config"}: expected a mapping, got {raw!r}')
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise ConfigError(f'{where or "config"}: unknown key(s) {unknown}; '
                          f'known: {sorted(fields)}')
    values = {}
    for name, value in raw.items():
        target = fields[name].type
        key = f'{where}.{name}' if where else name
        nested = _SECTIONS.get(target)
        values[name] = _build(nested, value, key) if nested else _coerce(target, value, key)
    return cls(**values)


def _coerce(type_name: str, value: Any, key: str) -> Any:
    """Checks and converts a leaf value; ints are accepted where floats are expected."""
    if type_name == 'float' and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if type_name == 'float' and isinstance(value, str):
        try:
            return float(value)  # YAML 1.1 reads '1e-4' (no dot) as a string
        except ValueError:
            pass
    if type_name == 'str' and isinstance(value, bool):
        if key.rsplit('.', 1)[-1] == 'amp':  # YAML 1.1 reads `amp: off` as false
            return 'auto' if value else 'off'
        raise ConfigError(f'{key}: expected str, got {value!r} (YAML reads unquoted yes/no/'
                          f'on/off as booleans: quote the value)')
    simple = {'int': int, 'str': str, 'bool': bool}
    if type_name in simple:
        wanted = simple[type_name]
        if isinstance(value, wanted) and not (wanted is int and isinstance(value, bool)):
            return value
    elif type_name.startswith('tuple') and isinstance(value, (list, tuple)) and len(value) == 2:
        return tuple(float(item) for item in value)
    elif type_name.startswith('dict') and isinstance(value, dict):
        return dict(value)
    raise ConfigError(f'{key}: expected {type_name}, got {value!r}')


_SECTIONS = {
    'DataConfig': DataConfig,
    'ModelSection': ModelSection,
    'StageConfig': StageConfig,
    'FinetuneConfig': FinetuneConfig,
    'RuntimeConfig': RuntimeConfig,
}


def parse_override(text: str) -> tuple[list[str], Any]:
    """Splits ``'a.b.c=value'`` into the key path and the YAML-parsed value.

    Raises:
        ConfigError: When there is no ``=`` or the key is empty.
    """
    key, sep, value = text.partition('=')
    if not sep or not key.strip():
        raise ConfigError(f'override {text!r} is not of the form section.key=value')
    return key.strip().split('.'), yaml.safe_load(value) if value.strip() else ''


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Returns a copy of ``raw`` with every ``dotted.key=value`` override applied."""
    result = copy.deepcopy(raw)
    for text in overrides:
        path, value = parse_override(text)
        node = result
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f'override {text!r}: {part!r} is not a section')
            node = child
        node[path[-1]] = value
    return result


def resolve_config_path(name_or_path: str) -> Path:
    """Accepts a path or a bare name of a file in ``training/configs/`` (``demo``)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    for candidate in (CONFIG_DIR / name_or_path, CONFIG_DIR / f'{name_or_path}.yaml'):
        if candidate.is_file():
            return candidate
    raise ConfigError(f'config {name_or_path!r} not found (also looked in {CONFIG_DIR})')


def read_yaml(path: Path) -> dict[str, Any]:
    """Reads a YAML mapping, following an optional ``base: other.yaml`` key recursively."""
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as error:
        raise ConfigError(f'{path}: cannot read config: {error}') from error
    if not isinstance(raw, dict):
        raise ConfigError(f'{path}: a config must be a mapping')
    base = raw.pop('base', None)
    if base is None:
        return raw
    return _merge(read_yaml(resolve_config_path(str(path.parent / base))), raw)


# Mappings that a later file replaces as a whole (dataset keywords differ between datasets).
_LEAVES = ('options', 'overrides')


def _merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict) and key not in _LEAVES:
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def load_config(names: str | list[str] | None,
                overrides: list[str] | None = None) -> TrainConfig:
    """Reads config files merged left to right (or the defaults) and applies overrides.

    Args:
        names: One name or path, or several (later files override earlier ones, e.g.
            ``['touch_and_go', 'paper_optimizer']``), or None for the built-in defaults.
        overrides: ``dotted.key=value`` strings applied last.
    """
    raw: dict[str, Any] = {}
    for name in [names] if isinstance(names, str) else names or []:
        raw = _merge(raw, read_yaml(resolve_config_path(name)))
    return TrainConfig.from_dict(apply_overrides(raw, overrides or []))


def save_config(config: TrainConfig, path: Path) -> None:
    """Writes the resolved config as YAML (atomically)."""
    atomic_write_text(path, yaml.safe_dump(config.to_dict(), sort_keys=False))
