"""Pure-numpy conversion between ROS image messages and arrays, shared by every ROS boundary.

This is the one place that knows ``sensor_msgs/Image`` encodings and ``CompressedImage``
formats. It takes plain fields (``encoding, height, width, step, data, is_bigendian``), so it
serves rclpy messages (``data`` is ``array.array('B')``), rosbags messages (``data`` is a numpy
array) and raw bytes alike, without importing either library. The ``*_msg`` helpers duck-type
any object with those attributes.

Contracts:

* :func:`decode_rgb` / :func:`decode_compressed_rgb` return ``(H, W, 3)`` uint8 **RGB**, the
  input :meth:`sfs_core.pipeline.Pipeline.process` expects. 16-bit colour and mono inputs are
  scaled to 8 bits by dropping the low byte (``v >> 8``).
* :func:`decode_labels` / :func:`decode_compressed_labels` return ``(H, W)`` uint16 class ids
  from a mono8/mono16 (or 8UC1/16UC1) image, unscaled: for ground-truth label topics.
* :func:`encode_image` and :func:`encode_compressed` build the fields of outgoing messages.
* Malformed input (unknown encoding, ``step`` too small, wrong data length, undecodable bytes)
  raises ``ValueError`` with a message naming the problem; nothing is guessed silently.
* Decoded arrays may share memory with ``data`` (zero copy where the layout allows it): copy
  before writing into them.

>>> enc = encode_image(np.zeros((2, 3, 3), np.uint8), "rgb8")
>>> (enc.height, enc.width, enc.step, enc.data.size)
(2, 3, 9, 18)
>>> decode_rgb(enc.encoding, enc.height, enc.width, enc.step, enc.data).shape
(2, 3, 3)
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

#: encoding -> (channels, numpy dtype). Only these layouts are decoded.
_LAYOUTS: dict[str, tuple[int, type]] = {
    "rgb8": (3, np.uint8), "bgr8": (3, np.uint8), "rgba8": (4, np.uint8), "bgra8": (4, np.uint8),
    "rgb16": (3, np.uint16), "bgr16": (3, np.uint16), "rgba16": (4, np.uint16), "bgra16": (4, np.uint16),
    "mono8": (1, np.uint8), "mono16": (1, np.uint16), "8UC1": (1, np.uint8), "16UC1": (1, np.uint16),
    "bayer_rggb8": (1, np.uint8), "bayer_bggr8": (1, np.uint8), "bayer_gbrg8": (1, np.uint8), "bayer_grbg8": (1, np.uint8),
    "yuv422": (2, np.uint8), "uyvy": (2, np.uint8), "yuv422_yuy2": (2, np.uint8), "yuyv": (2, np.uint8),
}
# Colour order of the multi-channel encodings; mono encodings are absent.
_TO_RGB = {
    "rgb8": None, "rgb16": None, "bgr8": cv2.COLOR_BGR2RGB, "bgr16": cv2.COLOR_BGR2RGB,
    "rgba8": cv2.COLOR_RGBA2RGB, "rgba16": cv2.COLOR_RGBA2RGB, "bgra8": cv2.COLOR_BGRA2RGB, "bgra16": cv2.COLOR_BGRA2RGB,
    # ROS names the Bayer pattern from the top-left pixel; OpenCV from the second row/column.
    "bayer_rggb8": cv2.COLOR_BayerBG2RGB, "bayer_bggr8": cv2.COLOR_BayerRG2RGB,
    "bayer_gbrg8": cv2.COLOR_BayerGR2RGB, "bayer_grbg8": cv2.COLOR_BayerGB2RGB,
    "yuv422": cv2.COLOR_YUV2RGB_UYVY, "uyvy": cv2.COLOR_YUV2RGB_UYVY,
    "yuv422_yuy2": cv2.COLOR_YUV2RGB_YUYV, "yuyv": cv2.COLOR_YUV2RGB_YUYV,
}
_MONO = ("mono8", "mono16", "8UC1", "16UC1")
_ENCODABLE = {
    "rgb8": (3, np.uint8), "bgr8": (3, np.uint8), "rgba8": (4, np.uint8), "bgra8": (4, np.uint8),
    "mono8": (1, np.uint8), "mono16": (1, np.uint16), "8UC1": (1, np.uint8), "16UC1": (1, np.uint16),
}
SUPPORTED_ENCODINGS = tuple(_LAYOUTS)


@dataclass(frozen=True)
class EncodedImage:
    """The fields of a ``sensor_msgs/Image`` (header aside). ``data`` is a 1-D uint8 array."""

    height: int
    width: int
    encoding: str
    is_bigendian: int
    step: int
    data: np.ndarray


def _byte_view(data: Any) -> np.ndarray:
    """1-D uint8 view of a buffer (bytes, ``array.array``, memoryview, numpy); lists are copied."""
    if isinstance(data, np.ndarray):
        return np.ascontiguousarray(data).reshape(-1).view(np.uint8)
    if isinstance(data, (list, tuple)):
        return np.asarray(data, dtype=np.uint8)
    try:
        return np.frombuffer(data, dtype=np.uint8)
    except TypeError as exc:
        raise ValueError(f"image data must be bytes-like, got {type(data).__name__}") from exc


def image_array(encoding: str, height: int, width: int, step: int, data: Any, is_bigendian: int | bool = False) -> np.ndarray:
    """The pixels of a raw image as ``(H, W, C)`` (``(H, W)`` for one channel) in native byte order.

    ``data`` is anything exposing the buffer protocol (bytes, ``array.array``, numpy).
    Row padding (``step`` larger than ``width * bytes per pixel``) is dropped without a copy.
    """
    if encoding not in _LAYOUTS:
        raise ValueError(f"unsupported image encoding '{encoding}' (supported: {', '.join(SUPPORTED_ENCODINGS)})")
    channels, dtype = _LAYOUTS[encoding]
    if height <= 0 or width <= 0:
        raise ValueError(f"empty image {width}x{height}")
    if encoding in ("yuv422", "uyvy", "yuv422_yuy2", "yuyv") and width % 2:
        raise ValueError(f"{encoding} needs an even width, got {width}")
    itemsize = np.dtype(dtype).itemsize
    row_bytes = width * channels * itemsize
    if step < row_bytes:
        raise ValueError(f"step {step} is smaller than width * bytes per pixel = {row_bytes} for {encoding}")
    if itemsize > 1 and step % itemsize:
        raise ValueError(f"step {step} is not a multiple of the {itemsize}-byte pixel component of {encoding}")
    buffer = _byte_view(data)
    if buffer.size != step * height:
        raise ValueError(f"data has {buffer.size} bytes, expected step * height = {step} * {height} = {step * height}")
    rows = buffer.reshape(height, step)[:, :row_bytes]
    pixels = rows
    if itemsize > 1:
        pixels = rows.view(np.dtype(dtype).newbyteorder(">" if is_bigendian else "<"))
        if not pixels.dtype.isnative:
            pixels = pixels.astype(dtype)  # swap into native order (copies)
    return pixels.reshape(height, width, channels) if channels > 1 else pixels.reshape(height, width)


def decode_rgb(encoding: str, height: int, width: int, step: int, data: Any, is_bigendian: int | bool = False) -> np.ndarray:
    """``(H, W, 3)`` uint8 RGB from raw image fields (colour, mono, Bayer or YUV 4:2:2).

    >>> bgr = np.array([[[1, 2, 3]]], np.uint8)
    >>> decode_rgb("bgr8", 1, 1, 3, bgr.tobytes()).tolist()
    [[[3, 2, 1]]]
    """
    pixels = image_array(encoding, height, width, step, data, is_bigendian)
    if pixels.dtype == np.uint16:
        pixels = (pixels >> 8).astype(np.uint8)
    if encoding in _MONO:
        return cv2.cvtColor(np.ascontiguousarray(pixels), cv2.COLOR_GRAY2RGB)
    if encoding.startswith("bayer_"):
        return cv2.cvtColor(np.ascontiguousarray(pixels), _TO_RGB[encoding])
    code = _TO_RGB[encoding]
    if code is None:
        return np.ascontiguousarray(pixels)
    return cv2.cvtColor(np.ascontiguousarray(pixels), code)


def decode_labels(encoding: str, height: int, width: int, step: int, data: Any, is_bigendian: int | bool = False) -> np.ndarray:
    """``(H, W)`` uint16 class ids from a mono8/mono16/8UC1/16UC1 label image (values unscaled)."""
    if encoding not in _MONO:
        raise ValueError(f"label images must be one of {', '.join(_MONO)}, got '{encoding}'")
    return image_array(encoding, height, width, step, data, is_bigendian).astype(np.uint16)


def encode_image(array: np.ndarray, encoding: str) -> EncodedImage:
    """Fields of a ``sensor_msgs/Image`` holding ``array`` (native byte order, no row padding).

    ``array`` must match ``encoding``: ``(H, W, 3)`` uint8 for rgb8/bgr8, ``(H, W, 4)`` for
    rgba8/bgra8, ``(H, W)`` uint8 for mono8/8UC1, ``(H, W)`` uint16 for mono16/16UC1.
    """
    if encoding not in _ENCODABLE:
        raise ValueError(f"cannot encode '{encoding}' (supported: {', '.join(_ENCODABLE)})")
    channels, dtype = _ENCODABLE[encoding]
    expected_ndim = 2 if channels == 1 else 3
    if not isinstance(array, np.ndarray) or array.dtype != dtype or array.ndim != expected_ndim or (channels > 1 and array.shape[2] != channels):
        shape = "(H, W)" if channels == 1 else f"(H, W, {channels})"
        raise ValueError(f"{encoding} needs a {shape} {np.dtype(dtype).name} array, got {getattr(array, 'shape', None)} {getattr(array, 'dtype', type(array))}")
    height, width = array.shape[:2]
    contiguous = np.ascontiguousarray(array)
    return EncodedImage(
        height=height, width=width, encoding=encoding, is_bigendian=int(sys.byteorder == "big"),
        step=width * channels * np.dtype(dtype).itemsize, data=contiguous.reshape(-1).view(np.uint8),
    )


# ---- sensor_msgs/CompressedImage -------------------------------------------------------------
def _compressed_kind(fmt: str) -> str:
    """'jpeg' or 'png' from a CompressedImage format such as ``rgb8; jpeg compressed bgr8``."""
    text = fmt.lower()
    if "compresseddepth" in text:
        raise ValueError(f"compressedDepth images are not supported (format '{fmt}')")
    for kind, words in (("jpeg", ("jpeg", "jpg")), ("png", ("png",))):
        if any(w in text for w in words):
            return kind
    if not text.strip():
        return "any"  # some drivers leave the format empty; let OpenCV sniff the bytes
    raise ValueError(f"unsupported CompressedImage format '{fmt}' (expected jpeg or png)")


def _imdecode(fmt: str, data: Any, flags: int) -> np.ndarray:
    _compressed_kind(fmt)
    buffer = _byte_view(data)
    if buffer.size == 0:
        raise ValueError("CompressedImage has no data")
    image = cv2.imdecode(buffer, flags)
    if image is None:
        raise ValueError(f"cannot decode {buffer.size} bytes as '{fmt}'")
    return image


def decode_compressed_rgb(fmt: str, data: Any) -> np.ndarray:
    """``(H, W, 3)`` uint8 RGB from a JPEG/PNG ``CompressedImage`` (``format`` and ``data``).

    The compressed file stores true colours whatever the format string says (image_transport
    writes ``"<encoding>; jpeg compressed bgr8"``), so decoding always yields RGB.
    """
    image = _imdecode(fmt, data, cv2.IMREAD_UNCHANGED)
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    return cv2.cvtColor(image, cv2.COLOR_BGRA2RGB if image.shape[2] == 4 else cv2.COLOR_BGR2RGB)


def decode_compressed_labels(fmt: str, data: Any) -> np.ndarray:
    """``(H, W)`` uint16 class ids from a lossless one-channel PNG ``CompressedImage``."""
    if _compressed_kind(fmt) == "jpeg":
        raise ValueError(f"label images must be lossless (png), got format '{fmt}'")
    image = _imdecode(fmt, data, cv2.IMREAD_UNCHANGED)
    if image.ndim != 2:
        raise ValueError(f"label images must have one channel, got shape {image.shape}")
    return image.astype(np.uint16)


def encode_compressed(rgb: np.ndarray, kind: str = "jpeg", quality: int = 90) -> tuple[str, bytes]:
    """``(format, data)`` of a ``CompressedImage`` holding an ``(H, W, 3)`` uint8 RGB image.

    The format string follows image_transport: ``"rgb8; jpeg compressed bgr8"``.
    """
    if kind not in ("jpeg", "png"):
        raise ValueError(f"kind must be 'jpeg' or 'png', got '{kind}'")
    if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got {getattr(rgb, 'shape', None)}")
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)] if kind == "jpeg" else []
    ok, buffer = cv2.imencode(".jpg" if kind == "jpeg" else ".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), params)
    if not ok:
        raise ValueError(f"OpenCV could not encode a {rgb.shape} image as {kind}")
    return f"rgb8; {kind} compressed bgr8", buffer.tobytes()


# ---- duck-typed message helpers (rclpy and rosbags messages alike) ---------------------------
def image_msg_to_rgb(msg: Any) -> np.ndarray:
    """:func:`decode_rgb` of any object with ``sensor_msgs/Image`` attributes."""
    return decode_rgb(msg.encoding, msg.height, msg.width, msg.step, msg.data, msg.is_bigendian)


def image_msg_to_labels(msg: Any) -> np.ndarray:
    """:func:`decode_labels` of any object with ``sensor_msgs/Image`` attributes."""
    return decode_labels(msg.encoding, msg.height, msg.width, msg.step, msg.data, msg.is_bigendian)


def compressed_msg_to_rgb(msg: Any) -> np.ndarray:
    """:func:`decode_compressed_rgb` of any object with ``sensor_msgs/CompressedImage`` attributes."""
    return decode_compressed_rgb(msg.format, msg.data)


def compressed_msg_to_labels(msg: Any) -> np.ndarray:
    """:func:`decode_compressed_labels` of any object with ``CompressedImage`` attributes."""
    return decode_compressed_labels(msg.format, msg.data)
