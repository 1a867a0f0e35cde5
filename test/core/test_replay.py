"""sfs_core.replay: round trips through generated bags, frame selection, realtime simulation, mIoU.

These use :class:`FakePipeline` (deterministic, no models); ``test_replay_cli.py`` runs the
real pipeline with random weights.
"""

from __future__ import annotations

import numpy as np
import pytest
from fixtures_eval import (
    GT_TOPIC,
    START_NS,
    FakeClock,
    FakePipeline,
    assert_masks_agree_with_semantic,
    camera_frames,
    read_output,
    stamp_ns,
    synthetic_labels,
    write_camera_bag,
)

from sfs_core.bags import LABELED_MASK_ARRAY, OutputTopics
from sfs_core.evaluation.label_mapping import LabelMapper, builtin_label_space, load_label_space
from sfs_core.evaluation.metrics import ConfusionMatrix
from sfs_core.replay import LatestFrameSimulator, ReplayOptions, format_summary, replay, select_frames, simulate_latest_frame

TOPICS = OutputTopics()
PER_FRAME = (TOPICS.semantic, TOPICS.semantic_color, TOPICS.overlay, TOPICS.masks)
FRAMES = camera_frames(5)


@pytest.fixture(scope="module", params=[("mcap", False), ("mcap", True), ("sqlite3", False), ("sqlite3", True)],
                ids=["mcap-raw", "mcap-compressed", "sqlite3-raw", "sqlite3-compressed"])
def round_trip(request, tmp_path_factory):
    storage, compressed = request.param
    folder = tmp_path_factory.mktemp("replay")
    bag = write_camera_bag(folder / "in", FRAMES, storage, compressed)
    report = replay(FakePipeline(), bag, folder / "out", ReplayOptions(progress=False))
    return bag, folder / "out", storage, report


def test_round_trip_counts_stamps_and_storage(round_trip):
    bag, out, storage, report = round_trip
    from sfs_core.bags import BagReader

    with BagReader(bag) as reader:
        inputs = list(reader.messages("/camera/image_raw"))
    output = read_output(out)
    assert report["output"]["storage"] == storage and report["frames"]["processed"] == len(FRAMES)
    for topic in PER_FRAME:
        assert len(output[topic]) == len(FRAMES), topic
        assert [stamp_ns(m) for _, m in output[topic]] == [m.stamp_ns for m in inputs]
        assert [t for t, _ in output[topic]] == [m.log_time_ns for m in inputs]  # receive times kept
        assert {m.header.frame_id for _, m in output[topic]} == {inputs[0].frame_id}
    # the table grows once (frame 2 adds "kite"): written with frame 0 and again with frame 2
    assert [stamp_ns(m) for _, m in output[TOPICS.labels]] == [inputs[0].stamp_ns, inputs[2].stamp_ns]
    assert report["output"]["topics"] == {**{t: len(FRAMES) for t in PER_FRAME}, TOPICS.labels: 2}


def test_masks_agree_with_semantic(round_trip):
    """instance_ids + per-mask class ids reproduce /sfs/semantic exactly where a mask won."""
    _, out, _, _ = round_trip
    assert_masks_agree_with_semantic(read_output(out))


@pytest.mark.ros
def test_outputs_deserialise_with_rclpy_of_the_installed_package(round_trip):
    """The colcon-built sfs_ros messages (and rclpy's sensor_msgs) read the CDR bytes we wrote."""
    pytest.importorskip("rclpy")
    msg_module = pytest.importorskip("sfs_ros.msg", reason="needs the colcon-built sfs_ros (source install/setup.bash)")
    from rclpy.serialization import deserialize_message
    from rosbags.rosbag2 import Reader
    from sensor_msgs.msg import Image

    _, out, _, _ = round_trip
    classes = {LABELED_MASK_ARRAY: msg_module.LabeledMaskArray, "sfs_ros/msg/LabelTable": msg_module.LabelTable, "sensor_msgs/msg/Image": Image}
    with Reader(out) as reader:
        decoded = [(c.topic, deserialize_message(bytes(raw), classes[c.msgtype])) for c, _, raw in reader.messages()]
    ours = read_output(out)
    masks = [m for topic, m in decoded if topic == TOPICS.masks]
    assert len(masks) == len(ours[TOPICS.masks])
    for msg, (_, expected) in zip(masks, ours[TOPICS.masks], strict=True):
        assert [(m.id, m.label, m.class_id, m.source, m.area) for m in msg.masks] == \
            [(m.id, m.label, m.class_id, m.source, m.area) for m in expected.masks]
        assert bytes(msg.instance_ids.data) == expected.instance_ids.data.tobytes()
        assert msg.masks[0].bbox.width == expected.masks[0].bbox.width and list(msg.masks[0].candidates) == ["a", "b"]
    tables = [m for topic, m in decoded if topic == TOPICS.labels]
    assert list(tables[-1].names) == list(ours[TOPICS.labels][-1][1].names)
    semantic = [m for topic, m in decoded if topic == TOPICS.semantic]
    assert semantic[0].encoding == "mono16" and semantic[0].header.frame_id == ours[TOPICS.semantic][0][1].header.frame_id


def test_select_frames_every_and_limit():
    class M:
        def __init__(self, index):
            self.index = index

    picked = lambda every, limit: [m.index for m in select_frames(map(M, range(10)), every, limit)]  # noqa: E731
    assert picked(1, None) == list(range(10))
    assert picked(3, None) == [0, 3, 6, 9]
    assert picked(3, 2) == [0, 3]
    assert picked(1, 4) == [0, 1, 2, 3]


def test_every_and_limit_in_a_replay(tmp_path):
    bag = write_camera_bag(tmp_path / "in", FRAMES, "mcap")
    report = replay(FakePipeline(), bag, tmp_path / "out", ReplayOptions(every=2, limit=2, progress=False))
    assert report["frames"] == {"selected": 2, "processed": 2, "dropped_realtime": 0}
    assert [stamp_ns(m) for _, m in read_output(tmp_path / "out")[TOPICS.semantic]] == [START_NS, START_NS + 200_000_000]


def test_latest_frame_policy():
    assert simulate_latest_frame([0.0, 0.1, 0.2, 0.3, 0.4], [0.05] * 5) == [0, 1, 2, 3, 4]  # fast enough
    assert simulate_latest_frame([0.0, 0.1, 0.2, 0.3, 0.4], [0.25] * 5) == [0, 2, 4]
    assert simulate_latest_frame([0.0, 0.1, 0.2, 0.3, 0.4, 0.5], [0.35, 0.01, 0.01, 0.01, 0.01, 0.01]) == [0, 3, 4, 5]
    # an idle gap: the worker waits for the next frame instead of starting early
    sim = LatestFrameSimulator()
    assert sim.offer(0.0, 1.0) == 0.0 and sim.done(0.1) == pytest.approx(0.1)
    assert sim.offer(1.0, None) == 1.0
    with pytest.raises(RuntimeError):
        sim.offer(1.1, None)


def test_realtime_replay_is_exact_with_a_fake_clock(tmp_path):
    bag = write_camera_bag(tmp_path / "in", FRAMES, "sqlite3", compressed=True)  # 10 Hz
    clock = FakeClock()
    report = replay(FakePipeline(clock, seconds=0.25), bag, tmp_path / "out", ReplayOptions(realtime=True, progress=False), clock=clock)
    assert report["frames"] == {"selected": 5, "processed": 3, "dropped_realtime": 2}
    assert report["realtime"]["processed_fraction"] == 0.6
    assert report["realtime"]["end_to_end_ms"]["max"] == pytest.approx(350.0)  # frame 4: arrives 0.4, done 0.75
    assert report["input_rate_hz"] == pytest.approx(10.0)
    output = read_output(tmp_path / "out")
    assert [stamp_ns(m) for _, m in output[TOPICS.semantic]] == [START_NS + i * 100_000_000 for i in (0, 2, 4)]
    assert "a live node would process 3/5 frames (60.0%)" in format_summary(report)


def test_ground_truth_miou(tmp_path):
    gt = [synthetic_labels(f, 19) for f in FRAMES]
    bag = write_camera_bag(tmp_path / "in", FRAMES, "mcap", gt=gt)
    mapper = LabelMapper(builtin_label_space("cityscapes"))
    report = replay(FakePipeline(), bag, tmp_path / "out", ReplayOptions(gt_topic=GT_TOPIC, mapper=mapper, progress=False))
    expected, pipeline = ConfusionMatrix(19), FakePipeline()
    by_name = {"road": 0, "car": 13, "person": 11, "tree": 8, "sky": 10}
    for frame, labels in zip(FRAMES, gt, strict=True):
        result = pipeline.process(frame)
        expected.update(np.array([by_name.get(n, 255) for n in result.label_table.names])[result.label_map], labels)
    evaluation = report["evaluation"]
    assert evaluation["frames_with_gt"] == 5 and evaluation["gt_unmatched"] == 0
    assert evaluation["metrics"]["mIoU"] == pytest.approx(expected.miou(), abs=1e-12)
    assert {e["label"]: e["method"] for e in evaluation["label_mapping"]["entries"]}["tree"] == "synonym"
    assert report["input"]["image_topic"] == "/camera/image_raw"  # the GT topic is not a camera candidate
    assert "mIoU" in format_summary(report)


def test_report_contents(round_trip):
    _, _, _, report = round_trip
    assert set(report["latency_ms"]) >= {"decode", "masks", "total", "render", "write"}
    assert report["latency_ms"]["total"]["count"] == len(FRAMES)
    assert report["masks_per_frame"]["mean"] == 6.0
    shares = {h["label"]: h for h in report["label_histogram"]}
    assert sum(h["pixel_share"] for h in report["label_histogram"]) == pytest.approx(1.0, abs=1e-5)
    assert shares["kite"]["masks"] == 3 and shares["sky"]["masks"] == 2
    summary = format_summary(report)
    assert "throughput" in summary and "labels by pixels" in summary and "/sfs/masks 5" in summary


def test_option_errors(tmp_path):
    bag = write_camera_bag(tmp_path / "in", FRAMES[:1], "mcap")
    for options, message in [
        (ReplayOptions(every=0), "--every must be >= 1"),
        (ReplayOptions(limit=0), "--limit must be >= 1"),
        (ReplayOptions(gt_topic=GT_TOPIC), "--gt-topic needs --label-map"),
    ]:
        with pytest.raises(ValueError, match=message):
            replay(FakePipeline(), bag, tmp_path / "out", options)
    replay(FakePipeline(), bag, tmp_path / "out", ReplayOptions(progress=False))
    with pytest.raises(FileExistsError):
        replay(FakePipeline(), bag, tmp_path / "out", ReplayOptions(progress=False))
    replay(FakePipeline(), bag, tmp_path / "out", ReplayOptions(progress=False, overwrite=True, storage="sqlite3"))
    assert list((tmp_path / "out").glob("*.db3"))


def test_ground_truth_mono16_with_reduce_zero_label_scores_perfectly(tmp_path):
    """GT made from the fake pipeline's own output (class k stored as k + 1, 0 = ignore) gives mIoU 1."""
    space_file = tmp_path / "space.yaml"
    space_file.write_text("classes: [road, car, person, tree, sky]\nreduce_zero_label: true\n")
    mapper = LabelMapper(load_label_space(space_file))
    reference, gt = FakePipeline(), []
    for frame in FRAMES:
        result = reference.process(frame)
        lut = mapper.lookup(result.label_table.names)
        gt.append(np.where(lut[result.label_map] == 255, 0, lut[result.label_map] + 1).astype(np.uint16))
    bag = write_camera_bag(tmp_path / "in", FRAMES, "sqlite3", gt=gt)
    report = replay(FakePipeline(), bag, tmp_path / "out", ReplayOptions(gt_topic=GT_TOPIC, mapper=mapper, progress=False))
    metrics = report["evaluation"]["metrics"]
    assert report["evaluation"]["frames_with_gt"] == len(FRAMES)
    assert metrics["mIoU"] == 1.0 and metrics["aAcc"] == 1.0 and metrics["classes_counted"] == 5
    assert report["evaluation"]["protocol"]["reduce_zero_label"] is True
