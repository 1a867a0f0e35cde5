"""Incoming ``sensor_msgs`` images to the RGB frames :class:`sfs_core.pipeline.Pipeline` takes.

:class:`ImageDecoder` turns a ``sensor_msgs/Image`` or ``sensor_msgs/CompressedImage`` into an
``(H, W, 3)`` uint8 **RGB** array, or raises ``ValueError`` with a message naming the problem
(unsupported encoding, ``step``/size mismatch, empty image, undecodable bytes).

Two back-ends give the same result:

* ``numpy`` (always available): :mod:`sfs_core.image_codec`, the codec the bag tools share. rgb8
  without row padding is returned as a zero-copy view of ``msg.data``; bgr8, rgba8, bgra8 and mono8
  take one OpenCV colour conversion; row padding (``step`` > ``width * channels``) is skipped.
* ``cv_bridge``, used when it is importable: the layout is checked with the same codec first (so
  malformed messages fail the same way), then ``CvBridge.imgmsg_to_cv2(msg, "rgb8")`` converts.

Compressed images (JPEG/PNG) are decoded with ``cv2.imdecode`` in both back-ends.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from sensor_msgs.msg import CompressedImage, Image

from sfs_core.image_codec import compressed_msg_to_rgb, image_array, image_msg_to_rgb

try:
    from cv_bridge import CvBridge, CvBridgeError
except ImportError:  # not shipped as a wheel; present on apt-installed ROS 2
    CvBridge = None
    CvBridgeError = RuntimeError

Backend = Literal["numpy", "cv_bridge"]


def cv_bridge_available() -> bool:
    return CvBridge is not None


class ImageDecoder:
    """Decode input image messages to ``(H, W, 3)`` uint8 RGB.

    ``backend`` defaults to ``cv_bridge`` when importable, else ``numpy``.

    >>> decoder = ImageDecoder("numpy")
    >>> msg = Image(height=1, width=2, encoding="bgr8", step=6, data=bytes([1, 2, 3, 4, 5, 6]))
    >>> decoder.decode(msg).tolist()
    [[[3, 2, 1], [6, 5, 4]]]
    """

    def __init__(self, backend: Backend | None = None) -> None:
        if backend is None:
            backend = "cv_bridge" if cv_bridge_available() else "numpy"
        if backend == "cv_bridge" and not cv_bridge_available():
            raise ValueError("the cv_bridge back-end needs the cv_bridge package")
        if backend not in ("numpy", "cv_bridge"):
            raise ValueError(f"unknown image decoder back-end '{backend}'")
        self.backend: Backend = backend
        self._bridge = CvBridge() if backend == "cv_bridge" else None

    def decode(self, msg: Image | CompressedImage) -> np.ndarray:
        """``(H, W, 3)`` uint8 RGB (may share memory with ``msg.data``: do not write into it)."""
        if isinstance(msg, CompressedImage):
            return compressed_msg_to_rgb(msg)
        if self._bridge is None:
            return image_msg_to_rgb(msg)
        return self._decode_with_bridge(msg)

    def _decode_with_bridge(self, msg: Image) -> np.ndarray:
        image_array(msg.encoding, msg.height, msg.width, msg.step, msg.data, msg.is_bigendian)  # layout check
        try:
            rgb: Any = self._bridge.imgmsg_to_cv2(msg, desired_encoding="rgb8")
        except (CvBridgeError, TypeError) as exc:
            raise ValueError(f"cv_bridge cannot convert '{msg.encoding}' to rgb8: {exc}") from exc
        return np.ascontiguousarray(rgb)
