"""sensor_msgs/Image and CompressedImage to NumPy, with cv_bridge's behaviour.

No rclpy import: messages are duck-typed (``height``, ``width``, ``encoding``, ``is_bigendian``,
``step``, ``data`` for images; ``format`` and ``data`` for compressed images), so this module is
unit-tested without ROS. The rules are those of ``reference/ros.md``:

- :func:`image_to_array` is ``cv_bridge.imgmsg_to_cv2(msg, 'passthrough')``: the native array
  of the encoding (uint8 HxWx3 for rgb8, uint16 HxW for mono16, ...), honouring row padding
  (any ``step >= width * bytes_per_pixel``) and ``is_bigendian``; it never aliases the message.
- :func:`image_to_rgb` and :func:`compressed_to_rgb` give the model input: uint8 HxWx3 RGB
  (bgr swapped, alpha dropped, mono replicated, 16-bit scaled by 255/65535, Bayer demosaiced).

Every failure raises :class:`ImageConversionError` (a ``ValueError``) with a message that names
the problem; nothing else escapes for malformed messages.
"""

from __future__ import annotations

import re
from typing import Any

import cv2
import numpy as np


class ImageConversionError(ValueError):
    """A message that cannot be converted; the text says why."""


_DEPTHS = {
    '8U': np.uint8, '8S': np.int8, '16U': np.uint16, '16S': np.int16,
    '32S': np.int32, '32F': np.float32, '64F': np.float64,
}
_GENERIC = re.compile(r'^(8U|8S|16U|16S|32S|32F|64F)(?:C([0-9]+))?$')
# OpenCV's CV_CN_MAX: the most channels a cv::Mat (and so cv_bridge) supports.
_MAX_CHANNELS = 512

# Named encodings: (dtype, channels).
_NAMED = {
    'rgb8': (np.uint8, 3), 'bgr8': (np.uint8, 3), 'rgba8': (np.uint8, 4),
    'bgra8': (np.uint8, 4), 'mono8': (np.uint8, 1), 'rgb16': (np.uint16, 3),
    'bgr16': (np.uint16, 3), 'rgba16': (np.uint16, 4), 'bgra16': (np.uint16, 4),
    'mono16': (np.uint16, 1), 'yuv422': (np.uint8, 2), 'uyvy': (np.uint8, 2),
    'yuv422_yuy2': (np.uint8, 2), 'yuyv': (np.uint8, 2),
}
# ROS Bayer pattern -> OpenCV code, as cv_bridge maps them (OpenCV names the pattern by the
# second row, so ROS rggb is OpenCV BG).
_BAYER_TO_RGB = {
    'rggb': cv2.COLOR_BayerBG2RGB, 'bggr': cv2.COLOR_BayerRG2RGB,
    'gbrg': cv2.COLOR_BayerGR2RGB, 'grbg': cv2.COLOR_BayerGB2RGB,
}
for _pattern in _BAYER_TO_RGB:
    _NAMED[f'bayer_{_pattern}8'] = (np.uint8, 1)
    _NAMED[f'bayer_{_pattern}16'] = (np.uint16, 1)
_YUV_TO_RGB = {
    'yuv422': cv2.COLOR_YUV2RGB_UYVY, 'uyvy': cv2.COLOR_YUV2RGB_UYVY,
    'yuv422_yuy2': cv2.COLOR_YUV2RGB_YUY2, 'yuyv': cv2.COLOR_YUV2RGB_YUY2,
}
_SCALE_16_TO_8 = 255.0 / 65535.0


def encoding_layout(encoding: str) -> tuple[np.dtype, int]:
    """Return ``(dtype, channels)`` of a ROS image encoding.

    Args:
        encoding: A ``sensor_msgs/image_encodings`` name or a generic ``<depth>C<n>`` type.

    Raises:
        ImageConversionError: ``Unrecognized image encoding [x]`` for anything else.
    """
    if encoding in _NAMED:
        dtype, channels = _NAMED[encoding]
        return np.dtype(dtype), channels
    match = _GENERIC.match(encoding)
    if match:
        channels = int(match.group(2) or 1)
        if 1 <= channels <= _MAX_CHANNELS:
            return np.dtype(_DEPTHS[match.group(1)]), channels
    raise ImageConversionError(f'Unrecognized image encoding [{encoding}]')


def _buffer(data: Any) -> np.ndarray:
    """View message data (bytes, bytearray, array.array, memoryview, list) as flat uint8."""
    try:
        return np.frombuffer(data, dtype=np.uint8)
    except (TypeError, ValueError, BufferError):
        pass
    try:
        return np.asarray(data, dtype=np.uint8).reshape(-1)
    except (TypeError, ValueError, OverflowError) as exc:
        raise ImageConversionError(f'image data is not a byte buffer: {exc}') from None


def _dimension(msg: Any, name: str) -> int:
    value = getattr(msg, name, None)
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ImageConversionError(f'image {name} must be a non-negative integer, got {value!r}')
    return int(value)


def image_to_array(msg: Any) -> np.ndarray:
    """Convert a sensor_msgs/Image to its native array (cv_bridge ``passthrough``).

    Args:
        msg: A sensor_msgs/Image (or any object with the same fields).

    Returns:
        A new C-contiguous array in native byte order: ``(H, W)`` for one channel, else
        ``(H, W, C)``, with the encoding's dtype. It never shares memory with ``msg.data``.

    Raises:
        ImageConversionError: Unknown encoding, ``step`` shorter than a row, or data shorter
            than ``height * step``.
    """
    encoding = getattr(msg, 'encoding', None)
    if not isinstance(encoding, str):
        raise ImageConversionError(f'image encoding must be a string, got {encoding!r}')
    dtype, channels = encoding_layout(encoding)
    height, width, step = (_dimension(msg, n) for n in ('height', 'width', 'step'))
    row_bytes = width * channels * dtype.itemsize
    if step < row_bytes:
        raise ImageConversionError(
            f'image step {step} is shorter than a row of {width} x {channels} x '
            f'{dtype.itemsize} bytes = {row_bytes} ({encoding})')
    data = _buffer(getattr(msg, 'data', b''))
    if height * step > data.size:
        raise ImageConversionError(
            f'image data holds {data.size} bytes, expected height * step = '
            f'{height} * {step} = {height * step} ({encoding} {width}x{height})')
    if getattr(msg, 'is_bigendian', False) and dtype.itemsize > 1:
        dtype = dtype.newbyteorder('>')
    else:
        dtype = dtype.newbyteorder('<')
    shape = (height, width, channels)
    strides = (step, channels * dtype.itemsize, dtype.itemsize)
    # A strided view over the padded rows, then one copy into native order: no aliasing.
    view = np.ndarray(shape, dtype=dtype, buffer=data, offset=0, strides=strides)
    array = view.astype(dtype.newbyteorder('='), order='C', copy=True)
    return array[:, :, 0] if channels == 1 else array


def _to_uint8(array: np.ndarray) -> np.ndarray:
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.uint16:
        return np.rint(array * _SCALE_16_TO_8).astype(np.uint8)
    raise ImageConversionError(f'cannot scale {array.dtype} pixels to uint8')


def _color_to_rgb(array: np.ndarray, encoding: str) -> np.ndarray:
    """Channel order fix for the named colour encodings (rgb*, bgr*, with or without alpha)."""
    rgb = array[:, :, :3]
    if encoding.startswith('bgr'):
        rgb = rgb[:, :, ::-1]
    return np.ascontiguousarray(_to_uint8(rgb))


def _gray_to_rgb(gray: np.ndarray) -> np.ndarray:
    return np.repeat(_to_uint8(gray)[:, :, None], 3, axis=2)


def image_to_rgb(msg: Any) -> np.ndarray:
    """Convert a sensor_msgs/Image to the model's input: uint8 ``(H, W, 3)`` RGB.

    Args:
        msg: A sensor_msgs/Image with a colour, mono, Bayer, YUV 4:2:2 or one-channel generic
            (``8UC1``, ``16UC1``) encoding.

    Raises:
        ImageConversionError: Anything :func:`image_to_array` refuses; an empty image; an
            encoding without a defined colour meaning (e.g. ``32FC1``, ``8UC3``).
    """
    array = image_to_array(msg)
    encoding = msg.encoding
    if array.size == 0:
        raise ImageConversionError(f'empty image ({msg.width}x{msg.height} {encoding})')
    if encoding.startswith(('rgb', 'bgr')):
        return _color_to_rgb(array, encoding)
    if encoding.startswith('bayer_'):
        code = _BAYER_TO_RGB[encoding[6:10]]
        return _to_uint8(cv2.cvtColor(array, code))
    if encoding in _YUV_TO_RGB:
        if msg.width % 2:
            raise ImageConversionError(f'{encoding} needs an even width, got {msg.width}')
        return cv2.cvtColor(array, _YUV_TO_RGB[encoding])
    if array.ndim == 2 and array.dtype in (np.uint8, np.uint16):
        return _gray_to_rgb(array)
    raise ImageConversionError(
        f'image encoding [{encoding}] has no colour meaning: cannot convert it to rgb8 '
        '(use rgb8, bgr8, rgba8, bgra8, mono8, mono16, 8UC1, 16UC1, rgb16, bgr16, bayer_*, '
        'yuv422)')


def compressed_to_rgb(msg: Any) -> np.ndarray:
    """Decode a sensor_msgs/CompressedImage to uint8 ``(H, W, 3)`` RGB.

    The ``format`` field (``jpeg``, ``png``, ``rgb8; jpeg compressed bgr8``, ...) is informative
    only: OpenCV detects the codec from the bytes and yields BGR(A) or grey, as cv_bridge's
    ``compressed_imgmsg_to_cv2`` does.

    Raises:
        ImageConversionError: ``compressedDepth`` payloads, empty or undecodable data.
    """
    fmt = getattr(msg, 'format', '')
    if not isinstance(fmt, str):
        raise ImageConversionError(f'compressed image format must be a string, got {fmt!r}')
    if 'compresseddepth' in fmt.lower().replace(' ', ''):
        raise ImageConversionError(f'compressedDepth images are not supported (format {fmt!r})')
    data = _buffer(getattr(msg, 'data', b''))
    if data.size == 0:
        raise ImageConversionError(f'compressed image has no data (format {fmt!r})')
    try:
        decoded = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    except cv2.error as exc:
        raise ImageConversionError(f'could not decode compressed image ({fmt!r}): {exc}') from None
    if decoded is None or decoded.size == 0:
        raise ImageConversionError(
            f'could not decode compressed image ({fmt!r}, {data.size} bytes)')
    if decoded.ndim == 2:
        return _gray_to_rgb(decoded)
    if decoded.shape[2] == 1:
        return _gray_to_rgb(decoded[:, :, 0])
    return _color_to_rgb(decoded, 'bgr')
