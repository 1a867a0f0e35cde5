"""sfs_core.bags: reading camera bags (mcap/sqlite3, raw/compressed) and writing our topics."""

from __future__ import annotations

import numpy as np
import pytest
from fixtures_eval import (
    CAMERA_TOPIC,
    FRAME_ID,
    GT_TOPIC,
    RECEIVE_DELAY_NS,
    START_NS,
    FakePipeline,
    camera_frames,
    synthetic_labels,
    write_camera_bag,
)

from sfs_core import bags
from sfs_core.bags import (
    COMPRESSED_IMAGE,
    IMAGE,
    LABEL_TABLE,
    LABELED_MASK_ARRAY,
    SFS_MESSAGES,
    BagError,
    BagMessage,
    BagReader,
    MessageBuilder,
    OutputTopics,
    ResultBagWriter,
    StampMatcher,
    find_msg_dir,
    sfs_typestore,
    storage_of,
)
from sfs_core.image_codec import image_msg_to_labels, image_msg_to_rgb

FRAMES = camera_frames(4)


@pytest.fixture(scope="module", params=[("mcap", False), ("mcap", True), ("sqlite3", False), ("sqlite3", True)],
                ids=["mcap-raw", "mcap-compressed", "sqlite3-raw", "sqlite3-compressed"])
def camera_bag(request, tmp_path_factory):
    storage, compressed = request.param
    path = tmp_path_factory.mktemp("bags") / f"{storage}_{'jpeg' if compressed else 'raw'}"
    gt = [synthetic_labels(f, 19) for f in FRAMES]
    return write_camera_bag(path, FRAMES, storage, compressed, gt=gt), storage, compressed


def test_typestore_registers_our_messages_from_msg_files():
    store = sfs_typestore()
    assert {"sfs_ros/msg/LabeledMask", LABELED_MASK_ARRAY, LABEL_TABLE} <= set(store.types)
    mask_type = store.types["sfs_ros/msg/LabeledMask"]
    assert (mask_type.CLOSED_SET, mask_type.OPEN_VOCAB, mask_type.UNIDENTIFIED) == (0, 1, 2)
    assert sfs_typestore() is store  # cached


def test_msg_dir_search(tmp_path, monkeypatch):
    source = find_msg_dir()
    assert (source / "LabeledMaskArray.msg").is_file()
    copy = tmp_path / "msg"
    copy.mkdir()
    for name in SFS_MESSAGES:
        (copy / f"{name}.msg").write_text((source / f"{name}.msg").read_text())
    assert find_msg_dir(copy) == copy
    monkeypatch.setenv("SFS_MSG_DIR", str(copy))
    assert find_msg_dir() == copy
    monkeypatch.delenv("SFS_MSG_DIR")
    monkeypatch.delenv("AMENT_PREFIX_PATH", raising=False)
    monkeypatch.setattr(bags, "__file__", str(tmp_path / "site" / "sfs_core" / "bags.py"))
    with pytest.raises(FileNotFoundError, match="Set SFS_MSG_DIR"):
        find_msg_dir()


def test_reads_frames_stamps_and_pixels(camera_bag):
    path, storage, compressed = camera_bag
    assert storage_of(path) == storage
    with BagReader(path) as bag:
        assert bag.storage == storage
        topic = bag.select_image_topic(exclude=(GT_TOPIC,))
        assert (topic.name, topic.msgtype, topic.count) == (CAMERA_TOPIC, COMPRESSED_IMAGE if compressed else IMAGE, 4)
        messages = list(bag.messages(topic.name))
    assert [m.index for m in messages] == [0, 1, 2, 3]
    assert [m.stamp_ns for m in messages] == [START_NS + i * 100_000_000 for i in range(4)]
    assert [m.log_time_ns - m.stamp_ns for m in messages] == [RECEIVE_DELAY_NS] * 4
    assert {m.frame_id for m in messages} == {FRAME_ID}
    for message, frame in zip(messages, FRAMES, strict=True):
        rgb = message.rgb()
        assert rgb.shape == frame.shape and rgb.dtype == np.uint8
        error = np.abs(rgb.astype(int) - frame).mean()
        swapped = np.abs(rgb[..., ::-1].astype(int) - frame).mean()
        assert error < (6.0 if compressed else 1e-9) and swapped > 3 * error  # JPEG q95 vs exact; RGB not BGR


def test_topic_selection_errors(tmp_path):
    path = write_camera_bag(tmp_path / "two", FRAMES[:1], "mcap", extra_image_topic="/camera2/image_raw")
    with BagReader(path) as bag:
        with pytest.raises(BagError, match="several image topics .*/camera/image_raw, /camera2/image_raw.*--image-topic"):
            bag.select_image_topic()
        assert bag.select_image_topic("/camera2/image_raw").name == "/camera2/image_raw"
        with pytest.raises(BagError, match="'/nope' is not in bag"):
            bag.select_image_topic("/nope")
        with pytest.raises(BagError, match="is not in bag"):
            list(bag.messages("/nope"))
    with pytest.raises(FileNotFoundError):
        BagReader(tmp_path / "missing")


def test_bare_storage_file_is_readable(camera_bag):
    path, storage, _ = camera_bag
    (file,) = path.glob("*.mcap" if storage == "mcap" else "*.db3")
    with BagReader(file) as bag:
        assert bag.storage == storage
        assert len(list(bag.messages(CAMERA_TOPIC))) == 4


def test_stamp_matcher_pairs_by_stamp_and_skips_gaps():
    class Stamped:
        def __init__(self, ns):
            self.stamp_ns = ns

    matcher = StampMatcher(iter([Stamped(10), Stamped(20), Stamped(25), Stamped(40)]))
    assert matcher.get(10).stamp_ns == 10
    assert matcher.get(15) is None  # no message stamped 15; 20 stays pending
    assert matcher.get(20).stamp_ns == 20
    assert matcher.get(30) is None and matcher.unmatched == 1  # 25 was skipped
    assert matcher.get(40).stamp_ns == 40
    assert matcher.get(50) is None


def test_ground_truth_topic_decodes_as_labels(camera_bag):
    path, _, _ = camera_bag
    with BagReader(path) as bag:
        labels = [m.labels() for m in bag.messages(GT_TOPIC)]
    assert all(np.array_equal(a, synthetic_labels(f, 19)) for a, f in zip(labels, FRAMES, strict=True))


def test_writer_round_trip_and_self_describing_bag(tmp_path):
    """Everything the writer stores deserialises again, with the typestore and from the bag's own msgdefs."""
    from rosbags.rosbag2 import Reader
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    pipeline = FakePipeline(grow_at=1)
    results, out = [], tmp_path / "out"
    with ResultBagWriter(out, "mcap") as writer:
        for i, frame in enumerate(FRAMES[:3]):  # the table is shared and grows: write each frame as it comes
            results.append(pipeline.process(frame))
            writer.write(results[-1], frame, START_NS + i, FRAME_ID, START_NS + 10 + i)
    topics = OutputTopics()
    assert writer.counts == {topics.semantic: 3, topics.semantic_color: 3, topics.overlay: 3, topics.masks: 3, topics.labels: 2}

    fresh = get_typestore(Stores.ROS2_JAZZY)  # knows nothing of sfs_ros: learn it from the bag
    with Reader(out) as reader:
        for connection in reader.connections:
            if connection.msgtype.startswith("sfs_ros/"):
                fresh.register(get_types_from_msg(connection.msgdef.data, connection.msgtype))
        decoded = [(c.topic, t, fresh.deserialize_cdr(raw, c.msgtype)) for c, t, raw in reader.messages()]
        qos = {c.topic: c.ext.offered_qos_profiles for c in reader.connections}
    assert qos[topics.labels][0].durability.name == "TRANSIENT_LOCAL"
    by_topic = {}
    for topic, log_time, msg in decoded:
        by_topic.setdefault(topic, []).append((log_time, msg))
    semantic = [m for _, m in by_topic[topics.semantic]]
    assert [t for t, _ in by_topic[topics.semantic]] == [START_NS + 10 + i for i in range(3)]
    assert [m.header.stamp.nanosec for m in semantic] == [(START_NS + i) % 1_000_000_000 for i in range(3)]
    for msg, result in zip(semantic, results, strict=True):
        assert np.array_equal(image_msg_to_labels(msg), result.label_map)
    tables = [m for _, m in by_topic[topics.labels]]
    assert list(tables[-1].names) == results[-1].label_table.names
    assert tables[-1].colors.reshape(-1, 3).tolist() == [list(e.color) for e in results[-1].label_table.entries()]
    overlay = image_msg_to_rgb(by_topic[topics.overlay][0][1])
    assert overlay.shape == FRAMES[0].shape


def test_masks_message_matches_result():
    store = sfs_typestore()
    build = MessageBuilder(store)
    result = FakePipeline().process(FRAMES[0])
    msg = build.masks(build.header(START_NS, FRAME_ID), result)
    back = store.deserialize_cdr(store.serialize_cdr(msg, LABELED_MASK_ARRAY), LABELED_MASK_ARRAY)
    assert np.array_equal(image_msg_to_labels(back.instance_ids), result.instance_map)
    for mask, record in zip(back.masks, result.masks, strict=True):
        assert (mask.id, mask.label, mask.class_id, mask.area) == (record.id, record.label, record.class_id, record.area)
        assert mask.score == pytest.approx(record.score) and mask.source == int(record.source)
    first = back.masks[0]
    assert (first.bbox.x_offset, first.bbox.y_offset, first.bbox.width, first.bbox.height) == result.masks[0].bbox
    assert list(first.candidates) == ["a", "b"] and np.allclose(first.candidate_scores, [0.6, 0.3])
    assert np.array_equal(image_msg_to_labels(first.mask) > 0, result.mask_crop(0) > 0)
    assert back.masks[4].source == store.types["sfs_ros/msg/LabeledMask"].UNIDENTIFIED


def test_writer_refuses_to_clobber(tmp_path):
    (tmp_path / "precious").mkdir()
    (tmp_path / "precious" / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="use --force"):
        ResultBagWriter(tmp_path / "precious")
    with pytest.raises(FileExistsError, match="not a rosbag2 folder"):
        ResultBagWriter(tmp_path / "precious", overwrite=True)
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(FileExistsError, match="not a rosbag2 folder"):
        ResultBagWriter(tmp_path / "file.txt", overwrite=True)
    with pytest.raises(BagError, match="storage must be one of"):
        ResultBagWriter(tmp_path / "x", storage="rosbag1")


def test_bag_message_rejects_malformed_pixels():
    class Broken:
        encoding, height, width, step, is_bigendian, data = "rgb8", 2, 2, 6, 0, b"\0" * 5

    with pytest.raises(ValueError, match="data has 5 bytes"):
        BagMessage(0, 0, IMAGE, Broken()).rgb()
