"""Per-input settings (topic, transport, encoding override, crop, rotation) and the converter.

Real tactile drivers differ from the camera and from each other: GelSight's ROS 2 example
publishes ``8UC3`` (BGR data) without stamps, a DIGIT frame often arrives transposed to
240x320, some drivers publish only ``/compressed``. Each input of the node therefore has its
own ``inputs.<input>.*`` parameters (:data:`~convitac_ros.ros.parameters.INPUT_SPECS`);
:func:`make_converter` turns them into the function that makes one message a model frame.
No rclpy import: messages are duck-typed, as in :mod:`convitac_ros.ros.image_conversion`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import cv2
import numpy as np

from convitac_ros.ros.image_conversion import (
    compressed_to_rgb,
    encoding_layout,
    image_to_rgb,
    ImageConversionError,
)
from convitac_ros.ros.parameters import INPUT_SPECS, NO_CROP
from convitac_ros.ros.topics import COMPRESSED_SUFFIX

_ROTATE = {'90': cv2.ROTATE_90_CLOCKWISE, '180': cv2.ROTATE_180,
           '270': cv2.ROTATE_90_COUNTERCLOCKWISE}


@dataclass(frozen=True)
class InputSettings:
    """How one input is subscribed to and turned into RGB frames.

    Attributes:
        name: ``camera``, ``tactile`` or ``tactile_b``.
        topic: The image topic (``/compressed`` is added for compressed transport).
        transport: ``raw`` or ``compressed`` (already resolved from ``image_transport``).
        encoding: Encoding the raw data is read as; empty: the message's own.
        crop: ``(x, y, width, height)`` in received pixels; 0 width/height reaches the edge.
        rotation: ``0``, ``90``, ``180``, ``270`` (clockwise) or ``transpose``.
        stamped: False when the driver is known to publish zero stamps (not warned about).
    """

    name: str
    topic: str
    transport: str
    encoding: str = ''
    crop: tuple[int, int, int, int] = (0, 0, 0, 0)
    rotation: str = '0'
    stamped: bool = True

    @classmethod
    def from_parameters(cls, name: str, values: Mapping[str, Any],
                        default_transport: str) -> InputSettings:
        """Build from ``{parameter name: value}`` (missing ones take their defaults).

        Args:
            name: The input (``camera``, ``tactile``, ``tactile_b``).
            values: Parameter values by full name (``inputs.<name>.<setting>``).
            default_transport: The node's ``image_transport``, for an empty ``transport``.
        """
        def value(setting: str) -> Any:
            key = f'inputs.{name}.{setting}'
            return values.get(key, INPUT_SPECS[key].default)

        return cls(name=name, topic=value('topic'),
                   transport=value('transport') or default_transport,
                   encoding=value('encoding'), crop=tuple(int(v) for v in value('crop')),
                   rotation=value('rotation'), stamped=bool(value('stamped')))

    @property
    def compressed(self) -> bool:
        """True for sensor_msgs/CompressedImage on ``<topic>/compressed``."""
        return self.transport == 'compressed'

    @property
    def subscribed_topic(self) -> str:
        """The topic actually subscribed to."""
        return self.topic + (COMPRESSED_SUFFIX if self.compressed else '')

    def describe(self) -> str:
        """One line for the log, e.g. ``tactile: gsmini/image_raw raw as bgr8, transpose``."""
        extras = [f'as {self.encoding}'] if self.encoding else []
        if list(self.crop) != NO_CROP:
            extras.append(f'crop {list(self.crop)}')
        if self.rotation != '0':
            extras.append(self.rotation if self.rotation == 'transpose'
                          else f'rotate {self.rotation}')
        return f'{self.name}: {self.subscribed_topic} ({", ".join([self.transport, *extras])})'


def with_encoding(msg: Any, encoding: str) -> Any:
    """A view of a raw image message that reads its data as ``encoding``.

    Raises:
        ImageConversionError: The message's own (known) encoding has a different number of
            bytes per pixel, so the data cannot be read as ``encoding``.
    """
    wanted_dtype, wanted_channels = encoding_layout(encoding)
    try:
        dtype, channels = encoding_layout(msg.encoding)
    except (ImageConversionError, AttributeError):  # passthrough or a driver's own name
        pass
    else:
        if dtype.itemsize * channels != wanted_dtype.itemsize * wanted_channels:
            raise ImageConversionError(
                f'encoding override {encoding} does not fit a {msg.encoding} image '
                f'({dtype.itemsize * channels} bytes per pixel, {encoding} has '
                f'{wanted_dtype.itemsize * wanted_channels})')
    return SimpleNamespace(height=msg.height, width=msg.width, step=msg.step,
                           is_bigendian=msg.is_bigendian, data=msg.data, encoding=encoding)


def orient(frame: np.ndarray, crop: tuple[int, int, int, int], rotation: str) -> np.ndarray:
    """Crop then rotate a frame.

    Args:
        frame: uint8 (H, W, 3).
        crop: ``(x, y, width, height)``; width/height 0 reach the right/bottom edge.
        rotation: ``0``, ``90``, ``180``, ``270`` (clockwise) or ``transpose``.

    Returns:
        A C-contiguous uint8 (H', W', 3) frame.

    Raises:
        ImageConversionError: The crop is empty or reaches outside the frame.
    """
    if tuple(crop) != (0, 0, 0, 0):
        x, y, width, height = crop
        full_h, full_w = frame.shape[:2]
        right = full_w if width == 0 else x + width
        bottom = full_h if height == 0 else y + height
        if right > full_w or bottom > full_h or x >= right or y >= bottom:
            raise ImageConversionError(
                f'crop {list(crop)} reaches outside the {full_w}x{full_h} frame')
        frame = frame[y:bottom, x:right]
    if rotation == 'transpose':
        frame = frame.transpose(1, 0, 2)
    elif rotation != '0':
        frame = cv2.rotate(frame, _ROTATE[rotation])
    return np.ascontiguousarray(frame)


def make_converter(settings: InputSettings) -> Callable[[Any], np.ndarray]:
    """The function turning one message of this input into a uint8 (H, W, 3) RGB frame.

    Raises:
        ValueError: An encoding override with compressed transport (the codec decides the
            colour order there).
    """
    if settings.compressed and settings.encoding:
        raise ValueError(f'inputs.{settings.name}.encoding ({settings.encoding}) applies to raw '
                         'images only; this input is compressed')
    base = compressed_to_rgb if settings.compressed else image_to_rgb
    encoding, crop, rotation = settings.encoding, settings.crop, settings.rotation
    plain = not encoding and tuple(crop) == (0, 0, 0, 0) and rotation == '0'
    if plain:
        return base

    def convert(msg: Any) -> np.ndarray:
        return orient(base(with_encoding(msg, encoding) if encoding else msg), crop, rotation)

    return convert
