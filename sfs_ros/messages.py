"""Outgoing messages built from a :class:`sfs_core.result.SemanticResult`.

Every builder takes the input frame's ``std_msgs/Header`` and copies it (stamp and frame_id)
into what it returns. Pixel buffers are filled with ``array.array('B').frombytes`` (one memcpy;
assigning a numpy array to ``msg.data`` is ~1000x slower in rclpy).
"""

from __future__ import annotations

from array import array

import numpy as np
from sensor_msgs.msg import Image, RegionOfInterest
from std_msgs.msg import Header

from sfs_core.image_codec import encode_image
from sfs_core.labels import LabelTable
from sfs_core.result import SemanticResult
from sfs_ros.msg import LabeledMask, LabeledMaskArray
from sfs_ros.msg import LabelTable as LabelTableMsg


def image_msg(pixels: np.ndarray, encoding: str, header: Header) -> Image:
    """``sensor_msgs/Image`` holding ``pixels``: ``(H, W)`` uint8 for mono8, ``(H, W)`` uint16 for
    mono16, ``(H, W, 3)`` uint8 for rgb8/bgr8 (any strides; no row padding in the message)."""
    encoded = encode_image(pixels, encoding)
    data = array("B")
    data.frombytes(encoded.data)
    return Image(
        header=header, height=encoded.height, width=encoded.width, encoding=encoded.encoding,
        is_bigendian=encoded.is_bigendian, step=encoded.step, data=data,
    )


def labeled_mask_array(result: SemanticResult, header: Header) -> LabeledMaskArray:
    """All masks of one frame: the mono16 instance image and, per mask, its label, score,
    open-vocabulary candidates, bbox, area and mono8 (0/255) image cropped to the bbox."""
    masks = [
        LabeledMask(**fields, bbox=RegionOfInterest(x_offset=x, y_offset=y, width=width, height=height),
                    mask=image_msg(crop, "mono8", header))
        for fields, (x, y, width, height), crop in result.labeled_masks()
    ]
    return LabeledMaskArray(header=header, instance_ids=image_msg(result.instance_map, "mono16", header), masks=masks)


def label_table_msg(table: LabelTable, header: Header) -> LabelTableMsg:
    """The whole label table: ids ``0..N-1``, normalised names and RGB colours (3 bytes per id)."""
    entries = table.entries()
    return LabelTableMsg(
        header=header,
        class_ids=array("H", [e.class_id for e in entries]),
        names=[e.name for e in entries],
        colors=array("B", [channel for e in entries for channel in e.color]),
    )
