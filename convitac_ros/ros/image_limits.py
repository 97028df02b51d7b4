"""The decoded size of an image message, known before anything is decoded.

A 389 kB PNG can decode to 20000 x 20000 pixels (1.2 GB of RGB): the size must be refused
from the header, not found out by decoding. No rclpy import (messages are duck-typed):

- sensor_msgs/Image: ``width`` x ``height`` as declared (the data is never larger than that
  once it converts);
- sensor_msgs/CompressedImage: the PNG ``IHDR`` or the JPEG ``SOFn`` frame header. Other
  codecs (which OpenCV would also decode) are refused: their size is unknown up front, and
  ``image_transport``'s compressed plugin writes only JPEG and PNG.
"""

from __future__ import annotations

import struct
from typing import Any

from convitac_ros.ros.image_conversion import (
    compressed_to_rgb,
    image_to_rgb,
    ImageConversionError,
)

DEFAULT_MAX_PIXELS = 4096 * 4096
_HEAD_BYTES = 65536
_PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'
# JPEG start-of-frame markers (baseline, progressive, lossless, arithmetic; not DHT/JPG/DAC).
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
# Markers without a length field: TEM, RSTn, SOI, EOI.
_STANDALONE = frozenset([0x01, *range(0xD0, 0xDA)])


class ImageTooLargeError(ImageConversionError):
    """An image whose decoded size exceeds the limit; refused before decoding."""


def _png_size(data: bytes) -> tuple[int, int]:
    if len(data) < 24 or data[12:16] != b'IHDR':
        raise ImageConversionError('PNG without an IHDR header')
    width, height = struct.unpack('>II', data[16:24])
    return width, height


def _jpeg_size(data: bytes) -> tuple[int, int]:
    position = 2
    while position + 4 <= len(data):
        if data[position] != 0xFF:
            raise ImageConversionError(f'JPEG: no marker at byte {position}')
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
            continue
        if marker in _STANDALONE:
            position += 2
            continue
        (length,) = struct.unpack('>H', data[position + 2:position + 4])
        if marker in _SOF_MARKERS:
            if position + 9 > len(data):
                break
            height, width = struct.unpack('>HH', data[position + 5:position + 9])
            return width, height
        if length < 2:
            raise ImageConversionError(f'JPEG: segment length {length} at byte {position}')
        position += 2 + length
    raise ImageConversionError('JPEG without a frame header (SOFn)')


def compressed_size(head: bytes) -> tuple[int, int]:
    """``(width, height)`` of a PNG or JPEG from its header.

    Args:
        head: The start of the payload (the frame header lies within the first 64 KiB of
            any JPEG that carries no huge metadata; a later one is refused).

    Raises:
        ImageConversionError: Another codec, or a header that is cut or malformed.
    """
    if head.startswith(_PNG_SIGNATURE):
        return _png_size(head)
    if head.startswith(b'\xff\xd8'):
        return _jpeg_size(head)
    raise ImageConversionError(
        'compressed image is neither JPEG nor PNG: its decoded size cannot be checked before '
        'decoding')


def check_image_size(msg: Any, max_pixels: int) -> None:
    """Refuse an Image or CompressedImage that would decode to more than ``max_pixels``.

    Args:
        msg: A sensor_msgs/Image (``width``, ``height``) or CompressedImage (``format``,
            ``data``).
        max_pixels: The most pixels (width x height) a frame may have.

    Raises:
        ImageTooLargeError: Too many pixels (the text gives the size and the limit).
        ImageConversionError: A compressed payload whose size cannot be read.
    """
    if hasattr(msg, 'format'):
        width, height = compressed_size(_head(msg.data))
        what = 'compressed image decodes to'
    else:
        width, height = int(getattr(msg, 'width', 0)), int(getattr(msg, 'height', 0))
        what = 'image is'
    if width * height > max_pixels:
        raise ImageTooLargeError(f'{what} {width}x{height} = {width * height} pixels, more '
                                 f'than the limit of {max_pixels} (max_image_pixels)')


def _head(data: Any) -> bytes:
    """The first 64 KiB of message data (bytes, array.array, list of ints) as bytes."""
    try:
        return bytes(memoryview(data)[:_HEAD_BYTES])
    except TypeError:
        pass
    try:
        return bytes(list(data[:_HEAD_BYTES]))
    except (TypeError, ValueError) as exc:
        raise ImageConversionError(f'image data is not a byte buffer: {exc}') from None


def message_to_rgb(msg: Any, max_pixels: int = DEFAULT_MAX_PIXELS) -> Any:
    """Converts a sensor_msgs Image or CompressedImage into uint8 (H, W, 3) RGB (node rules).

    Images that would decode to more than ``max_pixels`` (the node's default
    ``max_image_pixels``) are refused with :class:`ImageTooLargeError` before decoding.
    """
    check_image_size(msg, max_pixels)
    return compressed_to_rgb(msg) if hasattr(msg, 'format') else image_to_rgb(msg)
