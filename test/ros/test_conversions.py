"""Input image conversion (no build needed): every supported encoding, padding, bad input."""

from __future__ import annotations

from array import array

import cv2
import numpy as np
import pytest
from sensor_msgs.msg import CompressedImage, Image

from sfs_ros.conversions import ImageDecoder, cv_bridge_available

RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, (6, 5, 3), dtype=np.uint8)
GRAY = cv2.cvtColor(RGB, cv2.COLOR_RGB2GRAY)

# encoding -> (pixels as the message stores them, expected RGB)
CASES = {
    "rgb8": (RGB, RGB),
    "bgr8": (RGB[..., ::-1], RGB),
    "rgba8": (np.dstack([RGB, np.full(RGB.shape[:2], 7, np.uint8)]), RGB),
    "bgra8": (np.dstack([RGB[..., ::-1], np.full(RGB.shape[:2], 7, np.uint8)]), RGB),
    "mono8": (GRAY, np.repeat(GRAY[..., None], 3, axis=2)),
}


def image_message(pixels: np.ndarray, encoding: str, padding: int = 0) -> Image:
    """An rclpy Image with ``padding`` extra bytes at the end of every row."""
    height, width = pixels.shape[:2]
    rows = np.ascontiguousarray(pixels).reshape(height, -1)
    padded = np.zeros((height, rows.shape[1] + padding), np.uint8)
    padded[:, : rows.shape[1]] = rows
    data = array("B")
    data.frombytes(padded.tobytes())
    return Image(height=height, width=width, encoding=encoding, step=padded.shape[1], data=data)


MALFORMED = {
    "float-encoding": ({"encoding": "32FC1"}, "unsupported image encoding"),
    "unknown-encoding": ({"encoding": "nonsense"}, "unsupported image encoding"),
    "step-too-small": ({"step": 14}, "step 14 is smaller"),
    "truncated-data": ({"data": bytes(10)}, "expected step \\* height"),
    "zero-size": ({"height": 0, "width": 0, "step": 0, "data": b""}, "empty image"),
}
NO_CV_BRIDGE = "cv_bridge is not importable here (no PyPI wheel), so only the numpy path exists"


def malformed_message(case: str) -> Image:
    msg = image_message(RGB, "rgb8")
    for name, value in MALFORMED[case][0].items():
        setattr(msg, name, value)
    return msg


@pytest.fixture
def decoder() -> ImageDecoder:
    return ImageDecoder("numpy")


@pytest.mark.parametrize("padding", [0, 3])
@pytest.mark.parametrize("encoding", sorted(CASES))
def test_supported_encodings_decode_to_rgb(decoder, encoding, padding):
    pixels, expected = CASES[encoding]
    rgb = decoder.decode(image_message(pixels, encoding, padding))
    assert rgb.dtype == np.uint8 and rgb.shape == (6, 5, 3)
    np.testing.assert_array_equal(rgb, expected)


def test_unpadded_rgb8_is_a_zero_copy_view():
    msg = image_message(RGB, "rgb8")
    rgb = ImageDecoder("numpy").decode(msg)
    assert np.shares_memory(rgb, np.frombuffer(msg.data, np.uint8))


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_images_raise_a_clear_value_error(decoder, case):
    with pytest.raises(ValueError, match=MALFORMED[case][1]):
        decoder.decode(malformed_message(case))


@pytest.mark.parametrize("extension, fmt", [(".png", "rgb8; png compressed bgr8"), (".jpg", "jpeg")])
def test_compressed_images_decode_to_rgb(decoder, extension, fmt):
    ok, encoded = cv2.imencode(extension, cv2.cvtColor(RGB, cv2.COLOR_RGB2BGR))
    assert ok
    rgb = decoder.decode(CompressedImage(format=fmt, data=encoded.tobytes()))
    assert rgb.shape == RGB.shape
    if extension == ".png":
        np.testing.assert_array_equal(rgb, RGB)


def test_undecodable_compressed_image_raises(decoder):
    with pytest.raises(ValueError, match="cannot decode"):
        decoder.decode(CompressedImage(format="jpeg", data=b"\xff\xd8 not really a jpeg"))


@pytest.mark.skipif(not cv_bridge_available(), reason=NO_CV_BRIDGE)
def test_numpy_and_cv_bridge_decode_alike():
    numpy_decoder, bridge_decoder = ImageDecoder("numpy"), ImageDecoder("cv_bridge")
    for encoding, (pixels, _) in CASES.items():
        for padding in (0, 2):
            msg = image_message(pixels, encoding, padding)
            np.testing.assert_array_equal(numpy_decoder.decode(msg), bridge_decoder.decode(msg), err_msg=encoding)


@pytest.mark.skipif(not cv_bridge_available(), reason=NO_CV_BRIDGE)
def test_numpy_and_cv_bridge_reject_alike():
    bridge_decoder = ImageDecoder("cv_bridge")
    for case, (_, problem) in MALFORMED.items():
        with pytest.raises(ValueError, match=problem):
            bridge_decoder.decode(malformed_message(case))


def test_default_backend_prefers_cv_bridge_when_present():
    assert ImageDecoder().backend == ("cv_bridge" if cv_bridge_available() else "numpy")
