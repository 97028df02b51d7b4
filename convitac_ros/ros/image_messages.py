"""sensor_msgs Image and CompressedImage messages from arrays: the one way the package builds them.

The bag writer, the test and benchmark clients and the node's debug picture all publish images;
they build them here, as drivers do (``cv_bridge``'s ``cv2_to_imgmsg`` for raw images,
``image_transport``'s compressed plugin for JPEG/PNG, whose ``format`` field reads
``<encoding>; <codec> compressed <encoded order>``).
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from convitac_ros.ros.stamps import set_stamp

COMPRESSIONS = ('jpeg', 'png')


def image_message(pixels: np.ndarray, stamp_ns: int = 0, encoding: str = 'rgb8',
                  frame_id: str = 'camera') -> Any:
    """A sensor_msgs/Image of a uint8/uint16 array, (H, W, C) or (H, W), rows unpadded.

    The pixels are written as they are: ``encoding`` names their layout (``rgb8``, ``bgr8``,
    ``mono8``, ``8UC3``, ...).
    """
    from sensor_msgs.msg import Image

    channels = pixels.shape[2] if pixels.ndim == 3 else 1
    msg = Image(height=pixels.shape[0], width=pixels.shape[1], encoding=encoding,
                is_bigendian=0, step=pixels.shape[1] * channels * pixels.itemsize,
                data=np.ascontiguousarray(pixels).tobytes())
    msg.header.frame_id = frame_id
    return set_stamp(msg, stamp_ns)


def compressed_message(rgb: np.ndarray, stamp_ns: int = 0, fmt: str = 'jpeg',
                       quality: int = 90, frame_id: str = 'camera',
                       encoding: str = 'rgb8') -> Any:
    """A sensor_msgs/CompressedImage of a uint8 RGB (H, W, 3) frame, as image_transport writes it.

    Args:
        rgb: uint8 (H, W, 3) RGB frame.
        stamp_ns: ``header.stamp`` in nanoseconds.
        fmt: ``jpeg`` or ``png``.
        quality: JPEG quality.
        frame_id: ``header.frame_id``.
        encoding: The raw encoding of the publishing driver (``rgb8``, ``bgr8`` or ``mono8``),
            named in ``format``; ``mono8`` is encoded grey.

    Raises:
        ValueError: An unknown format, or OpenCV could not encode the frame.
    """
    from sensor_msgs.msg import CompressedImage

    if fmt not in COMPRESSIONS:
        raise ValueError(f'compression must be one of {", ".join(COMPRESSIONS)}; got {fmt!r}')
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    mono = encoding == 'mono8'
    pixels = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY if mono else cv2.COLOR_RGB2BGR)
    options = [cv2.IMWRITE_JPEG_QUALITY, quality] if fmt == 'jpeg' else []
    ok, data = cv2.imencode('.jpg' if fmt == 'jpeg' else '.png', pixels, options)
    if not ok:
        raise ValueError(f'OpenCV could not {fmt}-encode a {rgb.shape} frame')
    inner = 'mono8' if mono else 'bgr8'
    msg = CompressedImage(format=f'{encoding}; {fmt} compressed {inner}', data=data.tobytes())
    msg.header.frame_id = frame_id
    return set_stamp(msg, stamp_ns)


def encode_frame(rgb: np.ndarray, encoding: str, compression: str, stamp_ns: int,
                 frame_id: str) -> Any:
    """The message a driver with this configuration publishes for a uint8 RGB frame.

    Args:
        rgb: uint8 (H, W, 3) RGB frame.
        encoding: ``rgb8``, ``bgr8`` or ``mono8`` (the driver's pixel format).
        compression: ``none``, ``jpeg`` or ``png``.
        stamp_ns: ``header.stamp`` in nanoseconds.
        frame_id: ``header.frame_id``.

    Raises:
        ValueError: Not an (H, W, 3) frame, or it could not be encoded.
    """
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f'expected an (H, W, 3) RGB frame, got shape {rgb.shape}')
    if compression != 'none':
        return compressed_message(rgb, stamp_ns, compression, 95, frame_id, encoding)
    if encoding == 'mono8':
        pixels = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    elif encoding == 'bgr8':
        pixels = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    else:
        pixels = rgb
    return image_message(pixels, stamp_ns, encoding, frame_id)
