"""The installed sfs_node over real topics: one node process (random-weight models) shared by the
tests of this module, fed with real photos by an in-process probe node.

The node runs with ``qos.reliability: reliable`` here: best-effort 640x480 frames are lost on this
machine's loopback under load (measured: ~40% at 10 Hz even between two idle processes), which
would make the tests flaky without testing anything of ours. The default best-effort input is
covered by test_node_lifecycle.py.
"""

from __future__ import annotations

import signal
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.parameter import Parameter
from rclpy.parameter_client import AsyncParameterClient
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from ros_helpers import Collector, NodeProcess, RosProbe, Stamp, stamp_of, wait_until
from sensor_msgs.msg import CompressedImage, Image

from sfs_core.image_codec import image_array
from sfs_core.labels import label_color

pytestmark = [pytest.mark.ros, pytest.mark.slow]

FRAME_ID = "camera_optical_frame"
NODE = "/sfs_node"
RELIABLE = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE)
LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
#: Seconds to wait for one frame's outputs (a frame takes ~1 s here; the machine may be busy).
FRAME_TIMEOUT = 60.0


@dataclass
class Outputs:
    semantic: Collector
    semantic_color: Collector
    overlay: Collector
    masks: Collector
    labels: Collector
    diagnostics: Collector

    def diagnostic_values(self) -> dict[str, str]:
        """Key-values of the newest /diagnostics message."""
        latest = self.diagnostics.latest()
        return {kv.key: kv.value for kv in latest.status[0].values} if latest else {}


@pytest.fixture(scope="module")
def node(start_sfs_node, random_config) -> Iterator[NodeProcess]:
    process = start_sfs_node("--params-file", str(random_config), "-p", "qos.reliability:=reliable",
                             "-p", "input.compressed:=true")
    if not process.wait_for_log("ready:", timeout=300):
        pytest.fail(f"sfs_node did not become ready:\n{process.log()}")
    yield process
    process.close()  # normally stopped by the last test already


@pytest.fixture(scope="module")
def outputs(node, probe: RosProbe, sfs_msgs) -> Outputs:
    return Outputs(
        semantic=probe.collect(Image, f"{NODE}/semantic", RELIABLE),
        semantic_color=probe.collect(Image, f"{NODE}/semantic_color", RELIABLE),
        overlay=probe.collect(Image, f"{NODE}/overlay", RELIABLE),
        masks=probe.collect(sfs_msgs.LabeledMaskArray, f"{NODE}/masks", RELIABLE),
        labels=probe.collect(sfs_msgs.LabelTable, f"{NODE}/labels", LATCHED),
        diagnostics=probe.collect(DiagnosticArray, "/diagnostics", 10),
    )


@pytest.fixture(scope="module")
def camera(probe: RosProbe, node):
    # Depth 30: a burst reaches the node whole, so the node (not the middleware) drops frames.
    qos = QoSProfile(depth=30, reliability=ReliabilityPolicy.RELIABLE)
    publisher = probe.node.create_publisher(Image, "/image", qos)
    assert wait_until(lambda: publisher.get_subscription_count() > 0, 30), "sfs_node never subscribed to /image"
    return publisher


def send(probe: RosProbe, publisher, rgb: np.ndarray, **fields) -> Stamp:
    """Publish ``rgb`` as an rgb8 frame stamped now (``fields`` overwrite message fields)."""
    from sfs_ros.messages import image_msg

    msg = image_msg(rgb, "rgb8", probe_header(probe))
    for name, value in fields.items():
        setattr(msg, name, value)
    publisher.publish(msg)
    return stamp_of(msg)


def probe_header(probe: RosProbe):
    from std_msgs.msg import Header

    return Header(stamp=probe.now_stamp(), frame_id=FRAME_ID)


def process(probe: RosProbe, publisher, outputs: Outputs, rgb: np.ndarray, timeout: float = FRAME_TIMEOUT) -> Stamp:
    """Send frames until one comes back on ~/masks (the first may race discovery); its stamp."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stamp = send(probe, publisher, rgb)
        if outputs.masks.wait_for_stamp(stamp, timeout=min(15.0, deadline - time.monotonic())):
            return stamp
    pytest.fail(f"no ~/masks output within {timeout} s")


def pixels(msg) -> np.ndarray:
    return image_array(msg.encoding, msg.height, msg.width, msg.step, msg.data, msg.is_bigendian)


def test_all_outputs_carry_the_input_header(node, probe, camera, outputs, photo_frames):
    stamp = process(probe, camera, outputs, photo_frames[0])
    names = ("semantic", "semantic_color", "overlay")
    images = {name: getattr(outputs, name).wait_for_stamp(stamp, 10) for name in names}
    for name, msg in images.items():
        assert msg is not None, f"no ~/{name} for the frame that produced ~/masks"
        assert msg.header.frame_id == FRAME_ID and (msg.width, msg.height) == (640, 480)
    assert images["semantic"].encoding == "mono16"
    assert images["semantic_color"].encoding == images["overlay"].encoding == "rgb8"
    masks = outputs.masks.by_stamp(stamp)
    assert masks.header.frame_id == FRAME_ID and stamp_of(masks.instance_ids) == stamp
    labels = wait_until(outputs.labels.latest, 10)
    assert labels is not None and labels.header.frame_id == FRAME_ID
    assert stamp_of(labels) <= stamp  # stamped by the first processed frame


def test_instance_ids_agree_with_masks(probe, camera, outputs, photo_frames):
    stamp = process(probe, camera, outputs, photo_frames[1])
    msg = outputs.masks.by_stamp(stamp)
    semantic = pixels(outputs.semantic.wait_for_stamp(stamp, 10))
    ids = pixels(msg.instance_ids)
    names = list(outputs.labels.latest().names)
    assert len(msg.masks) > 0 and int(ids.max()) == len(msg.masks)
    for index, mask in enumerate(msg.masks):
        ys, xs = np.nonzero(ids == index + 1)
        x, y, w, h = mask.bbox.x_offset, mask.bbox.y_offset, mask.bbox.width, mask.bbox.height
        assert mask.area == xs.size > 0
        assert (x, y, w, h) == (xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1)
        np.testing.assert_array_equal(pixels(mask.mask), (ids[y:y + h, x:x + w] == index + 1) * 255)
        assert np.all(semantic[ids == index + 1] == mask.class_id)
        assert names[mask.class_id] == mask.label
        assert stamp_of(mask.mask) == stamp


def test_late_subscriber_gets_the_label_table_once(probe, outputs, sfs_msgs):
    late = probe.collect(sfs_msgs.LabelTable, f"{NODE}/labels", LATCHED)
    table = wait_until(late.latest, 15)
    assert table is not None, "a late transient-local subscriber did not get ~/labels"
    assert list(table.names[:2]) == ["unlabeled", "unidentified"] and "wall" in table.names
    assert list(table.class_ids) == list(range(len(table.names)))
    assert list(table.colors) == [c for i in table.class_ids for c in label_color(i)]
    # The random-weight closed-set vocabulary never grows, so the table went out exactly once.
    assert len(outputs.labels.messages) == 1


def test_diagnostics_report_counts_latency_and_models(outputs):
    def values_of(msg) -> dict[str, str]:
        return {kv.key: kv.value for kv in msg.status[0].values}

    # The window that saw a frame carries its latency; later idle windows say n/a.
    def windows_with_frames() -> list:
        return [m for m in outputs.diagnostics.messages if values_of(m)["latency_mean_ms"] != "n/a"]

    with_frames = wait_until(windows_with_frames, 5)
    assert with_frames, [values_of(m) for m in outputs.diagnostics.messages][-4:]
    window = values_of(with_frames[-1])
    assert float(window["processed_fps"]) > 0
    assert 0 < float(window["latency_mean_ms"]) <= float(window["latency_max_ms"])
    # Both frames of the tests above are counted once the next message is out (1 Hz).
    assert wait_until(lambda: int(outputs.diagnostic_values()["frames_processed"]) >= 2, 5)
    status = outputs.diagnostics.latest().status[0]
    values = values_of(outputs.diagnostics.latest())
    assert status.name == f"{NODE}: semantic segmentation" and status.hardware_id == "cpu"
    assert values["device"] == "cpu" and values["image_decoder"] in ("numpy", "cv_bridge")
    assert int(values["frames_received"]) >= int(values["frames_processed"])
    assert float(values["model_load_s"]) > 0 and float(values["warmup_s"]) > 0
    assert int(values["label_classes"]) == len(outputs.labels.latest().names)
    assert values["labels_refused"] == "0"
    assert values["input_topics"] == "/image, /image/compressed"


def _set(client: AsyncParameterClient, **values):
    future = client.set_parameters([Parameter(name.replace("__", "."), value=v) for name, v in values.items()])
    assert wait_until(future.done, 15), "set_parameters timed out"
    return future.result().results


def test_thresholds_change_at_run_time(probe, camera, outputs, photo_frames):
    client = AsyncParameterClient(probe.node, NODE)
    assert client.wait_for_services(15)
    assert all(r.successful for r in _set(client, masks__conf=0.5))
    # Random weights score every mask ~0.01, so conf 0.5 leaves none.
    assert len(outputs.masks.by_stamp(process(probe, camera, outputs, photo_frames[0])).masks) == 0
    assert all(r.successful for r in _set(client, masks__conf=0.01, fusion__min_confidence=0.1, masks__iou=0.8))
    assert len(outputs.masks.by_stamp(process(probe, camera, outputs, photo_frames[0])).masks) > 0
    (out_of_range,) = _set(client, masks__conf=1.5)
    assert not out_of_range.successful and "[0, 1]" in out_of_range.reason
    (read_only,) = _set(client, masks__model="/elsewhere/FastSAM-x.pt")
    assert not read_only.successful and "read-only" in read_only.reason
    (wrong_type,) = _set(client, masks__iou="high")
    assert not wrong_type.successful


def test_bad_input_is_skipped_and_the_node_keeps_publishing(node, probe, camera, outputs, photo_frames):
    before = int(outputs.diagnostic_values()["frames_rejected"])
    good = photo_frames[0]
    bad_frames = [
        {"encoding": "32FC1"},
        {"encoding": "nonsense"},
        {"data": bytes(1000)},  # truncated
        {"step": 10},  # smaller than width * 3
        {"height": 0, "width": 0, "step": 0, "data": b""},
    ]
    for fields in bad_frames:
        send(probe, camera, good, **fields)
        time.sleep(0.5)  # one at a time, so none replaces another before the worker sees it
    process(probe, camera, outputs, photo_frames[1])
    assert wait_until(lambda: int(outputs.diagnostic_values()["frames_rejected"]) >= before + len(bad_frames), 10)
    assert "skipping a frame from '/image'" in node.log()
    assert node.process.poll() is None


def test_compressed_input(probe, node, outputs, photo_frames):
    publisher = probe.node.create_publisher(CompressedImage, "/image/compressed", RELIABLE)
    assert wait_until(lambda: publisher.get_subscription_count() > 0, 30)
    ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(photo_frames[1], cv2.COLOR_RGB2BGR))
    assert ok
    deadline = time.monotonic() + FRAME_TIMEOUT
    while time.monotonic() < deadline:
        msg = CompressedImage(header=probe_header(probe), format="jpeg", data=jpeg.tobytes())
        publisher.publish(msg)
        if outputs.masks.wait_for_stamp(stamp_of(msg), 15):
            break
    else:
        pytest.fail("no ~/masks for a compressed frame")
    assert outputs.semantic.wait_for_stamp(stamp_of(msg), 10).width == 640
    probe.node.destroy_publisher(publisher)


def test_incompatible_qos_is_reported(node, probe):
    qos = QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT)
    best_effort = probe.node.create_publisher(Image, "/image", qos)
    try:
        assert node.wait_for_log("offers QoS incompatible", timeout=20), node.log()[-2000:]
        assert "policy RELIABILITY" in node.log()
    finally:
        probe.node.destroy_publisher(best_effort)


def test_burst_processes_the_latest_frame_and_memory_stays_flat(node, probe, camera, outputs, photo_frames):
    def counters() -> dict[str, int]:
        values = outputs.diagnostic_values()
        return {k: int(values[f"frames_{k}"]) for k in ("received", "processed", "dropped", "rejected")}

    def burst() -> list[Stamp]:
        stamps = [send(probe, camera, photo_frames[i % 2]) for i in range(30)]
        assert outputs.masks.wait_for_stamp(stamps[-1], FRAME_TIMEOUT), "the burst's newest frame was not processed"
        return stamps

    def settled() -> dict[str, int] | None:
        """Counters that stayed the same over more than one /diagnostics period (1 s): the
        earlier tests' last frames are counted."""
        first = counters()
        time.sleep(1.5)
        return first if counters() == first else None

    assert wait_until(lambda: "frames_received" in outputs.diagnostic_values(), 10), "no /diagnostics from the node"
    before = wait_until(settled, 20)
    assert before, f"/diagnostics counters kept changing before the burst: {counters()}"
    stamps = burst()
    processed = [s for s in stamps if outputs.masks.by_stamp(s)]
    assert len(processed) <= 5, f"{len(processed)} of 30 frames processed: the node queues, not keeps the latest"

    def accounted() -> dict[str, int] | None:
        """Every burst frame that reached the node was either processed or dropped."""
        delta = {k: v - before[k] for k, v in counters().items()}
        ok = delta["processed"] == len(processed) and delta["received"] == delta["processed"] + delta["dropped"]
        return delta if ok else None

    delta = wait_until(accounted, 10)
    assert delta, f"/diagnostics {counters()} misses burst frames (before: {before}, processed: {len(processed)})"
    assert delta["dropped"] > 0 and delta["rejected"] == 0
    print(f"\nburst of 30: {delta['received']} reached the node, {delta['processed']} processed, "
          f"{delta['dropped']} dropped")

    burst()  # allocator warm-up
    rss_warm = node.rss_bytes()
    for _ in range(3):
        burst()
    growth = (node.rss_bytes() - rss_warm) / 2**20
    print(f"RSS after two bursts {rss_warm / 2**20:.0f} MiB, growth over 90 more frames: {growth:.1f} MiB")
    # Keeping every frame would add ~80 MiB (90 x 0.9 MiB) and every result more; a standalone run of
    # 12 bursts stayed within 3 MiB.
    assert growth < 60, f"node RSS grew by {growth:.0f} MiB over 90 frames"


def test_end_to_end_latency(probe, camera, outputs, photo_frames, record_property):
    """Input stamp to ~/masks arrival at 640x480, one frame at a time (reported, loosely bounded)."""
    latencies = []
    for i in range(10):
        stamp = process(probe, camera, outputs, photo_frames[i % 2])
        received = time.time()
        latencies.append(received - (stamp[0] + stamp[1] * 1e-9))
    median, worst = statistics.median(latencies), max(latencies)
    record_property("latency_median_s", round(median, 3))
    record_property("latency_max_s", round(worst, 3))
    print(f"\nend-to-end latency (stamp -> ~/masks received), 640x480, 10 frames: "
          f"median {median * 1000:.0f} ms, max {worst * 1000:.0f} ms")
    assert 0 < median < 20


def test_sigterm_shuts_down_cleanly(node):
    """Last test of the module: it stops the shared node."""
    code, seconds = node.stop(signal.SIGTERM)
    assert code == 0, node.log()[-3000:]
    assert seconds < 5, f"shutdown took {seconds:.1f} s"
    assert "Traceback" not in node.log()
