"""The synthetic grasp world, written in the Feeling of Success HDF5 layout.

A two-finger gripper closes on an object standing on a table. Whether the lift succeeds depends on
three hidden quantities, each shown by a different sensor:

- the grasp offset (gripper centre to object centre, in object half-widths), which only the
  camera shows (the object carries a centre stripe);
- the contact patch (how much of the finger pads the object covers), shown by both the camera
  (finger height on the object) and the GelSight frames (patch size);
- slip (low friction for the object's weight), which only the GelSights show, as marker shear
  and a smeared patch.

P(success) = sigmoid(1.6 (2 - 4 |offset| + 2 (contact - 0.5) - 5 (slip - 0.5) + bias)), with a
per-object bias, and the label is drawn from it, so labels are noisy even with full information.
The weights were chosen so that, by simulation of the hidden quantities, the best possible
accuracy is about 85% from everything, 74% from what the camera shows (offset, contact, object)
and 75% from what the GelSights show (contact, slip).
"""

from collections.abc import Callable
from pathlib import Path

import cv2
import h5py
import numpy as np

from convitac_ros.data.feeling_of_success import is_test_object
from convitac_ros.data.synthetic.materials import FEELS
from convitac_ros.data.synthetic.render import (
    CAMERA_SHAPE,
    gelsight,
    grid,
    smooth_noise,
    TACTILE_SHAPE,
    tactile_texture,
    to_uint8,
)

TRIALS_PER_FILE = 50
_COLOURS = {'red': (0.8, 0.2, 0.2), 'blue': (0.2, 0.3, 0.8), 'green': (0.2, 0.65, 0.3),
            'yellow': (0.85, 0.8, 0.2), 'purple': (0.55, 0.3, 0.7), 'orange': (0.9, 0.5, 0.15)}
_SHAPES = {'box': (30, 34), 'bottle': (18, 46), 'can': (22, 30), 'cup': (26, 24),
           'block': (36, 22)}  # (width, height) in camera pixels
OBJECTS = tuple(f'{colour}_{shape}' for colour in _COLOURS for shape in _SHAPES)


def _box(x: np.ndarray, y: np.ndarray, left: float, top: float, right: float, bottom: float,
         soft: float = 0.8) -> np.ndarray:
    """Anti-aliased rectangle mask in [0, 1], (H, W)."""
    def ramp(v: np.ndarray) -> np.ndarray:
        return np.clip(v / soft + 0.5, 0.0, 1.0)

    return ramp(x - left) * ramp(right - x) * ramp(y - top) * ramp(bottom - y)


def _paint(image: np.ndarray, mask: np.ndarray, colour: np.ndarray) -> np.ndarray:
    return image * (1.0 - mask[..., None]) + mask[..., None] * colour[None, None, :]


def _camera(rng: np.random.Generator, obj: dict, trial: dict, phase: str) -> np.ndarray:
    """Kinect view of one phase ('before', 'during', 'after'): float32 (H, W, 3)."""
    height, width = CAMERA_SHAPE
    x, y = grid(CAMERA_SHAPE)
    table_y = 70.0
    image = np.where((y > table_y)[..., None], np.array([0.45, 0.36, 0.28]),
                     np.array([0.75, 0.76, 0.78])).astype(np.float32)
    image = image * (1.0 + 0.04 * trial['background'][..., None]) * trial['tint']
    obj_w, obj_h = obj['size']
    lift = 20.0 if phase == 'after' and trial['success'] else 0.0
    left, bottom = trial['x'] - obj_w / 2, table_y - lift
    top = bottom - obj_h
    image = _paint(image, _box(x, y, left, top, left + obj_w, bottom), obj['colour'])
    stripe = _box(x, y, trial['x'] - 1.5, top + 2, trial['x'] + 1.5, bottom - 2)
    image = _paint(image, stripe, obj['colour'] * 0.45)
    grip_x = trial['x'] + trial['offset'] * obj_w / 2
    # Fingers close on the object at a height set by the contact quality.
    finger_bottom = top + 6 + trial['contact'] * (obj_h - 10) if phase != 'before' else top - 14
    gap = obj_w / 2 + (3.0 if phase != 'before' else 12.0)
    finger_bottom -= 22.0 if phase == 'after' else 0.0
    dark = np.array([0.15, 0.15, 0.17])
    for side in (-1.0, 1.0):
        finger = side * gap + grip_x
        image = _paint(image, _box(x, y, finger - 3, finger_bottom - 22, finger + 3,
                                   finger_bottom), dark)
    palm = _box(x, y, grip_x - gap - 3, finger_bottom - 28, grip_x + gap + 3, finger_bottom - 22)
    image = _paint(image, palm, dark)
    image = image + rng.normal(0.0, 0.02, image.shape)
    return image.astype(np.float32)


def _tactile(rng: np.random.Generator, obj: dict, trial: dict, phase: str,
             sensor: int) -> np.ndarray:
    """Render the GelSight view of one finger in one phase: float32 (H, W, 3)."""
    in_contact = phase == 'during' or (phase == 'after' and trial['success'])
    if not in_contact:
        return gelsight(rng, np.zeros(TACTILE_SHAPE, np.float32), gel=trial['gels'][sensor])
    x, y = grid(TACTILE_SHAPE)
    rows, cols = TACTILE_SHAPE
    patch_h = 16.0 + 50.0 * trial['contact']
    centre_y = rows / 2 + trial['patch_shift'][sensor]
    patch = _box(x, y, 14, centre_y - patch_h / 2, cols - 14, centre_y + patch_h / 2, soft=4.0)
    smear = 0.5 + 5.0 * trial['slip']
    patch = cv2.GaussianBlur(patch.astype(np.float32), (0, 0), sigmaX=1.5, sigmaY=smear)
    relief = 3.5 * patch * (1.0 + 0.6 * obj['textures'][sensor])
    shear = (rng.normal(0.0, 0.5), 10.0 * trial['slip'] + rng.normal(0.0, 0.5))
    return gelsight(rng, relief.astype(np.float32), shear, trial['gels'][sensor])


def _objects(seed: int) -> dict[str, dict]:
    rng = np.random.default_rng([seed, 2])
    table = {}
    for name in OBJECTS:
        colour, shape = name.split('_')
        width, height = _SHAPES[shape]
        feel = FEELS[list(FEELS)[rng.integers(len(FEELS))]]
        table[name] = {
            'colour': np.clip(np.array(_COLOURS[colour]) + rng.normal(0, 0.04, 3), 0, 1),
            'size': (width * rng.uniform(0.9, 1.1), height * rng.uniform(0.9, 1.1)),
            'slippery': rng.normal(0.0, 1.0), 'bias': rng.normal(0.0, 0.4),
            'textures': [tactile_texture(rng, feel) for _ in range(2)],
        }
    return table


def _trial(rng: np.random.Generator, obj: dict) -> dict:
    trial = {
        'offset': rng.uniform(-1.0, 1.0), 'contact': rng.uniform(0.0, 1.0),
        'slip': 1.0 / (1.0 + np.exp(-(0.5 * obj['slippery'] + rng.normal(0.0, 1.5)))),
        'x': rng.uniform(30.0, 66.0), 'patch_shift': rng.normal(0.0, 6.0, 2),
        'tint': np.clip(1.0 + rng.normal(0.0, 0.05, 3), 0.8, 1.2),
        'gels': [np.array([0.42, 0.44, 0.50]) + rng.normal(0, 0.02, 3) for _ in range(2)],
        'background': smooth_noise(rng, CAMERA_SHAPE, 12.0),
    }
    score = (2.0 - 4.0 * abs(trial['offset']) + 2.0 * (trial['contact'] - 0.5)
             - 5.0 * (trial['slip'] - 0.5) + obj['bias'])
    trial['success'] = bool(rng.random() < 1.0 / (1.0 + np.exp(-1.6 * score)))
    return trial


def generate_feeling_of_success(output: str | Path, samples: int = 600, seed: int = 0,
                                progress: Callable[[int], None] | None = None) -> dict[str, int]:
    """Write a synthetic Feeling of Success dataset (``calandra_corl2017_NNN.h5`` files).

    Args:
        output: Directory to create (may exist; files are overwritten).
        samples: Number of grasp trials.
        seed: Random seed; the same seed writes byte-identical files.
        progress: Called with the number of trials finished since the last call.

    Returns:
        Counts: 'samples', 'train', 'test' (the loader's default object split), 'successes',
        'files'.
    """
    if samples < 1:
        raise ValueError(f'samples must be >= 1, got {samples}')
    root = Path(output)
    root.mkdir(parents=True, exist_ok=True)
    objects = _objects(seed)
    files = -(-samples // TRIALS_PER_FILE)
    successes = tested = 0
    for file_index in range(files):
        path = root / f'calandra_corl2017_{file_index:03d}.h5'
        count = min(TRIALS_PER_FILE, samples - file_index * TRIALS_PER_FILE)
        with h5py.File(path, 'w', libver='earliest') as handle:
            data = handle.create_group('data')
            for k in range(count):
                rng = np.random.default_rng([seed, 3, file_index, k])
                name = OBJECTS[rng.integers(len(OBJECTS))]
                trial = _trial(rng, objects[name])
                group = data.create_group(f'i{k}')
                group.attrs['object_name'] = np.bytes_(name)
                group.attrs['is_gripping'] = np.bool_(trial['success'])
                for phase in ('before', 'during', 'after'):
                    images = {'kinectA_rgb': _camera(rng, objects[name], trial, phase)}
                    for sensor, key in enumerate(('gelsightA', 'gelsightB')):
                        images[key] = _tactile(rng, objects[name], trial, phase, sensor)
                    for key, image in images.items():
                        group.create_dataset(f'{key}_{phase}', data=to_uint8(image),
                                             compression='gzip', compression_opts=4,
                                             track_times=False)
                successes += trial['success']
                tested += is_test_object(name)
                if progress is not None:
                    progress(1)
    return {'samples': samples, 'train': samples - tested, 'test': tested,
            'successes': successes, 'files': files}
