"""Output message builders (needs the built messages)."""

from __future__ import annotations

import numpy as np
import pytest
from std_msgs.msg import Header

from sfs_core.image_codec import image_array
from sfs_core.labels import LabelSource, LabelTable, label_color
from sfs_core.result import MaskRecord, SemanticResult

pytestmark = pytest.mark.ros


@pytest.fixture(scope="module")
def messages(sfs_msgs):
    from sfs_ros import messages

    return messages


@pytest.fixture
def result() -> SemanticResult:
    """A 4x6 frame with two masks: #1 (person) in the top-left, #2 (kite, open vocabulary) bottom-right."""
    table = LabelTable(["wall", "person", "kite"])
    instance_map = np.zeros((4, 6), np.uint16)
    instance_map[0:2, 0:3] = 1
    instance_map[2:4, 3:6] = 2
    instance_map[3, 5] = 0
    label_map = np.full((4, 6), table.id_of("wall"), np.uint16)
    label_map[instance_map == 1] = table.id_of("person")
    label_map[instance_map == 2] = table.id_of("kite")
    masks = [
        MaskRecord(id=1, label="person", class_id=table.id_of("person"), score=0.9, source=LabelSource.CLOSED_SET,
                   bbox=(0, 0, 3, 2), area=6, centroid=(1.0, 0.5)),
        MaskRecord(id=2, label="kite", class_id=table.id_of("kite"), score=0.6, source=LabelSource.OPEN_VOCAB,
                   bbox=(3, 2, 3, 2), area=5, centroid=(4.0, 2.4), candidates=["kite", "bird"],
                   candidate_scores=[0.6, 0.3]),
    ]
    return SemanticResult(label_map=label_map, instance_map=instance_map, masks=masks, label_table=table)


@pytest.fixture
def header() -> Header:
    header = Header(frame_id="camera_optical_frame")
    header.stamp.sec, header.stamp.nanosec = 17, 42
    return header


def pixels(msg) -> np.ndarray:
    return image_array(msg.encoding, msg.height, msg.width, msg.step, msg.data, msg.is_bigendian)


@pytest.mark.parametrize("encoding, array", [
    ("mono16", np.arange(12, dtype=np.uint16).reshape(3, 4) * 1000),
    ("mono8", np.arange(12, dtype=np.uint8).reshape(3, 4)),
    ("rgb8", np.arange(36, dtype=np.uint8).reshape(3, 4, 3)),
])
def test_image_msg_round_trips(messages, header, encoding, array):
    msg = messages.image_msg(array, encoding, header)
    channels = 3 if array.ndim == 3 else 1
    assert (msg.encoding, msg.height, msg.width, msg.step) == (encoding, 3, 4, 4 * array.itemsize * channels)
    assert msg.header.stamp.sec == 17 and msg.header.frame_id == "camera_optical_frame"
    np.testing.assert_array_equal(pixels(msg), array)


def test_image_msg_accepts_non_contiguous_arrays(messages, header):
    rgb = np.arange(60, dtype=np.uint8).reshape(4, 5, 3)[:, ::2]
    np.testing.assert_array_equal(pixels(messages.image_msg(rgb, "rgb8", header)), rgb)


def test_labeled_mask_array(messages, sfs_msgs, result, header):
    msg = messages.labeled_mask_array(result, header)
    assert msg.header.stamp == header.stamp and msg.header.frame_id == header.frame_id
    assert msg.instance_ids.encoding == "mono16" and msg.instance_ids.header.frame_id == header.frame_id
    np.testing.assert_array_equal(pixels(msg.instance_ids), result.instance_map)
    assert [m.id for m in msg.masks] == [1, 2]
    person, kite = msg.masks
    assert (person.label, person.source, person.area) == ("person", sfs_msgs.LabeledMask.CLOSED_SET, 6)
    assert (kite.source, list(kite.candidates)) == (sfs_msgs.LabeledMask.OPEN_VOCAB, ["kite", "bird"])
    assert list(kite.candidate_scores) == pytest.approx([0.6, 0.3])
    assert (kite.bbox.x_offset, kite.bbox.y_offset, kite.bbox.width, kite.bbox.height) == (3, 2, 3, 2)
    for index, (mask, record) in enumerate(zip(msg.masks, result.masks, strict=True)):
        assert (mask.id, mask.label, mask.class_id, mask.area) == (record.id, record.label, record.class_id, record.area)
        assert mask.score == pytest.approx(record.score) and mask.source == int(record.source)
        assert mask.mask.encoding == "mono8" and mask.mask.header.stamp == header.stamp
        np.testing.assert_array_equal(pixels(mask.mask), result.mask_crop(index))
    assert pixels(kite.mask).tolist() == [[255, 255, 255], [255, 255, 0]]


def test_label_table_msg(messages, result, header):
    msg = messages.label_table_msg(result.label_table, header)
    assert list(msg.class_ids) == [0, 1, 2, 3, 4]
    assert list(msg.names) == ["unlabeled", "unidentified", "wall", "person", "kite"]
    assert list(msg.colors) == [channel for i in range(5) for channel in label_color(i)]
    assert msg.header.frame_id == "camera_optical_frame"
