"""tacto_a: a DIGIT pressed onto textured surfaces; the camera looks at the touched surface.

Every touched object is a new instance: a height field whose pattern depends on the material
(wood ridges, fabric weave, concrete grains, leather pebbles, brushed metal, paper fibres) with
instance parameters (orientation, period, amplitude, colour). The camera image is that same
height field, lit (Lambert) and coloured, with the sensor body occluding the part behind the
contact; the gel deformation map is the part of the height field under the gel, pressed in
(a gently curved object: the contact grows with the press). Soft objects give way: the gel is
pressed less deeply, over a wider area, and their texture is flattened and blurred. Colours come
in look-alike pairs (grey: concrete/metal, brown: wood/leather, light: paper/fabric), so the
camera alone does not settle the material.
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
    Material('Concrete', False, True, 'isotropic grains and pits, grey'),
    Material('Metal', False, False, 'brushed, faint machining lines, grey'),
    Material('Wood', False, True, 'wavy parallel grain ridges, brown'),
    Material('Leather', True, False, 'low pebbles, brown'),
    Material('Synthetic Fabric', True, True, 'over-under weave, light'),
    Material('Paper', True, False, 'faint fibres, light'),
)
_COLOURS = ((0.56, 0.56, 0.55), (0.63, 0.64, 0.67), (0.56, 0.37, 0.21), (0.47, 0.30, 0.18),
            (0.84, 0.84, 0.86), (0.88, 0.87, 0.82))
FIELD = (2 * CAMERA_ROWS, 2 * CAMERA_COLS)  # height field at GEL_MM_PER_PX: 45 mm x 60 mm
CAMERA_MM_PER_PX = 2 * GEL_MM_PER_PX
_SLIDE_MARGIN = 8  # field pixels kept free around the gel footprint for the slide


def _pattern(rng: np.random.Generator, material: int) -> tuple[np.ndarray, np.ndarray]:
    """Height field (mm) and albedo shade (around 1) of one instance over `FIELD`."""
    angle = rng.uniform(0, np.pi)
    u, v = rotated_grid(FIELD, GEL_MM_PER_PX, angle, (rng.uniform(0, FIELD[0]),
                                                      rng.uniform(0, FIELD[1])))
    px = 1.0 / GEL_MM_PER_PX
    name = MATERIALS[material].name
    if name == 'Concrete':
        grains = 0.7 * smooth_noise(rng, FIELD, rng.uniform(0.5, 0.8) * px)
        grains += 0.3 * smooth_noise(rng, FIELD, 0.3 * px)
        pits = smooth_noise(rng, FIELD, 0.6 * px) < -1.7
        height = rng.uniform(0.11, 0.15) * grains - 0.3 * pits
        pitted = smooth_noise(rng, FIELD, 1.5) > 1.9
        shade = 1 + 0.1 * smooth_noise(rng, FIELD, 1.0) - 0.35 * pitted
    elif name == 'Metal':
        height = 0.008 * np.sin(2 * np.pi * v / rng.uniform(0.6, 1.0))
        height += 0.01 * smooth_noise(rng, FIELD, 8 * px)
        streaks = sum(rng.uniform(0.01, 0.04) * np.sin(2 * np.pi * v / rng.uniform(0.3, 3.0)
                                                       + rng.uniform(0, 2 * np.pi))
                      for _ in range(6))
        band = np.exp(-0.5 * ((u - rng.uniform(-15, 15)) / rng.uniform(8, 20)) ** 2)
        shade = 0.9 + streaks + 0.35 * band
    elif name == 'Wood':
        phase = v + rng.uniform(0.3, 1.0) * np.sin(2 * np.pi * u / rng.uniform(15, 30)
                                                   + rng.uniform(0, 2 * np.pi))
        ridge = (0.5 + 0.5 * np.sin(2 * np.pi * phase / rng.uniform(3.0, 5.0))) ** 2
        height = rng.uniform(0.22, 0.32) * ridge
        shade = 0.8 + 0.3 * ridge + 0.05 * smooth_noise(rng, FIELD, 1.0)
    elif name == 'Leather':
        pebbles = np.tanh(2 * smooth_noise(rng, FIELD, rng.uniform(1.0, 1.5) * px))
        height = rng.uniform(0.04, 0.06) * pebbles
        shade = 0.92 + 0.08 * pebbles
    elif name == 'Synthetic Fabric':
        period = rng.uniform(2.5, 3.5)
        along_u = np.cos(np.pi * v / period) ** 2
        along_v = np.cos(np.pi * u / period) ** 2
        over = (np.floor(u / period) + np.floor(v / period)) % 2
        thread = over * along_u + (1 - over) * along_v
        height = rng.uniform(0.22, 0.30) * thread
        shade = 0.75 + 0.3 * thread
    else:  # Paper
        fibres = smooth_noise(rng, FIELD, 0.4 * px)
        height = 0.012 * fibres
        shade = 1 + 0.03 * fibres
    return height.astype(np.float32), shade.astype(np.float32)


def session_style(rng: np.random.Generator) -> dict:
    """Per-session lighting and camera: light direction, tint, exposure, noise."""
    return {'azimuth': rng.uniform(0, 2 * np.pi), 'elevation': np.deg2rad(rng.uniform(30, 60)),
            'tint': np.clip(1 + rng.normal(0, 0.05, 3), 0.8, 1.2) * rng.uniform(0.85, 1.15),
            'noise': rng.uniform(0.01, 0.025)}


def _lit_surface(height: np.ndarray, albedo: np.ndarray, style: dict) -> np.ndarray:
    """Lambert shading of the height field (relief exaggerated 3x), at camera resolution."""
    gy, gx = np.gradient(3.0 * height, GEL_MM_PER_PX)
    az, el = style['azimuth'], style['elevation']
    light = np.array([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)])
    lambert = (-gx * light[0] - gy * light[1] + light[2]) / np.sqrt(gx ** 2 + gy ** 2 + 1)
    image = albedo * (0.35 + 0.75 * np.clip(lambert, 0, None))[..., None] * style['tint']
    return cv2.resize(image, (CAMERA_COLS, CAMERA_ROWS), interpolation=cv2.INTER_AREA)


def _draw_sensor(image: np.ndarray, contact: tuple[float, float], lift_mm: float,
                 style: dict) -> np.ndarray:
    """The DIGIT body seen obliquely: it hides the surface behind (above) the contact."""
    rows, cols = np.mgrid[0:CAMERA_ROWS, 0:CAMERA_COLS].astype(np.float32)
    half = 11.0 / CAMERA_MM_PER_PX
    bottom = contact[0] + (2.0 - 0.6 * lift_mm) / CAMERA_MM_PER_PX
    body = (np.abs(cols - contact[1]) <= half) & (rows <= bottom)
    shift = (lift_mm + 1.5) / CAMERA_MM_PER_PX
    shadow = np.roll(body.astype(np.float32), (int(round(-shift * np.sin(style['azimuth']))),
                                               int(round(-shift * np.cos(style['azimuth'])))),
                     axis=(0, 1))
    shadow = cv2.GaussianBlur(shadow, (0, 0), 3.0)
    image = image * (1 - 0.55 * shadow)[..., None]
    plastic = 0.10 + 0.06 * (cols - contact[1] + half) / (2 * half)
    window = (rows > bottom - 3.0 / CAMERA_MM_PER_PX)
    colour = np.where(window[..., None], np.array([0.62, 0.64, 0.68]), plastic[..., None])
    return np.where(body[..., None], colour * style['tint'], image)


def _gel_depth(height: np.ndarray, centre: tuple[int, int], press_mm: float, radius_mm: float,
               soft: bool) -> np.ndarray:
    """Deformation (mm) of the gel pressed `press_mm` onto the field around `centre`."""
    top, left = centre[0] - GEL_ROWS // 2, centre[1] - GEL_COLS // 2
    patch = height[top:top + GEL_ROWS, left:left + GEL_COLS]
    if soft:  # the object gives way: flatter, blurred texture, wider and shallower contact
        patch = cv2.GaussianBlur(0.6 * patch, (0, 0), 0.35 / GEL_MM_PER_PX)
        radius_mm, press_mm = 1.8 * radius_mm, 0.6 * press_mm
    u, v = rotated_grid((GEL_ROWS, GEL_COLS), GEL_MM_PER_PX, 0.0,
                        (GEL_ROWS / 2 - 0.5, GEL_COLS / 2 - 0.5))
    envelope = -(u ** 2 + v ** 2) / (2 * radius_mm)
    surface = patch + envelope
    return np.clip(surface - surface.max() + press_mm, 0.0, None)


def render_touch(rng: np.random.Generator, material: int, style: dict,
                 presses: int) -> list[tuple[np.ndarray, np.ndarray | None]]:
    """One touch: (camera RGB uint8 (120, 160, 3), gel deformation mm (160, 106) or None).

    The first pair is the approach (sensor lifted, no contact: None); then `presses` frames
    pressing deeper while the sensor slides a little.
    """
    height, shade = _pattern(rng, material)
    albedo = jitter_colour(rng, _COLOURS[material], 0.15) * shade[..., None]
    surface = _lit_surface(height, albedo, style)
    margin_r, margin_c = GEL_ROWS // 2 + _SLIDE_MARGIN, GEL_COLS // 2 + _SLIDE_MARGIN
    centre = np.array([rng.uniform(margin_r, FIELD[0] - margin_r),
                       rng.uniform(margin_c, FIELD[1] - margin_c)])
    slide = rng.uniform(0.2, 0.5) / GEL_MM_PER_PX * np.array(
        [np.sin(a := rng.uniform(0, 2 * np.pi)), np.cos(a)])
    slide *= min(1.0, _SLIDE_MARGIN / (presses * np.abs(slide).max() + 1e-6))
    radius, step = rng.uniform(25, 80), rng.uniform(0.3, 0.45)
    soft = MATERIALS[material].soft
    pairs = []
    for k in range(presses + 1):
        at = centre + max(0, k - 1) * slide
        lift = rng.uniform(6, 10) if k == 0 else 0.0
        camera = _draw_sensor(surface, (at[0] / 2, at[1] / 2), lift, style)
        camera = camera + rng.normal(0, style['noise'], camera.shape)
        depth = None if k == 0 else _gel_depth(height, (int(round(at[0])), int(round(at[1]))),
                                               k * step, radius, soft)
        pairs.append((to_uint8(camera), depth))
    return pairs
