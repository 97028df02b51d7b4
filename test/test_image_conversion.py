"""Image conversion matches cv_bridge (reference/ros.md) and never crashes on bad messages."""

from __future__ import annotations

import array
from types import SimpleNamespace

import cv2
from hypothesis import given, settings
from hypothesis import strategies as st
import numpy as np
import pytest

from convitac_ros.ros.image_conversion import (
    compressed_to_rgb,
    encoding_layout,
    image_to_array,
    image_to_rgb,
    ImageConversionError,
)

RNG = np.random.default_rng(0)


def image_msg(pixels: np.ndarray, encoding: str, *, pad: int = 0, bigendian: bool = False,
              data_type=bytes) -> SimpleNamespace:
    """Build a duck-typed sensor_msgs/Image from an array, with optional row padding."""
    height, width = pixels.shape[:2]
    dtype = pixels.dtype.newbyteorder('>' if bigendian else '<')
    row_bytes = int(np.prod(pixels.shape[1:])) * pixels.itemsize
    rows = np.frombuffer(pixels.astype(dtype).tobytes(), np.uint8).reshape(height, row_bytes)
    rows = np.concatenate([rows, np.full((height, pad), 0xAB, np.uint8)], axis=1)
    data = rows.tobytes()
    if data_type is array.array:
        data = array.array('B', data)
    return SimpleNamespace(height=height, width=width, encoding=encoding,
                           is_bigendian=int(bigendian), step=rows.shape[1], data=data)


def random_pixels(shape, dtype) -> np.ndarray:
    info = np.iinfo(dtype) if np.issubdtype(dtype, np.integer) else None
    if info is None:
        return RNG.standard_normal(shape).astype(dtype)
    return RNG.integers(info.min, info.max, size=shape, endpoint=True).astype(dtype)


NATIVE_CASES = [
    ('rgb8', np.uint8, 3), ('bgr8', np.uint8, 3), ('rgba8', np.uint8, 4),
    ('bgra8', np.uint8, 4), ('mono8', np.uint8, 1), ('mono16', np.uint16, 1),
    ('rgb16', np.uint16, 3), ('bgr16', np.uint16, 3), ('rgba16', np.uint16, 4),
    ('bgra16', np.uint16, 4), ('bayer_rggb8', np.uint8, 1), ('bayer_bggr8', np.uint8, 1),
    ('bayer_gbrg8', np.uint8, 1), ('bayer_grbg8', np.uint8, 1),
    ('bayer_rggb16', np.uint16, 1), ('yuv422', np.uint8, 2), ('yuv422_yuy2', np.uint8, 2),
] + [
    (f'{depth}C{n}', dtype, n)
    for depth, dtype in [('8U', np.uint8), ('8S', np.int8), ('16U', np.uint16),
                         ('16S', np.int16), ('32S', np.int32), ('32F', np.float32),
                         ('64F', np.float64)]
    for n in (1, 2, 3, 4)
]


@pytest.mark.parametrize('pad', [0, 1, 3, 8])
@pytest.mark.parametrize('bigendian', [False, True])
@pytest.mark.parametrize('encoding,dtype,channels', NATIVE_CASES)
def test_image_to_array_round_trips_every_encoding(encoding, dtype, channels, bigendian, pad):
    shape = (5, 6) if channels == 1 else (5, 6, channels)
    pixels = random_pixels(shape, dtype)
    out = image_to_array(image_msg(pixels, encoding, pad=pad, bigendian=bigendian))
    assert out.dtype == np.dtype(dtype) and out.dtype.isnative
    assert out.shape == shape
    np.testing.assert_array_equal(out, pixels)


def test_generic_encoding_without_channel_count_is_one_channel():
    assert encoding_layout('16U') == (np.dtype(np.uint16), 1)
    assert encoding_layout('32FC7') == (np.dtype(np.float32), 7)


def test_result_does_not_alias_the_message_buffer():
    pixels = random_pixels((4, 4, 3), np.uint8)
    msg = image_msg(pixels, 'rgb8', data_type=array.array)
    out = image_to_array(msg)
    msg.data[0] ^= 0xFF
    assert out[0, 0, 0] == pixels[0, 0, 0]
    out[1, 1, 1] ^= 0xFF
    assert msg.data[1 * 12 + 3 + 1] == pixels[1, 1, 1]
    assert out.flags.c_contiguous and out.flags.writeable


def test_list_data_is_accepted():
    pixels = random_pixels((2, 3), np.uint8)
    msg = image_msg(pixels, 'mono8')
    msg.data = list(msg.data)
    np.testing.assert_array_equal(image_to_array(msg), pixels)


def test_to_rgb_colour_orders_and_alpha():
    rgb = random_pixels((4, 6, 3), np.uint8)
    rgba = np.concatenate([rgb, random_pixels((4, 6, 1), np.uint8)], axis=2)
    np.testing.assert_array_equal(image_to_rgb(image_msg(rgb, 'rgb8')), rgb)
    np.testing.assert_array_equal(image_to_rgb(image_msg(rgb[:, :, ::-1], 'bgr8')), rgb)
    np.testing.assert_array_equal(image_to_rgb(image_msg(rgba, 'rgba8')), rgb)
    bgra = np.concatenate([rgb[:, :, ::-1], rgba[:, :, 3:]], axis=2)
    np.testing.assert_array_equal(image_to_rgb(image_msg(bgra, 'bgra8', pad=5)), rgb)


def test_to_rgb_mono_is_replicated():
    gray = random_pixels((3, 5), np.uint8)
    for encoding in ('mono8', '8UC1'):
        out = image_to_rgb(image_msg(gray, encoding))
        assert out.shape == (3, 5, 3) and out.dtype == np.uint8
        for c in range(3):
            np.testing.assert_array_equal(out[:, :, c], gray)


@pytest.mark.parametrize('bigendian', [False, True])
def test_to_rgb_16_bit_is_scaled_by_255_over_65535(bigendian):
    values = np.array([[0, 257, 32767, 65535]], np.uint16)
    expected = np.rint(values * (255 / 65535)).astype(np.uint8)
    mono = image_to_rgb(image_msg(values, 'mono16', bigendian=bigendian))
    np.testing.assert_array_equal(mono[:, :, 0], expected)
    colour = np.stack([values, values // 2, values // 3], axis=2)
    out = image_to_rgb(image_msg(colour[:, :, ::-1], 'bgr16', pad=1, bigendian=bigendian))
    np.testing.assert_array_equal(out, np.rint(colour * (255 / 65535)).astype(np.uint8))


@pytest.mark.parametrize('pattern,code', [
    ('rggb', cv2.COLOR_BayerBG2RGB), ('bggr', cv2.COLOR_BayerRG2RGB),
    ('gbrg', cv2.COLOR_BayerGR2RGB), ('grbg', cv2.COLOR_BayerGB2RGB)])
def test_to_rgb_bayer_is_demosaiced_like_cv_bridge(pattern, code):
    raw = random_pixels((8, 8), np.uint8)
    out = image_to_rgb(image_msg(raw, f'bayer_{pattern}8'))
    np.testing.assert_array_equal(out, cv2.cvtColor(raw, code))


def test_bayer_red_pixel_lands_in_the_red_channel():
    raw = np.zeros((8, 8), np.uint8)
    raw[0::2, 0::2] = 255  # rggb: the R sites
    out = image_to_rgb(image_msg(raw, 'bayer_rggb8'))
    assert out[3:5, 3:5, 0].mean() > 200 and out[3:5, 3:5, 2].mean() < 50


def test_to_rgb_yuv422():
    yuv = random_pixels((4, 6, 2), np.uint8)
    out = image_to_rgb(image_msg(yuv, 'yuv422'))
    np.testing.assert_array_equal(out, cv2.cvtColor(yuv, cv2.COLOR_YUV2RGB_UYVY))


@pytest.mark.parametrize('fmt,ext', [('jpeg', '.jpg'), ('png', '.png'),
                                     ('rgb8; jpeg compressed bgr8', '.jpg')])
def test_compressed_colour_decodes_to_rgb(fmt, ext):
    rgb = np.zeros((16, 24, 3), np.uint8)
    rgb[:, :8] = (255, 0, 0)
    rgb[:, 8:16] = (0, 255, 0)
    rgb[:, 16:] = (0, 0, 255)
    ok, encoded = cv2.imencode(ext, np.ascontiguousarray(rgb[:, :, ::-1]))
    assert ok
    out = compressed_to_rgb(SimpleNamespace(format=fmt, data=encoded.tobytes()))
    assert out.shape == rgb.shape and out.dtype == np.uint8
    if ext == '.png':
        np.testing.assert_array_equal(out, rgb)
    for band in range(3):  # JPEG blurs the edges: compare the middle of each colour band
        middle = out[:, 8 * band + 3:8 * band + 5].reshape(-1, 3).mean(axis=0)
        assert np.abs(middle - rgb[0, 8 * band]).max() < 40


def test_compressed_gray_and_16_bit_png():
    gray16 = random_pixels((5, 7), np.uint16)
    ok, encoded = cv2.imencode('.png', gray16)
    assert ok
    out = compressed_to_rgb(SimpleNamespace(format='mono16; png compressed', data=encoded))
    np.testing.assert_array_equal(out[:, :, 1], np.rint(gray16 * (255 / 65535)))
    bgra = random_pixels((5, 7, 4), np.uint8)
    ok, encoded = cv2.imencode('.png', bgra)
    out = compressed_to_rgb(SimpleNamespace(format='png', data=array.array('B', encoded)))
    np.testing.assert_array_equal(out, bgra[:, :, 2::-1])


def good_rgb8(**changes) -> SimpleNamespace:
    msg = image_msg(random_pixels((4, 4, 3), np.uint8), 'rgb8')
    for key, value in changes.items():
        setattr(msg, key, value)
    return msg


@pytest.mark.parametrize('msg,match', [
    (good_rgb8(encoding='jpeg'), r'Unrecognized image encoding \[jpeg\]'),
    (good_rgb8(encoding='8UC0'), r'Unrecognized image encoding \[8UC0\]'),
    (good_rgb8(encoding=None), 'encoding must be a string'),
    (good_rgb8(step=11), 'step 11 is shorter than a row'),
    (good_rgb8(data=b'\x00' * 47), 'data holds 47 bytes, expected height'),
    (good_rgb8(height=-1), 'height must be a non-negative integer'),
    (good_rgb8(width=2.5), 'width must be a non-negative integer'),
    (good_rgb8(data=None), 'not a byte buffer'),
    (good_rgb8(data=[300] * 48), 'not a byte buffer'),
])
def test_image_errors_are_clear(msg, match):
    with pytest.raises(ImageConversionError, match=match):
        image_to_rgb(msg)


@pytest.mark.parametrize('msg,match', [
    (image_msg(np.zeros((0, 4, 3), np.uint8), 'rgb8'), 'empty image'),
    (image_msg(np.zeros((2, 2), np.float32), '32FC1'), r'\[32FC1\] has no colour meaning'),
    (image_msg(np.zeros((2, 2, 3), np.uint8), '8UC3'), r'\[8UC3\] has no colour meaning'),
    (image_msg(np.zeros((2, 3, 2), np.uint8), 'yuv422'), 'even width'),
])
def test_rgb_conversion_errors_are_clear(msg, match):
    with pytest.raises(ImageConversionError, match=match):
        image_to_rgb(msg)


@pytest.mark.parametrize('msg,match', [
    (SimpleNamespace(format='jpeg', data=b''), 'no data'),
    (SimpleNamespace(format='png', data=b'not an image at all'), 'could not decode'),
    (SimpleNamespace(format='16UC1; compressedDepth png', data=b'\x00' * 20), 'compressedDepth'),
    (SimpleNamespace(format=3, data=b'\x00'), 'format must be a string'),
])
def test_compressed_errors_are_clear(msg, match):
    with pytest.raises(ImageConversionError, match=match):
        compressed_to_rgb(msg)


ENCODINGS = [case[0] for case in NATIVE_CASES] + ['jpeg', '', 'rgb', '8UC600', 'mono8 ']


@settings(max_examples=300, deadline=None)
@given(
    height=st.integers(-2, 12), width=st.integers(-2, 12), step=st.integers(-2, 120),
    encoding=st.sampled_from(ENCODINGS), bigendian=st.integers(0, 1),
    data=st.binary(max_size=600))
def test_fuzz_malformed_images_give_an_array_or_a_clear_error(
        height, width, step, encoding, bigendian, data):
    msg = SimpleNamespace(height=height, width=width, step=step, encoding=encoding,
                          is_bigendian=bigendian, data=data)
    try:
        out = image_to_rgb(msg)
    except ImageConversionError as exc:
        assert str(exc)
        return
    assert out.dtype == np.uint8 and out.shape == (height, width, 3)


@settings(max_examples=150, deadline=None)
@given(fmt=st.sampled_from(['jpeg', 'png', '', 'bmp']), data=st.binary(max_size=300),
       prefix=st.sampled_from([b'', b'\xff\xd8\xff', b'\x89PNG\r\n\x1a\n']))
def test_fuzz_malformed_compressed_gives_an_array_or_a_clear_error(fmt, data, prefix):
    try:
        out = compressed_to_rgb(SimpleNamespace(format=fmt, data=prefix + data))
    except ImageConversionError as exc:
        assert str(exc)
        return
    assert out.dtype == np.uint8 and out.ndim == 3 and out.shape[2] == 3
