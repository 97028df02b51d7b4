"""Image synthesis for the synthetic world: material surfaces, GelSight frames, overlays.

All images are float32 RGB in [0, 1] until `to_uint8`; coordinates are pixels, (x, y) = (column,
row). Everything random takes an explicit `numpy.random.Generator`, so a seed fixes the output.
"""

from dataclasses import dataclass

import cv2
import numpy as np

CAMERA_SHAPE = (96, 96)  # (H, W) of the camera images
TACTILE_SHAPE = (80, 96)  # (H, W) of the GelSight images
# Three coloured lights 120 degrees apart (azimuth, RGB), as in a GelSight sensor.
_LIGHT_ANGLES = np.deg2rad([90.0, 210.0, 330.0])
_LIGHT_COLOURS = np.eye(3, dtype=np.float32)
_GEL_COLOUR = np.array([0.42, 0.44, 0.50], dtype=np.float32)
_MARKER_SPACING = 10.0
_MARKER_RADIUS = 1.7
WEAVE_CONTRAST = 0.4  # relative brightness swing of an instance texture in the camera
WEAVE_RELIEF = 0.5  # height of an instance texture printed in the gel (material texture ~0.3)
WEAVE_ORIENTATIONS = 8  # orientations 0, 22.5, ..., 157.5 degrees
WEAVE_PERIODS = (8.0, 14.0)  # grating periods in pixels (camera and gel alike)
WEAVE_CODES = WEAVE_ORIENTATIONS * len(WEAVE_PERIODS)


@dataclass(frozen=True)
class Look:
    """Visual appearance of a material: colour, texture pattern and gloss."""

    colour: tuple[float, float, float]
    pattern: str  # 'speckle' | 'plain' | 'grain' | 'blotch'
    texture: float  # texture contrast
    gloss: float  # strength of the specular highlight, 0..1


@dataclass(frozen=True)
class Feel:
    """Tactile signature of a material as seen by a GelSight sensor."""

    soft: bool
    rough: bool
    pattern: str  # 'grit' (isotropic bumps) | 'ridges' (fibres) | 'flat'
    frequency: tuple[float, float]  # texture spatial frequency range, cycles per pixel
    amplitude: tuple[float, float]  # texture height range, relative to full indentation


def grid(shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinate arrays (x, y), each float32 (H, W)."""
    y, x = np.mgrid[0:shape[0], 0:shape[1]].astype(np.float32)
    return x, y


def smooth_noise(rng: np.random.Generator, shape: tuple[int, int], scale: float) -> np.ndarray:
    """Band-limited noise with features about `scale` pixels wide, zero mean, unit std: (H, W)."""
    coarse = rng.standard_normal((int(shape[0] / scale) + 2, int(shape[1] / scale) + 2))
    field = cv2.resize(coarse.astype(np.float32), (shape[1], shape[0]),
                       interpolation=cv2.INTER_CUBIC)
    return (field - field.mean()) / (field.std() + 1e-6)


def oriented_wave(shape: tuple[int, int], frequency: float, angle: float, phase: float,
                  warp: np.ndarray) -> np.ndarray:
    """Sinusoidal ridges `frequency` cycles/px across direction `angle`, bent by `warp`: (H, W)."""
    x, y = grid(shape)
    along = x * np.cos(angle) + y * np.sin(angle)
    return np.sin(2 * np.pi * frequency * along + phase + warp).astype(np.float32)


@dataclass(frozen=True)
class Weave:
    """The texture of one object instance: a grating of a given orientation and period.

    Seen by the camera on the instance's surface and printed by the gel when the sensor presses
    it, so it links a camera frame to its tactile frame; it is drawn independently of the
    material, so it says nothing about the label.
    """

    orientation: int  # index into WEAVE_ORIENTATIONS steps of pi / WEAVE_ORIENTATIONS
    scale: int  # index into WEAVE_PERIODS
    phase: float  # radians

    @property
    def code(self) -> int:
        """The instance code, 0 .. WEAVE_CODES - 1 (what a perfect observer can tell apart)."""
        return self.orientation * len(WEAVE_PERIODS) + self.scale

    def pattern(self, shape: tuple[int, int]) -> np.ndarray:
        """The grating over an image of `shape` (pixels), values in [-1, 1]: float32 (H, W)."""
        angle = np.pi * self.orientation / WEAVE_ORIENTATIONS
        return oriented_wave(shape, 1.0 / WEAVE_PERIODS[self.scale], angle, self.phase,
                             np.zeros(shape, np.float32))


def draw_weave(rng: np.random.Generator) -> Weave:
    """Draw an instance texture uniformly over the WEAVE_CODES codes, with a random phase."""
    return Weave(int(rng.integers(WEAVE_ORIENTATIONS)), int(rng.integers(len(WEAVE_PERIODS))),
                 float(rng.uniform(0, 2 * np.pi)))


def surface(rng: np.random.Generator, look: Look, shape: tuple[int, int],
            light: tuple[float, float], tint: np.ndarray, weave: Weave | None = None
            ) -> np.ndarray:
    """Render a material's visual surface filling `shape`.

    Args:
        rng: Random generator (colour jitter, texture phase).
        look: Appearance of the material.
        shape: (H, W) of the output.
        light: (x, y) of the specular highlight in pixels (shared by the regions of a scene).
        tint: (3,) multiplicative RGB of the scene illumination.
        weave: The instance texture drawn on the surface (relative contrast WEAVE_CONTRAST),
            or None.

    Returns:
        float32 (H, W, 3) RGB.
    """
    colour = np.clip(np.array(look.colour) + rng.normal(0.0, 0.05, 3), 0.0, 1.0)
    if look.pattern == 'speckle':
        shade = 0.8 * smooth_noise(rng, shape, 1.5) + 0.5 * smooth_noise(rng, shape, 10.0)
    elif look.pattern == 'grain':
        warp = 2.0 * smooth_noise(rng, shape, 12.0)
        wave = oriented_wave(shape, rng.uniform(0.08, 0.14), rng.uniform(0, np.pi),
                             rng.uniform(0, 2 * np.pi), warp)
        shade = wave + 0.3 * smooth_noise(rng, shape, 2.0)
    elif look.pattern == 'blotch':
        shade = smooth_noise(rng, shape, 4.0) + 0.6 * smooth_noise(rng, shape, 1.5)
    else:
        shade = 0.5 * smooth_noise(rng, shape, 16.0)
    if weave is not None:
        shade = shade + WEAVE_CONTRAST / look.texture * weave.pattern(shape)
    image = colour[None, None, :] * (1.0 + look.texture * shade[..., None])
    x, y = grid(shape)
    highlight = np.exp(-((x - light[0]) ** 2 + (y - light[1]) ** 2) / (2 * 18.0 ** 2))
    image = image + look.gloss * 0.6 * highlight[..., None]
    return (image * tint[None, None, :]).astype(np.float32)


def partition(rng: np.random.Generator, shape: tuple[int, int], regions: int) -> np.ndarray:
    """Split an image into `regions` wavy Voronoi cells: int (H, W) of cell indices."""
    x, y = grid(shape)
    centres = rng.uniform(0.15, 0.85, (regions, 2)) * np.array([shape[1], shape[0]])
    distance = np.stack([np.hypot(x - cx, y - cy) for cx, cy in centres])
    distance += 6.0 * np.stack([smooth_noise(rng, shape, 14.0) for _ in range(regions)])
    return distance.argmin(axis=0)


def draw_sensor(image: np.ndarray, tip: tuple[float, float], angle: float, lift: float,
                width: float = 15.0) -> np.ndarray:
    """Draw a hand-held GelSight: a dark body reaching from outside the image to its gel tip.

    Args:
        image: float32 (H, W, 3) scene, not modified.
        tip: (x, y) of the contact point.
        angle: Direction from the tip towards the body, radians (pi/2 = from below).
        lift: Distance of the tip above the contact point along the body axis, pixels.
        width: Sensor width in pixels.

    Returns:
        float32 (H, W, 3) with the sensor and its contact shadow.
    """
    out = image.copy()
    x, y = grid(image.shape[:2])
    direction = np.array([np.cos(angle), np.sin(angle)], dtype=np.float32)
    tx, ty = tip[0] + lift * direction[0], tip[1] + lift * direction[1]
    along = (x - tx) * direction[0] + (y - ty) * direction[1]
    across = -(x - tx) * direction[1] + (y - ty) * direction[0]
    shadow = np.exp(-((x - tip[0]) ** 2 + (y - tip[1]) ** 2) / (2 * (6.0 + lift) ** 2))
    out *= 1.0 - 0.45 * np.exp(-lift / 6.0) * shadow[..., None]
    body = (along > 4.0) & (np.abs(across) < width / 2)
    gel = (along >= 0.0) & (along <= 4.0) & (np.abs(across) < width / 2 - 1)
    out[body] = np.array([0.16, 0.16, 0.18]) * (1.0 + 0.25 * (across[body] / width))[:, None]
    out[gel] = 0.5 * out[gel] + 0.5 * np.array([0.75, 0.78, 0.82])
    return out


@dataclass(frozen=True)
class Contact:
    """One press of a material on the gel; fixed over the frames of a press-in sequence."""

    centre: tuple[float, float]  # (x, y) on the gel, pixels
    radius: float  # patch radius at full press, pixels
    edge: float  # width of the patch border, pixels
    amplitude: float  # indentation at full press, height units
    imprint: float  # how strongly the material's texture prints into the gel
    texture: np.ndarray  # (H, W) micro-relief of the material under this contact


def draw_contact(rng: np.random.Generator, feel: Feel,
                 shape: tuple[int, int] = TACTILE_SHAPE, weave: Weave | None = None) -> Contact:
    """Draw one contact of a material with the gel.

    Hard materials make a smaller, deeper patch with a sharp edge and print their texture
    crisply; soft ones yield: a wider, shallower patch with a soft edge and a damped texture.
    The instance texture `weave`, when given, is printed on top (relief WEAVE_RELIEF).
    """
    centre = (shape[1] / 2 + rng.normal(0, 8.0), shape[0] / 2 + rng.normal(0, 6.0))
    texture = tactile_texture(rng, feel, shape)
    if weave is not None:
        texture = texture + WEAVE_RELIEF * weave.pattern(shape)
    if feel.soft:
        return Contact(centre, 26.0 * rng.uniform(0.95, 1.35), rng.uniform(2.5, 6.0),
                       rng.uniform(3.2, 4.2), 0.5, texture)
    return Contact(centre, 26.0 * rng.uniform(0.75, 1.1), rng.uniform(1.0, 3.0),
                   rng.uniform(3.4, 4.4), 1.0, texture)


def height_field(contact: Contact, depth: float) -> np.ndarray:
    """Indentation of the gel by a contact pressed `depth` (0 = no contact, 1 = full press).

    Returns:
        float32 (H, W) height, 0 where there is no contact.
    """
    shape = contact.texture.shape
    if depth <= 0.0:
        return np.zeros(shape, np.float32)
    x, y = grid(shape)
    radius = contact.radius * np.sqrt(depth)
    r = np.hypot(x - contact.centre[0], (y - contact.centre[1]) * 1.15)
    patch = 1.0 / (1.0 + np.exp((r - radius) / contact.edge))
    dome = np.clip(1.0 - (r / (radius + 3 * contact.edge)) ** 2, 0.0, 1.0)
    relief = depth * contact.amplitude * patch * (
        0.6 * dome + 0.4 + contact.imprint * contact.texture)
    return relief.astype(np.float32)


def tactile_texture(rng: np.random.Generator, feel: Feel,
                    shape: tuple[int, int] = TACTILE_SHAPE) -> np.ndarray:
    """The material's micro-relief under one contact, scaled by its amplitude: float32 (H, W)."""
    frequency = rng.uniform(*feel.frequency)
    amplitude = rng.uniform(*feel.amplitude)
    if feel.pattern == 'grit':
        field = smooth_noise(rng, shape, 0.5 / frequency)
    elif feel.pattern == 'ridges':
        warp = 1.5 * smooth_noise(rng, shape, 10.0)
        field = oriented_wave(shape, frequency, rng.uniform(0, np.pi), rng.uniform(0, 6.3), warp)
    else:
        field = smooth_noise(rng, shape, 0.5 / frequency)
    return (amplitude * field).astype(np.float32)


def gelsight(rng: np.random.Generator, height: np.ndarray, shear: tuple[float, float] = (0, 0),
             gel: np.ndarray | None = None, noise: float = 0.015) -> np.ndarray:
    """Shade a height field as a GelSight image with a displaced marker-dot grid.

    Args:
        rng: Random generator (sensor noise).
        height: float32 (H, W) gel indentation.
        shear: (x, y) lateral marker displacement in pixels inside the contact (slip/shear).
        gel: (3,) RGB of the unpressed gel (per-sensor tint); default a neutral grey-blue.
        noise: Std of the additive pixel noise.

    Returns:
        float32 (H, W, 3) RGB.
    """
    shape = height.shape
    gy, gx = np.gradient(height)
    base = _GEL_COLOUR if gel is None else gel
    x, y = grid(shape)
    vignette = 1.0 - 0.25 * (((x / shape[1]) - 0.5) ** 2 + ((y / shape[0]) - 0.5) ** 2)
    image = base[None, None, :] * vignette[..., None]
    for angle, colour in zip(_LIGHT_ANGLES, _LIGHT_COLOURS):
        lit = 0.5 * (gx * np.cos(angle) + gy * np.sin(angle))
        image = image + lit[..., None] * colour[None, None, :]
    # Markers move with the gel: outwards from the indentation and along the shear.
    pressed = cv2.GaussianBlur(height, (0, 0), 3.0)
    py, px = np.gradient(pressed)
    contact = np.clip(height / (height.max() + 1e-6), 0.0, 1.0) if height.any() else height
    mx = x + 1.5 * px + shear[0] * contact
    my = y + 1.5 * py + shear[1] * contact
    dx = np.mod(mx, _MARKER_SPACING) - _MARKER_SPACING / 2
    dy = np.mod(my, _MARKER_SPACING) - _MARKER_SPACING / 2
    dot = np.clip(_MARKER_RADIUS + 0.5 - np.hypot(dx, dy), 0.0, 1.0)
    image = image * (1.0 - 0.75 * dot[..., None])
    return (image + rng.normal(0.0, noise, image.shape)).astype(np.float32)


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Float RGB in [0, 1] (H, W, 3) -> uint8 RGB (H, W, 3)."""
    return np.clip(image * 255.0 + 0.5, 0, 255).astype(np.uint8)
