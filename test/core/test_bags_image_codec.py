"""sfs_core.image_codec: ROS image fields <-> numpy, the one conversion used by bags and node."""

from __future__ import annotations

import array
import sys

import cv2
import numpy as np
import pytest

from sfs_core.image_codec import (
    compressed_msg_to_rgb,
    decode_compressed_labels,
    decode_compressed_rgb,
    decode_labels,
    decode_rgb,
    encode_compressed,
    encode_image,
    image_array,
    image_msg_to_rgb,
)

RNG = np.random.default_rng(5)
RGB = RNG.integers(0, 256, (5, 7, 3), dtype=np.uint8)


def padded(rows: np.ndarray, pad: int) -> tuple[int, bytes]:
    """``(step, data)`` of ``rows`` (H, row_bytes) with ``pad`` junk bytes after each row."""
    flat = rows.reshape(rows.shape[0], -1).view(np.uint8)
    junk = np.full((rows.shape[0], pad), 0xAB, np.uint8)
    out = np.concatenate([flat, junk], axis=1)
    return out.shape[1], out.tobytes()


@pytest.mark.parametrize("encoding,array_of", [
    ("rgb8", lambda x: x),
    ("bgr8", lambda x: x[..., ::-1]),
    ("rgba8", lambda x: np.dstack([x, np.full(x.shape[:2], 9, np.uint8)])),
    ("bgra8", lambda x: np.dstack([x[..., ::-1], np.full(x.shape[:2], 9, np.uint8)])),
])
def test_colour_encodings_decode_to_rgb(encoding, array_of):
    pixels = np.ascontiguousarray(array_of(RGB))
    step, data = padded(pixels, 3)
    assert np.array_equal(decode_rgb(encoding, 5, 7, step, data), RGB)


def test_16_bit_colour_drops_low_byte_and_honours_big_endian():
    wide = RGB.astype(np.uint16) * 256 + 200
    for big in (False, True):
        data = wide.astype(">u2" if big else "<u2").tobytes()
        assert np.array_equal(decode_rgb("rgb16", 5, 7, 7 * 6, data, big), RGB)
        assert np.array_equal(decode_rgb("bgr16", 5, 7, 7 * 6, wide[..., ::-1].astype(">u2" if big else "<u2").tobytes(), big), RGB)


def test_mono_encodings():
    gray = RGB[..., 0]
    assert np.array_equal(decode_rgb("mono8", 5, 7, 7, gray.tobytes()), np.dstack([gray] * 3))
    wide = gray.astype(np.uint16) << 8
    assert np.array_equal(decode_rgb("mono16", 5, 7, 14, wide.astype(">u2").tobytes(), True)[..., 1], gray)
    labels = np.arange(35, dtype=np.uint16).reshape(5, 7) * 1000
    step, data = padded(labels.astype("<u2"), 2)
    assert np.array_equal(decode_labels("mono16", 5, 7, step, data), labels)
    assert decode_labels("8UC1", 5, 7, 7, gray.tobytes()).dtype == np.uint16


@pytest.mark.parametrize("encoding,pattern", [
    ("bayer_rggb8", "RGGB"), ("bayer_bggr8", "BGGR"), ("bayer_gbrg8", "GBRG"), ("bayer_grbg8", "GRBG"),
])
def test_bayer_patterns_demosaic_a_flat_colour(encoding, pattern):
    colour = {"R": 200, "G": 100, "B": 30}
    mosaic = np.zeros((8, 8), np.uint8)
    for (dy, dx), channel in zip([(0, 0), (0, 1), (1, 0), (1, 1)], pattern, strict=True):
        mosaic[dy::2, dx::2] = colour[channel]
    rgb = decode_rgb(encoding, 8, 8, 8, mosaic.tobytes())
    assert rgb[2:-2, 2:-2].reshape(-1, 3).tolist() == [[200, 100, 30]] * 16


def test_yuv422_grey():
    uyvy = np.full((2, 4, 2), 128, np.uint8)
    uyvy[..., 1] = 120  # Y in the second byte of UYVY
    assert np.abs(decode_rgb("yuv422", 2, 4, 8, uyvy.tobytes()).astype(int) - 120).max() <= 2
    yuyv = uyvy[..., ::-1].copy()
    assert np.abs(decode_rgb("yuv422_yuy2", 2, 4, 8, yuyv.tobytes()).astype(int) - 120).max() <= 2


def test_any_buffer_type_and_zero_copy():
    data = RGB.tobytes()
    for buffer in (data, bytearray(data), memoryview(data), array.array("B", data), np.frombuffer(data, np.uint8), list(data)):
        assert np.array_equal(decode_rgb("rgb8", 5, 7, 21, buffer), RGB)
    source = np.frombuffer(data, np.uint8)
    assert np.shares_memory(image_array("rgb8", 5, 7, 21, source), source)


@pytest.mark.parametrize("kwargs,message", [
    (dict(encoding="rgb9"), "unsupported image encoding 'rgb9'"),
    (dict(step=20), "step 20 is smaller than"),
    (dict(data=RGB.tobytes()[:-1]), "data has 104 bytes, expected step * height = 21 * 5 = 105"),
    (dict(height=0), "empty image"),
    (dict(data=12345), "must be bytes-like, got int"),
    (dict(encoding="yuv422", width=7, step=14), "even width"),
    (dict(encoding="rgb16", step=43, data=b"\0" * 43 * 5), "not a multiple"),
])
def test_malformed_raw_images_raise(kwargs, message):
    fields = dict(encoding="rgb8", height=5, width=7, step=21, data=RGB.tobytes()) | kwargs
    with pytest.raises(ValueError, match=message.replace("*", r"\*").replace("(", r"\(")):
        decode_rgb(**fields)


def test_labels_reject_colour_encodings():
    with pytest.raises(ValueError, match="label images must be one of"):
        decode_labels("rgb8", 5, 7, 21, RGB.tobytes())


def test_encode_round_trip_and_validation():
    for array_, encoding in ((RGB, "rgb8"), (RGB[..., 0].copy(), "mono8"), (RGB[..., 0].astype(np.uint16) * 300, "mono16")):
        e = encode_image(array_, encoding)
        assert e.is_bigendian == int(sys.byteorder == "big")
        decoded = image_array(e.encoding, e.height, e.width, e.step, e.data, e.is_bigendian)
        assert np.array_equal(decoded, array_)
    with pytest.raises(ValueError, match=r"mono16 needs a \(H, W\) uint16 array"):
        encode_image(RGB[..., 0], "mono16")
    with pytest.raises(ValueError, match="cannot encode 'bayer_rggb8'"):
        encode_image(RGB, "bayer_rggb8")


def test_compressed_round_trip():
    fmt, data = encode_compressed(RGB, "png")
    assert fmt == "rgb8; png compressed bgr8"
    assert np.array_equal(decode_compressed_rgb(fmt, data), RGB)
    smooth = cv2.GaussianBlur(np.repeat(np.repeat(RGB, 8, 0), 8, 1), (9, 9), 3)
    fmt, data = encode_compressed(smooth, "jpeg", quality=98)
    assert np.abs(decode_compressed_rgb(fmt, data).astype(int) - smooth).mean() < 2.0
    for legacy in ("jpeg", "bgr8; jpeg compressed bgr8", ""):
        assert decode_compressed_rgb(legacy, data).shape == smooth.shape


def test_compressed_labels_and_errors():
    labels = (np.arange(35, dtype=np.uint16).reshape(5, 7) * 1500)
    ok, png = cv2.imencode(".png", labels)
    assert np.array_equal(decode_compressed_labels("mono16; png compressed ", png.tobytes()), labels)
    with pytest.raises(ValueError, match="lossless"):
        decode_compressed_labels("jpeg", png.tobytes())
    with pytest.raises(ValueError, match="compressedDepth"):
        decode_compressed_rgb("16UC1; compressedDepth png", png.tobytes())
    with pytest.raises(ValueError, match="cannot decode 5 bytes"):
        decode_compressed_rgb("jpeg", b"12345")
    with pytest.raises(ValueError, match="no data"):
        decode_compressed_rgb("png", b"")
    with pytest.raises(ValueError, match="unsupported CompressedImage format 'tiff'"):
        decode_compressed_rgb("tiff", png.tobytes())


def test_duck_typed_message_helpers():
    class Msg:  # like rclpy: data is array.array('B')
        encoding, height, width, step, is_bigendian = "bgr8", 5, 7, 21, 0
        data = array.array("B", RGB[..., ::-1].tobytes())

    assert np.array_equal(image_msg_to_rgb(Msg()), RGB)
    fmt, data = encode_compressed(RGB, "png")

    class Compressed:
        format = fmt

    Compressed.data = array.array("B", data)
    assert np.array_equal(compressed_msg_to_rgb(Compressed()), RGB)
