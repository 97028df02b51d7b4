"""tacto_c: flat objects lying on a table, touched near their rims; the camera looks down at them.

Written after the stage-1 defaults of 0.5 were fixed and never used to choose them: a third
design for checking those defaults on data nobody tuned them on. Every touch is a new object:
a slab (disc, ellipse, rotated rectangle, triangle or rounded square, 30 to 60 mm across) of one
of seven materials, lying on the session's table. The sensor comes down near the slab's rim, so
the gel usually sees a part of the outline (a straight edge, a curve, a corner) as a raised
plateau carrying the material's relief; sometimes it lands inside the slab. The camera looks
down at a slant: the table, the slab in its colour and pattern at camera scale (brick courses,
tile grout, rubber studs, grass blades, knit rows, paper, plastic), its shadow, and the DIGIT's
body hiding the part of the scene behind the contact. What both sensors share is the outline
under the gel, the pattern's orientation and spacing, and the material; soft materials give way
(the plateau's step and the relief are rounded off, the gel is pressed less).
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
    Material('Plastic', False, False, 'smooth, saturated colour, a moulding seam'),
    Material('Brick', False, True, 'coarse grains between mortar joints, red-brown'),
    Material('Tile', False, False, 'glazed, smooth squares between grout grooves'),
    Material('Rubber', False, True, 'a grid of small studs, dark'),
    Material('Grass', True, True, 'thin blades along one direction, green; gel takes ~50 %'),
    Material('Natural Fabric', True, True, 'knitted rows of loops, beige; gel takes ~55 %'),
    Material('Paper', True, False, 'a thin sheet, faint fibres, white; gel takes ~70 %'),
)
_COLOURS = ((0.80, 0.20, 0.18), (0.62, 0.30, 0.20), (0.78, 0.82, 0.80), (0.15, 0.15, 0.16),
            (0.28, 0.55, 0.22), (0.80, 0.72, 0.58), (0.92, 0.92, 0.90))
_GEL_SHARE = (1.0, 1.0, 1.0, 1.0, 0.5, 0.55, 0.7)
_OUTLINES = ('disc', 'ellipse', 'rectangle', 'triangle', 'rounded_square')
SCALE = 3  # field pixels per camera pixel
FIELD = (SCALE * CAMERA_ROWS, SCALE * CAMERA_COLS)  # at GEL_MM_PER_PX: 67.5 mm x 90 mm


def _outline(rng: np.random.Generator, name: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Signed distance-like field (mm, negative inside) of one outline centred at u = v = 0."""
    if name == 'disc':
        return np.sqrt(u ** 2 + v ** 2) - rng.uniform(16, 26)
    if name == 'ellipse':
        a, b = rng.uniform(20, 30), rng.uniform(11, 18)
        return (np.sqrt((u / a) ** 2 + (v / b) ** 2) - 1) * b
    if name == 'rectangle':
        return np.maximum(np.abs(u) - rng.uniform(16, 28), np.abs(v) - rng.uniform(10, 18))
    if name == 'triangle':
        size = rng.uniform(26, 40)
        normals = [(np.cos(t), np.sin(t)) for t in (np.pi / 2, np.pi / 2 + 2 * np.pi / 3,
                                                    np.pi / 2 + 4 * np.pi / 3)]
        return np.max([u * nx + v * ny - size / 2 for nx, ny in normals], axis=0)
    half, radius = rng.uniform(14, 22), rng.uniform(3, 7)
    qu, qv = np.abs(u) - half + radius, np.abs(v) - half + radius
    outside = np.sqrt(np.clip(qu, 0, None) ** 2 + np.clip(qv, 0, None) ** 2)
    return outside + np.minimum(np.maximum(qu, qv), 0) - radius


def _relief(rng: np.random.Generator, material: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Relief (mm) and albedo shade (around 1) over `FIELD`, and the slab's thickness (mm)."""
    u, v = rotated_grid(FIELD, GEL_MM_PER_PX, rng.uniform(0, np.pi),
                        (rng.uniform(0, FIELD[0]), rng.uniform(0, FIELD[1])))
    px = 1.0 / GEL_MM_PER_PX
    name = MATERIALS[material].name
    thickness = rng.uniform(2.5, 5.0)
    if name == 'Plastic':
        seam = np.exp(-0.5 * (u / 0.25) ** 2)
        relief = 0.06 * seam + 0.005 * smooth_noise(rng, FIELD, 3 * px)
        shade = 1.0 + 0.25 * np.exp(-0.5 * ((v - rng.uniform(-10, 10)) / 6.0) ** 2)
    elif name == 'Brick':
        course, length = rng.uniform(6, 9), rng.uniform(14, 20)
        row = np.floor(v / course)
        along = u + 0.5 * length * (row % 2)
        joint = np.minimum(np.abs(v - course * np.round(v / course)),
                           np.abs(along - length * np.round(along / length)))
        mortar = joint < 0.6
        relief = 0.12 * smooth_noise(rng, FIELD, 0.35 * px) - 0.35 * mortar
        shade = np.where(mortar, 1.45, 1.0 + 0.1 * smooth_noise(rng, FIELD, 1.5))
    elif name == 'Tile':
        period = rng.uniform(9, 14)
        groove = np.minimum(np.abs(u - period * np.round(u / period)),
                            np.abs(v - period * np.round(v / period))) < 0.5
        relief = -0.3 * groove + 0.003 * smooth_noise(rng, FIELD, 2 * px)
        shade = np.where(groove, 0.6, 1.0)
    elif name == 'Rubber':
        pitch = rng.uniform(1.8, 2.6)
        du, dv = u - pitch * np.round(u / pitch), v - pitch * np.round(v / pitch)
        stud = np.clip(1 - np.sqrt(du ** 2 + dv ** 2) / (0.35 * pitch), 0, None)
        relief = 0.15 * np.sqrt(stud)
        shade = 1.0 + 1.2 * stud
    elif name == 'Grass':
        blades = cv2.GaussianBlur(rng.standard_normal(FIELD).astype(np.float32), (0, 0), 1.0)
        streak = smooth_noise(rng, FIELD, 0.5 * px)
        relief = 0.25 * np.tanh(1.5 * (streak + 0.3 * blades / (blades.std() + 1e-6)))
        relief = _smear(relief, rng.uniform(0, np.pi))
        shade = 0.85 + 0.4 * (relief - relief.min()) / (np.ptp(relief) + 1e-6)
    elif name == 'Natural Fabric':
        period = rng.uniform(2.0, 3.0)
        loops = np.cos(np.pi * v / period) ** 2 * (0.6 + 0.4 * np.cos(2 * np.pi * u / period))
        relief = rng.uniform(0.15, 0.22) * loops
        shade = 0.8 + 0.35 * loops
    else:  # Paper: a thin sheet
        thickness = rng.uniform(0.6, 1.2)
        fibres = smooth_noise(rng, FIELD, 0.4 * px)
        relief = 0.01 * fibres
        shade = 1.0 + 0.03 * fibres
    return relief.astype(np.float32), shade.astype(np.float32), thickness


def _smear(relief: np.ndarray, angle: float) -> np.ndarray:
    """Blur along one direction (grass blades lie one way)."""
    length = 15
    kernel = np.zeros((length, length), np.float32)
    c = length // 2
    for t in np.linspace(-c, c, 4 * length):
        kernel[int(round(c + t * np.sin(angle))), int(round(c + t * np.cos(angle)))] = 1.0
    return cv2.filter2D(relief, -1, kernel / kernel.sum())


def session_style(rng: np.random.Generator) -> dict:
    """Per-session table, lighting and camera."""
    return {'table': rng.uniform(0.25, 0.7, 3).astype(np.float32),
            'table_grain': rng.uniform(0.0, 0.08),
            'azimuth': rng.uniform(0, 2 * np.pi),
            'tint': np.clip(1 + rng.normal(0, 0.05, 3), 0.8, 1.2) * rng.uniform(0.85, 1.15),
            'noise': rng.uniform(0.01, 0.025)}


def _camera(inside: np.ndarray, albedo: np.ndarray, table: np.ndarray, style: dict,
            contact: tuple[float, float], lift_mm: float, thickness: float) -> np.ndarray:
    """Top-down slanted view at camera resolution, the sensor body hiding what lies behind it."""
    shift = thickness / GEL_MM_PER_PX
    dy, dx = int(round(shift * np.sin(style['azimuth']))), int(round(shift * np.cos(
        style['azimuth'])))
    shadow = cv2.GaussianBlur(np.roll(inside.astype(np.float32), (dy, dx), axis=(0, 1)),
                              (0, 0), 4.0)
    scene = np.where(inside[..., None], albedo, table * (1 - 0.45 * shadow)[..., None])
    image = cv2.resize(scene.astype(np.float32), (CAMERA_COLS, CAMERA_ROWS),
                       interpolation=cv2.INTER_AREA)
    rows, cols = np.mgrid[0:CAMERA_ROWS, 0:CAMERA_COLS].astype(np.float32)
    mm = GEL_MM_PER_PX * SCALE
    cr, cc = contact[0] / SCALE, contact[1] / SCALE
    half = 11.0 / mm
    bottom = cr - 0.6 * lift_mm / mm  # hides the far half of the gel's footprint
    body = (np.abs(cols - cc) <= half) & (rows <= bottom)
    plastic = 0.10 + 0.06 * (cols - cc + half) / (2 * half)
    window = rows > bottom - 3.0 / mm
    colour = np.where(window[..., None], np.array([0.62, 0.64, 0.68]), plastic[..., None])
    image = np.where(body[..., None], colour, image)
    return image * style['tint']


def render_touch(rng: np.random.Generator, material: int, style: dict,
                 presses: int) -> list[tuple[np.ndarray, np.ndarray | None]]:
    """One touch: (camera RGB uint8 (120, 160, 3), gel deformation mm (160, 106) or None).

    The first pair is the approach (sensor lifted: None); then `presses` frames pressing deeper.
    """
    outline = _OUTLINES[rng.integers(len(_OUTLINES))]
    centre = np.array([rng.uniform(0.4, 0.6) * FIELD[0], rng.uniform(0.4, 0.6) * FIELD[1]])
    u, v = rotated_grid(FIELD, GEL_MM_PER_PX, rng.uniform(0, 2 * np.pi), tuple(centre))
    distance = _outline(rng, outline, u, v)
    soft = MATERIALS[material].soft
    relief, shade, thickness = _relief(rng, material)
    step = 1.0 if soft else 0.25  # mm over which the rim rounds off
    slab = thickness * np.clip(0.5 - distance / step, 0, 1)
    inside = distance < 0
    height = slab + np.where(inside, relief, 0.0)
    if soft:
        height = cv2.GaussianBlur(height.astype(np.float32), (0, 0), 0.5 / GEL_MM_PER_PX)
    # The contact: a point of the rim, moved along the outward normal (mostly onto the slab).
    rim = np.argwhere(np.abs(distance) < 0.3)
    half_r, half_c = GEL_ROWS // 2 + 2, GEL_COLS // 2 + 2
    rim = rim[(rim[:, 0] >= half_r) & (rim[:, 0] < FIELD[0] - half_r)
              & (rim[:, 1] >= half_c) & (rim[:, 1] < FIELD[1] - half_c)]
    point = rim[rng.integers(len(rim))].astype(np.float32)
    gy, gx = np.gradient(distance)
    normal = np.array([gy[int(point[0]), int(point[1])], gx[int(point[0]), int(point[1])]])
    normal /= np.linalg.norm(normal) + 1e-6
    at = point + normal * rng.uniform(-9.0, 3.0) / GEL_MM_PER_PX
    at = np.clip(np.round(at), [half_r, half_c], [FIELD[0] - half_r, FIELD[1] - half_c])
    top, left = int(at[0]) - GEL_ROWS // 2, int(at[1]) - GEL_COLS // 2
    patch = height[top:top + GEL_ROWS, left:left + GEL_COLS]
    albedo = jitter_colour(rng, _COLOURS[material], 0.12) * shade[..., None]
    share = float(np.clip(_GEL_SHARE[material] + (rng.uniform(-0.08, 0.08) if soft else 0), 0, 1))
    press_step = rng.uniform(0.3, 0.45)
    table = style['table'] * (1 + style['table_grain'] * smooth_noise(rng, FIELD, 6.0))[..., None]
    pairs = []
    for k in range(presses + 1):
        lift = rng.uniform(6, 10) if k == 0 else 0.0
        camera = _camera(inside, albedo, table, style, (at[0], at[1]), lift, thickness)
        camera = camera + rng.normal(0, style['noise'], camera.shape)
        depth = None if k == 0 else np.clip(patch - patch.max() + share * k * press_step, 0,
                                            None)
        pairs.append((to_uint8(camera), depth))
    return pairs
