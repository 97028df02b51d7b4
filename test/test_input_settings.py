"""Per-input conversion (encoding override, crop, rotation) and the contact state, without ROS."""

from __future__ import annotations

from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from convitac_ros.ros.contact import ContactDetector
from convitac_ros.ros.image_conversion import ImageConversionError
from convitac_ros.ros.input_settings import InputSettings, make_converter
from convitac_ros.ros.parameters import validate

RNG = np.random.default_rng(0)
BGR = RNG.integers(0, 256, size=(240, 320, 3), dtype=np.uint8)


def raw(pixels, encoding):
    return SimpleNamespace(height=pixels.shape[0], width=pixels.shape[1], encoding=encoding,
                           is_bigendian=0, step=pixels.shape[1] * 3, data=pixels.tobytes())


def settings(**changes):
    return InputSettings.from_parameters(
        'tactile', {f'inputs.tactile.{k}': v for k, v in changes.items()}, 'raw')


def test_8uc3_bgr_is_refused_without_an_override_and_swapped_with_bgr8():
    with pytest.raises(ImageConversionError, match='no colour meaning'):
        make_converter(settings())(raw(BGR, '8UC3'))
    rgb = make_converter(settings(encoding='bgr8'))(raw(BGR, '8UC3'))
    assert np.array_equal(rgb, BGR[:, :, ::-1])
    passthrough = make_converter(settings(encoding='bgr8'))(raw(BGR, 'passthrough'))
    assert np.array_equal(passthrough, rgb)


def test_an_override_with_other_bytes_per_pixel_is_a_clear_error():
    mono = raw(BGR[:, :, 0].copy(), 'mono8')
    mono.step = 320
    with pytest.raises(ImageConversionError, match='override bgr8 does not fit a mono8 image'):
        make_converter(settings(encoding='bgr8'))(mono)


@pytest.mark.parametrize(('rotation', 'expected'), [
    ('90', lambda f: np.rot90(f, k=-1)), ('180', lambda f: f[::-1, ::-1]),
    ('270', lambda f: np.rot90(f, k=1)), ('transpose', lambda f: f.transpose(1, 0, 2))])
def test_crop_then_rotation(rotation, expected):
    rgb = BGR[:, :, ::-1]
    out = make_converter(settings(encoding='bgr8', crop=[10, 20, 100, 0],
                                  rotation=rotation))(raw(BGR, '8UC3'))
    assert np.array_equal(out, expected(rgb[20:, 10:110]))
    assert out.flags['C_CONTIGUOUS']


def test_digit_portrait_frames_come_back_to_landscape_with_rotation_90():
    portrait = cv2.flip(cv2.transpose(BGR), 0)  # what digit-interface's get_frame returns
    assert portrait.shape == (320, 240, 3)
    out = make_converter(settings(rotation='90'))(raw(np.ascontiguousarray(portrait), 'bgr8'))
    assert np.array_equal(out, BGR[:, :, ::-1])


def test_a_crop_outside_the_frame_and_bad_crop_values_are_refused():
    with pytest.raises(ImageConversionError, match=r'crop \[300, 0, 50, 0\] reaches outside'):
        make_converter(settings(crop=[300, 0, 50, 0]))(raw(BGR, 'bgr8'))
    assert 'must be 4 non-negative integers' in validate('inputs.tactile.crop', [1, 2, 3])
    assert validate('inputs.camera.crop', [0, 0, 64, 48]) is None
    assert 'must be one of' in validate('inputs.camera.rotation', '45')


def test_compressed_input_refuses_an_encoding_override_and_the_plain_path_is_unwrapped():
    with pytest.raises(ValueError, match='applies to raw images only'):
        make_converter(settings(transport='compressed', encoding='bgr8'))
    assert settings(transport='compressed').subscribed_topic == 'tactile/image_raw/compressed'
    from convitac_ros.ros.image_conversion import image_to_rgb

    assert make_converter(settings()) is image_to_rgb


def test_contact_against_the_reference_taken_first_and_retaken_on_request():
    detector = ContactDetector()
    gel = np.full((240, 320, 3), 120, np.uint8)
    pressed = gel.copy()
    cv2.circle(pressed, (160, 120), 60, (230, 200, 170), -1)
    first = detector.update([gel], threshold=6.0)
    assert first.reference_taken and not first.in_contact
    assert not detector.update([gel + 1], threshold=6.0).in_contact
    touching = detector.update([pressed], threshold=6.0)
    assert touching.in_contact and touching.score > 6.0
    detector.request_reference()
    assert detector.update([pressed], threshold=6.0).reference_taken
    assert not detector.update([pressed], threshold=6.0).in_contact
    assert detector.update([gel], threshold=6.0).in_contact
