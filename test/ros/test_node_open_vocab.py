"""The open-vocabulary branch inside the installed sfs_node: new names reach the masks and the
label table grows, which republishes the latched ~/labels (random-weight CLIP; meaningless names)."""

from __future__ import annotations

import threading
import time

import pytest
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from ros_helpers import wait_until
from sensor_msgs.msg import Image
from std_msgs.msg import Header

pytestmark = [pytest.mark.ros, pytest.mark.slow]

NAMESPACE = "/open_vocab"
VOCABULARY = ["zebra", "giraffe", "kite"]  # none of them is an ADE20K class


def test_open_vocabulary_labels_grow_the_label_table(run_sfs_node, any_namespace_config, probe, sfs_msgs,
                                                      photo_frames):
    from sfs_ros.messages import image_msg

    node = run_sfs_node(
        "--params-file", str(any_namespace_config), "-r", f"__ns:={NAMESPACE}", "-p", "qos.reliability:=reliable",
        "-p", "open_vocab.enabled:=true", "-p", f"open_vocab.vocabulary:=[{', '.join(VOCABULARY)}]",
        "-p", "open_vocab.duty_cycle:=1.0", "-p", "open_vocab.max_rate:=4.0",
    )
    if not node.wait_for_log("ready:", timeout=300):
        pytest.fail(f"sfs_node did not become ready:\n{node.log()}")
    reliable = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
    latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
    masks = probe.collect(sfs_msgs.LabeledMaskArray, f"{NAMESPACE}/sfs_node/masks", reliable)
    labels = probe.collect(sfs_msgs.LabelTable, f"{NAMESPACE}/sfs_node/labels", latched)
    diagnostics = probe.collect(DiagnosticArray, "/diagnostics", 10)
    camera = probe.node.create_publisher(Image, f"{NAMESPACE}/image", reliable)
    stop = threading.Event()

    def stream() -> None:  # the same photo again and again: stable tracks for the labels to land on
        while not stop.is_set():
            camera.publish(image_msg(photo_frames[0], "rgb8", Header(stamp=probe.now_stamp(), frame_id="camera")))
            time.sleep(0.5)

    def open_vocab_mask():
        for index, msg in enumerate(masks.messages):
            for mask in msg.masks:
                if mask.source == sfs_msgs.LabeledMask.OPEN_VOCAB:
                    return index, mask
        return None

    streamer = threading.Thread(target=stream, daemon=True)
    streamer.start()
    try:
        found = wait_until(open_vocab_mask, 120)
        assert found is not None, f"no open-vocabulary label within 120 s:\n{node.log()[-3000:]}"
        index, mask = found
        # The label landed on a track the per-frame path had already published without it, and
        # frames kept flowing while the worker was busy labelling.
        earlier = masks.messages[:index]
        assert len(earlier) >= 2, len(earlier)
        assert mask.id in {m.id for msg in earlier for m in msg.masks if m.source != sfs_msgs.LabeledMask.OPEN_VOCAB}
        assert mask.label in VOCABULARY and set(mask.candidates) <= set(VOCABULARY) and len(mask.candidates) > 0
        table = wait_until(lambda: labels.messages[-1] if mask.label in labels.latest().names else None, 15)
        assert table is not None, "~/labels was not republished with the new name"
        assert len(labels.messages) >= 2 and len(labels.messages[0].names) < len(table.names)
        assert table.names[mask.class_id] == mask.label
        status_names = {s.name for m in diagnostics.messages for s in m.status}
        assert f"{NAMESPACE}/sfs_node: open vocabulary" in status_names, status_names
    finally:
        stop.set()
        streamer.join()
        probe.node.destroy_publisher(camera)
    code, seconds = node.stop()
    assert code == 0 and seconds < 5, (code, seconds, node.log()[-2000:])
