"""tacto_b: shaped objects (spheres, edges, cones, rings, pins...) pressed into the DIGIT gel.

Every touch presses a new object: one of eight shapes (size, orientation and position on the gel
drawn per touch) made of one of eight materials. The material sets the micro-texture on the
shape (grain ridges, weave, rock grains, or none) and its stiffness: the hand moves the sensor
down in equal steps (a step size drawn per touch); a hard object stays put and the gel takes the
whole displacement, a soft one gives way, so the gel is indented only a fraction of it and the
object's shape and texture are rounded off. The camera looks from the side: the object on a
table, the sensor coming down on it, the soft object's top dented. Hard/soft is what the gel
indentation depth says against the displacement (force) the camera shows.
"""

from common import (
    CAMERA_COLS,
    CAMERA_ROWS,
    GEL_COLS,
    GEL_MM_PER_PX,
    GEL_ROWS,
    jitter_colour,
    Material,
    rotated_grid,
    smooth_noise,
    to_uint8,
)
import cv2
import numpy as np

MATERIALS = (
    Material('Metal', False, False, 'no texture, grey'),
    Material('Glass', False, False, 'no texture, pale and see-through'),
    Material('Wood', False, True, 'fine grain ridges, brown'),
    Material('Rock', False, True, 'grains, grey-brown speckle'),
    Material('Leather', True, False, 'faint pebbles, brown; gel takes ~50 % of the press'),
    Material('Paper', True, False, 'faint fibres, white stack; gel takes ~65 %'),
    Material('Synthetic Fabric', True, True, 'fine weave, coloured; gel takes ~45 %'),
    Material('Natural Fabric', True, True, 'coarse irregular weave, beige; gel takes ~55 %'),
)
SHAPES = ('sphere', 'cylinder', 'edge', 'face', 'cone', 'ring', 'pins', 'ellipsoid')
_GEL_SHARE = (1.0, 1.0, 1.0, 1.0, 0.5, 0.65, 0.45, 0.55)  # share of the press the gel takes
_COLOURS = ((0.60, 0.62, 0.65), (0.75, 0.85, 0.90), (0.58, 0.40, 0.22), (0.50, 0.47, 0.42),
            (0.45, 0.28, 0.16), (0.90, 0.90, 0.87), (0.35, 0.38, 0.62), (0.78, 0.70, 0.55))
CAMERA_MM_PER_PX = 0.2  # side view: 32 mm x 24 mm
_TABLE_ROW = 105
_WIDE_COLS = int(round(CAMERA_COLS * CAMERA_MM_PER_PX / GEL_MM_PER_PX))  # shape grid for the view
_FLOOR = -20.0  # height (mm) of "no shape here"


def _shape_height(rng: np.random.Generator, shape: str, u: np.ndarray,
                  v: np.ndarray) -> np.ndarray:
    """Height (mm, apex at or near 0, `_FLOOR` off the shape) of one shape at (u, v) mm."""
    r = np.sqrt(u ** 2 + v ** 2)

    def cap(radius: np.ndarray | float, dist: np.ndarray) -> np.ndarray:
        return np.where(dist < radius, np.sqrt(np.clip(radius ** 2 - dist ** 2, 0, None))
                        - radius, _FLOOR)

    if shape == 'sphere':
        return cap(rng.uniform(4, 9), r)
    if shape == 'cylinder':
        return cap(rng.uniform(2.5, 5), np.abs(v))
    if shape == 'edge':
        slope, rounding = rng.uniform(0.4, 0.9), 0.4
        return -slope * (np.sqrt(v ** 2 + rounding ** 2) - rounding)
    if shape == 'face':
        outside = np.maximum(np.abs(u) - rng.uniform(3, 6), np.abs(v) - rng.uniform(3, 6))
        return -3.0 * np.clip(outside, 0, None)
    if shape == 'cone':
        slope, rounding = rng.uniform(0.3, 0.6), 0.5
        return -slope * (np.sqrt(r ** 2 + rounding ** 2) - rounding)
    if shape == 'ring':
        return cap(rng.uniform(0.8, 1.5), np.abs(r - rng.uniform(3, 6)))
    if shape == 'pins':
        count, pitch, radius = rng.integers(2, 4), rng.uniform(4, 5.5), rng.uniform(1.0, 1.6)
        offsets = (np.arange(count) - (count - 1) / 2) * pitch
        height = np.full(u.shape, _FLOOR, np.float32)
        for du in offsets:
            for dv in offsets:
                dist = np.sqrt((u - du) ** 2 + (v - dv) ** 2)
                height = np.maximum(height, np.where(dist < radius, -0.5 * np.clip(
                    dist - radius + 0.4, 0, None), _FLOOR))
        return height
    a, b, c = rng.uniform(4, 9), rng.uniform(2, 4), 3.0  # ellipsoid
    inside = 1 - (u / a) ** 2 - (v / b) ** 2
    return np.where(inside > 0, c * np.sqrt(np.clip(inside, 0, None)) - c, _FLOOR)


def _texture(rng: np.random.Generator, material: int, shape: tuple[int, int]) -> np.ndarray:
    """Micro-texture (mm) of the material over a grid of `shape` at GEL_MM_PER_PX."""
    u, v = rotated_grid(shape, GEL_MM_PER_PX, rng.uniform(0, np.pi))
    px = 1.0 / GEL_MM_PER_PX
    name = MATERIALS[material].name
    if name == 'Wood':
        ridge = 0.5 + 0.5 * np.sin(2 * np.pi * v / rng.uniform(1.0, 1.6))
        return rng.uniform(0.08, 0.12) * ridge
    if name == 'Rock':
        return rng.uniform(0.06, 0.09) * smooth_noise(rng, shape, 0.35 * px)
    if name in ('Synthetic Fabric', 'Natural Fabric'):
        coarse = name == 'Natural Fabric'
        period = rng.uniform(1.4, 2.0) if coarse else rng.uniform(0.9, 1.3)
        wobble = 0.25 * smooth_noise(rng, shape, 2 * px) if coarse else 0.0
        over = (np.floor(u / period) + np.floor(v / period)) % 2
        thread = (over * np.cos(np.pi * (v + wobble) / period) ** 2
                  + (1 - over) * np.cos(np.pi * (u + wobble) / period) ** 2)
        return (rng.uniform(0.10, 0.14) if coarse else rng.uniform(0.08, 0.10)) * thread
    amplitude = {'Metal': 0.004, 'Glass': 0.0, 'Leather': 0.025, 'Paper': 0.008}[name]
    return amplitude * smooth_noise(rng, shape, (0.5 if name == 'Leather' else 0.3) * px)


def session_style(rng: np.random.Generator) -> dict:
    """Per-session scene: wall and table colours, tint, camera noise."""
    return {'wall': rng.uniform(0.35, 0.75, 3).astype(np.float32),
            'table': rng.uniform(0.2, 0.6, 3).astype(np.float32),
            'tint': np.clip(1 + rng.normal(0, 0.05, 3), 0.8, 1.2) * rng.uniform(0.85, 1.15),
            'noise': rng.uniform(0.01, 0.025)}


def _material_fill(rng: np.random.Generator, material: int) -> np.ndarray:
    """Side-view appearance of the material: float RGB (CAMERA_ROWS, CAMERA_COLS, 3)."""
    shape = (CAMERA_ROWS, CAMERA_COLS)
    rows = np.mgrid[0:CAMERA_ROWS, 0:CAMERA_COLS][0].astype(np.float32)
    name = MATERIALS[material].name
    colour = _COLOURS[material]
    if name == 'Synthetic Fabric':
        colour = ((0.35, 0.38, 0.62), (0.62, 0.22, 0.22), (0.30, 0.50, 0.32),
                  (0.55, 0.55, 0.60))[rng.integers(4)]
    base = jitter_colour(rng, colour, 0.12)
    shade = np.ones(shape, np.float32)
    if name == 'Wood':
        shade += 0.12 * np.sin(2 * np.pi * (rows + 3 * smooth_noise(rng, shape, 6)) / 5.0)
    elif name in ('Rock', 'Leather'):
        shade += (0.12 if name == 'Rock' else 0.05) * smooth_noise(rng, shape, 0.8)
    elif name == 'Paper':
        shade += 0.04 * np.sin(2 * np.pi * rows / 2.5)
    elif name in ('Synthetic Fabric', 'Natural Fabric'):
        period = 3.0 if name == 'Natural Fabric' else 2.0
        cols = np.mgrid[0:CAMERA_ROWS, 0:CAMERA_COLS][1]
        shade += 0.08 * (np.sin(2 * np.pi * rows / period) * np.sin(2 * np.pi * cols / period))
    elif name == 'Metal':
        shade += 0.3 * np.exp(-0.5 * ((rows - rng.uniform(40, 90)) / 6.0) ** 2)
    return base * shade[..., None]


def _draw_scene(fill: np.ndarray, top_mm: np.ndarray, sensor: tuple[float, float, float],
                glass: bool, style: dict) -> np.ndarray:
    """Side view: wall, table, the object up to `top_mm` (per column), the sensor.

    Args:
        fill: (CAMERA_ROWS, CAMERA_COLS, 3) float RGB of the object's material.
        top_mm: (CAMERA_COLS,) height of the object's top above the table per column, mm.
        sensor: (centre column px, gel bottom height mm above the table, gel thickness mm).
        glass: Draw the object see-through with a bright rim.
        style: The session's `session_style`.
    """
    rows, cols = np.mgrid[0:CAMERA_ROWS, 0:CAMERA_COLS].astype(np.float32)
    height_mm = (_TABLE_ROW - rows) * CAMERA_MM_PER_PX
    image = np.where((rows < _TABLE_ROW)[..., None], style['wall'], style['table'])
    image = image * (1 - 0.25 * rows / CAMERA_ROWS)[..., None]
    inside = (height_mm >= 0) & (height_mm <= top_mm[None, :])
    lit = fill * (1 - 0.3 * np.clip((top_mm[None, :] - height_mm) / 12.0, 0, 1))[..., None]
    if glass:  # see-through, a bright rim along the top
        rim = np.abs(height_mm - top_mm[None, :]) < 2 * CAMERA_MM_PER_PX
        lit = 0.5 * lit + 0.5 * image + 0.3 * rim[..., None]
    image = np.where(inside[..., None], lit, image)
    centre, gel_bottom, gel_mm = sensor
    half = 10.0 / CAMERA_MM_PER_PX
    across = np.abs(cols - centre) <= half
    gel = across & (height_mm >= gel_bottom) & (height_mm < gel_bottom + gel_mm)
    body = (np.abs(cols - centre) <= half + 1.0 / CAMERA_MM_PER_PX) & (
        height_mm >= gel_bottom + gel_mm)
    image = np.where(gel[..., None], np.array([0.70, 0.72, 0.78]), image)
    image = np.where(body[..., None], np.array([0.12, 0.12, 0.13]), image)
    return image * style['tint']


def render_touch(rng: np.random.Generator, material: int, style: dict,
                 presses: int) -> list[tuple[np.ndarray, np.ndarray | None]]:
    """One touch: (camera RGB uint8 (120, 160, 3), gel deformation mm (160, 106) or None).

    The first pair is the approach (sensor above the object: None); then `presses` frames, the
    sensor moved down one more step each.
    """
    shape = SHAPES[rng.integers(len(SHAPES))]
    offset = np.array([rng.uniform(-6, 6), rng.uniform(-4, 4)])  # shape on the gel, mm
    wide = (GEL_ROWS, _WIDE_COLS)
    u, v = rotated_grid(wide, GEL_MM_PER_PX, rng.uniform(0, np.pi),
                        (wide[0] / 2 + offset[0] / GEL_MM_PER_PX,
                         wide[1] / 2 + offset[1] / GEL_MM_PER_PX))
    height = _shape_height(rng, shape, u, v).astype(np.float32)
    height = height + np.where(height > _FLOOR, _texture(rng, material, wide), 0.0)
    soft = MATERIALS[material].soft
    share = float(np.clip(_GEL_SHARE[material] + (rng.uniform(-0.08, 0.08) if soft else 0), 0, 1))
    if soft:  # the object conforms: its shape and texture are rounded off
        height = cv2.GaussianBlur(height, (0, 0), 0.5 / GEL_MM_PER_PX)
    left = (_WIDE_COLS - GEL_COLS) // 2
    gel_height = height[:, left:left + GEL_COLS]
    apex = float(height.max())  # a peak beside the gel meets the sensor first: partial contact
    # Side view: the highest point of each column of the wide grid, resampled to camera columns.
    profile = cv2.resize(height.max(axis=0)[None, :], (CAMERA_COLS, 1),
                         interpolation=cv2.INTER_AREA)[0]
    base, bump = rng.uniform(8, 12), rng.uniform(3, 5)
    top = base + np.clip(profile - apex + bump, 0, None)
    fill = _material_fill(rng, material)
    step, gap = rng.uniform(0.25, 0.4), rng.uniform(3, 6)
    xs = (np.arange(CAMERA_COLS) - CAMERA_COLS / 2) * CAMERA_MM_PER_PX
    dent_shape = np.exp(-0.5 * (xs / 6.0) ** 2)
    pairs = []
    for k in range(presses + 1):
        press = k * step
        sink = (1 - share) * press  # the soft object's top gives way
        object_top = top - sink * dent_shape
        gel_bottom = base + bump - sink + (gap if k == 0 else 0.0)
        sensor = (CAMERA_COLS / 2, gel_bottom, 2.5 - share * press * 0.5)
        camera = _draw_scene(fill, object_top, sensor, MATERIALS[material].name == 'Glass',
                             style)
        camera = camera + rng.normal(0, style['noise'], camera.shape)
        depth = None if k == 0 else np.clip(gel_height - apex + share * press, 0, None)
        pairs.append((to_uint8(camera), depth))
    return pairs
