"""The synthetic material world, written in the Touch and Go layout.

Each session is a recording of several touches. A touch is a short press-in: one approach frame
(the sensor above the surface, labelled -1 Inconclusive like Touch and Go's frames without
contact) and three frames pressing deeper. The camera sees 3-4 material regions and the sensor
pressing one of them; the label is the touched material. In most scenes another region shows the
material that feels the same as the touched one, so a fused model must find the contact area in
the image rather than look for a colour anywhere. Sessions differ in illumination and gel tint;
train.txt and test.txt are split by session (sessions 2, 7, 12, ... are test sessions), so the test
measures generalisation to new scenes.

Camera and touch also share instance-level information at the contact: every touched object
instance carries its own texture (a `Weave`: one of 8 orientations x 2 periods, drawn
independently of the material), seen on its surface by the camera and printed into the gel.
Only the touched instance shows such a texture: with textures on other regions too (tried), the
tiny E^c read the camera's texture far more slowly (a supervised probe: 36 % vs 82 % of the codes
after 8 epochs), too slowly for a CPU-sized stage 1. The instance codes of every contact frame
are written to `INSTANCES_FILE` (not part of the Touch and Go layout; the loaders ignore it);
`retrieval.py` turns them into the visual-to-tactile retrieval ceiling.

With ``fingers=2`` the sensor is one finger of a two-finger gripper pinching the surface: the
opposite finger's GelSight (a contact of its own with the same material and instance texture,
pressed as deep) goes to ``<session>/gelsight_b_frame/`` under the same frame names, which
``TouchAndGo(num_tactile=2)`` reads. It is drawn from random streams of its own, so the camera
and first-finger frames are byte-identical to those of ``fingers=1``.
"""

from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import cv2
import numpy as np

from convitac_ros.data.synthetic.materials import FEELS, LOOKS, MATERIALS, tactile_twin
from convitac_ros.data.synthetic.render import (
    CAMERA_SHAPE,
    draw_contact,
    draw_sensor,
    draw_weave,
    gelsight,
    height_field,
    partition,
    surface,
    to_uint8,
    Weave,
)

TOUCHES_PER_SESSION = 6
LABELLED_PER_TOUCH = 3
TEST_EVERY = 5  # session i is a test session when i % TEST_EVERY == 2 (from 3 sessions on)
_JPEG = [cv2.IMWRITE_JPEG_QUALITY, 95]
_TWIN_DISTRACTOR = 0.7  # probability that the tactile twin appears elsewhere in the scene
_MARGIN = 10.0  # minimum distance of the contact point from its region's border, pixels
INSTANCES_FILE = 'instances.txt'  # '<session>/<frame>,<material>,<weave code>' per contact frame


def session_name(index: int) -> str:
    """Session folder name in Touch and Go's YYYYMMDD_HHMMSS form, distinct per index."""
    return (datetime(2024, 3, 1, 9, 0, 0) + timedelta(minutes=37 * index)).strftime(
        '%Y%m%d_%H%M%S')


def _contact_point(rng: np.random.Generator, regions: np.ndarray) -> tuple[int, float, float]:
    """Pick a touched region and a point well inside it, near the image centre when possible.

    The camera follows the hand-held sensor (as in Touch and Go's videos), so contacts lie within
    about a tenth of the image size of its centre; scenes without room there fall back to wider
    boxes.
    """
    height, width = regions.shape
    margins = [(int(height * 0.4), int(width * 0.4)), (height // 4, width // 4), (12, 12)]
    for top, left in margins:
        inner = np.zeros_like(regions, dtype=bool)
        inner[top:height - top, left:width - left] = True
        choices = []
        for region in np.unique(regions):
            mask = (regions == region).astype(np.uint8)
            depth = cv2.distanceTransform(mask, cv2.DIST_L2, 3)
            ys, xs = np.nonzero((depth >= _MARGIN) & inner)
            if len(xs):
                choices.append((int(region), xs, ys))
        if choices:
            break
    region, xs, ys = choices[rng.integers(len(choices))]
    pick = rng.integers(len(xs))
    return region, float(xs[pick]), float(ys[pick])


def render_touch(rng: np.random.Generator, material: int, tint: np.ndarray, gel: np.ndarray,
                 weave: Weave) -> list[tuple[np.ndarray, np.ndarray]]:
    """Render one press-in of `material`: 4 (camera, GelSight) uint8 RGB pairs, approach first.

    Args:
        rng: Random generator of this touch.
        material: Index into `MATERIALS` of the touched material.
        tint: (3,) RGB illumination of the session.
        gel: (3,) RGB of the session's unpressed gel.
        weave: Texture of the touched instance (camera surface and gel imprint).
    """
    regions = partition(rng, CAMERA_SHAPE, int(rng.integers(3, 5)))
    touched, tip_x, tip_y = _contact_point(rng, regions)
    others = [i for i in range(len(MATERIALS)) if i != material]
    region_ids = [r for r in np.unique(regions) if r != touched]
    assigned = list(rng.choice(others, size=len(region_ids), replace=False))
    twin = tactile_twin(material)
    if rng.random() < _TWIN_DISTRACTOR and twin not in assigned:
        assigned[0] = twin
    light = tuple(rng.uniform(0, CAMERA_SHAPE[1], 2))
    scene = np.zeros((*CAMERA_SHAPE, 3), np.float32)
    weaves = [weave] + [None] * len(region_ids)
    for region, index, texture in zip([touched, *region_ids], [material, *assigned], weaves):
        mask = regions == region
        look = LOOKS[MATERIALS[index].look]
        scene[mask] = surface(rng, look, CAMERA_SHAPE, light, tint, texture)[mask]
    scene = cv2.GaussianBlur(scene, (0, 0), 0.6)
    contact = draw_contact(rng, FEELS[MATERIALS[material].feel], weave=weave)
    angle = rng.uniform(0, 2 * np.pi)
    depths = (0.0, rng.uniform(0.25, 0.4), rng.uniform(0.6, 0.75), rng.uniform(0.9, 1.0))
    lifts = (rng.uniform(12, 18), 2.0, 1.0, 0.0)
    shear = rng.normal(0.0, 0.6, 2)
    frames = []
    for depth, lift in zip(depths, lifts):
        camera = draw_sensor(scene, (tip_x, tip_y), angle, lift)
        camera = camera + rng.normal(0.0, 0.02, camera.shape)
        tactile = gelsight(rng, height_field(contact, depth), tuple(shear * depth), gel)
        frames.append((to_uint8(camera), to_uint8(tactile)))
    return frames


def render_opposite_finger(rng: np.random.Generator, material: int, gel: np.ndarray,
                           weave: Weave) -> list[np.ndarray]:
    """Render the opposite finger of a pinch of `material`: 4 uint8 RGB GelSight frames.

    The frames follow `render_touch`'s press-in (approach first, then three deeper presses).

    Args:
        rng: Random generator of this finger in this touch.
        material: Index into `MATERIALS` of the touched material.
        gel: (3,) RGB of the session's unpressed second gel.
        weave: Texture of the touched instance (both fingers hold the same object).
    """
    contact = draw_contact(rng, FEELS[MATERIALS[material].feel], weave=weave)
    depths = (0.0, rng.uniform(0.25, 0.4), rng.uniform(0.6, 0.75), rng.uniform(0.9, 1.0))
    shear = rng.normal(0.0, 0.6, 2)
    return [to_uint8(gelsight(rng, height_field(contact, depth), tuple(shear * depth), gel))
            for depth in depths]


def _write_rgb(path: Path, image: np.ndarray) -> None:
    if not cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR), _JPEG):
        raise OSError(f'cannot write image {path}')


def _write_list(path: Path, lines: list[str]) -> None:
    """Write a list file the way Touch and Go does: no newline after the last line."""
    path.write_text('\n'.join(lines), encoding='utf-8')


def generate_touch_and_go(output: str | Path, samples: int = 800, seed: int = 0,
                          progress: Callable[[int], None] | None = None,
                          fingers: int = 1) -> dict[str, int]:
    """Write a synthetic Touch and Go dataset.

    Args:
        output: Directory to create (may exist; files are overwritten).
        samples: Number of labelled frames (3 per touch; the last touch may be cut short).
        seed: Random seed; the same seed writes byte-identical files.
        progress: Called with the number of touches finished since the last call.
        fingers: 1 (one GelSight) or 2 (a pinch: also ``gelsight_b_frame``, see above).

    Returns:
        Counts: 'samples', 'train', 'test', 'sessions', 'touches'.
    """
    if samples < 1:
        raise ValueError(f'samples must be >= 1, got {samples}')
    if fingers not in (1, 2):
        raise ValueError(f'fingers must be 1 or 2, got {fingers}')
    folders = ('video_frame', 'gelsight_frame', 'gelsight_b_frame')[:1 + fingers]
    root = Path(output)
    root.mkdir(parents=True, exist_ok=True)
    touches = -(-samples // LABELLED_PER_TOUCH)
    order = np.random.default_rng([seed, 0])
    # Balanced classes: every block of len(MATERIALS) touches is a permutation of the classes.
    classes = np.concatenate([order.permutation(len(MATERIALS))
                              for _ in range(-(-touches // len(MATERIALS)))])[:touches]
    lists: dict[str, list[str]] = {'label': [], 'train': [], 'test': [], 'train_rough': [],
                                   'test_rough': [], 'instances': []}
    sessions = -(-touches // TOUCHES_PER_SESSION)
    for session in range(sessions):
        rng = np.random.default_rng([seed, 1, session])
        name = session_name(session)
        split = 'test' if session % TEST_EVERY == 2 else 'train'
        for folder in folders:
            (root / name / folder).mkdir(parents=True, exist_ok=True)
        tint = np.clip(rng.uniform(0.85, 1.15) * (1.0 + rng.normal(0, 0.05, 3)), 0.6, 1.4)
        gel = np.array([0.42, 0.44, 0.50]) + rng.normal(0, 0.03, 3)
        gel_b = np.array([0.42, 0.44, 0.50]) + np.random.default_rng(
            [seed, 4, session]).normal(0, 0.03, 3)
        frame = 0
        chunk = classes[session * TOUCHES_PER_SESSION:(session + 1) * TOUCHES_PER_SESSION]
        for touch, material in enumerate(chunk):
            weave = draw_weave(rng)
            images = [list(pair) for pair in render_touch(rng, int(material), tint, gel, weave)]
            if fingers == 2:
                finger_rng = np.random.default_rng([seed, 5, session, touch])
                for pair, tactile_b in zip(images, render_opposite_finger(
                        finger_rng, int(material), gel_b, weave)):
                    pair.append(tactile_b)
            # The last touch of the dataset stops once `samples` frames are labelled.
            labelled = len(lists['train']) + len(lists['test'])
            for step, pair in enumerate(images[:samples - labelled + 1]):
                frame += 1
                file = f'{frame:010d}.jpg'
                for folder, image in zip(folders, pair):
                    _write_rgb(root / name / folder / file, image)
                label = int(material) if step else -1
                lists['label'].append(f'{name}/{file},{label}')
                if step:
                    rough = int(FEELS[MATERIALS[material].feel].rough)
                    lists[split].append(f'{name}/{file},{label}')
                    lists[f'{split}_rough'].append(f'{name}/{file},{rough}')
                    lists['instances'].append(f'{name}/{file},{label},{weave.code}')
            if progress is not None:
                progress(1)
    for key, lines in lists.items():
        _write_list(root / (INSTANCES_FILE if key == 'instances' else f'{key}.txt'), lines)
    _write_list(root / 'category_reference.txt',
                [f'{m.name}: {i}' for i, m in enumerate(MATERIALS)])
    return {'samples': len(lists['train']) + len(lists['test']), 'train': len(lists['train']),
            'test': len(lists['test']), 'sessions': sessions, 'touches': touches}
