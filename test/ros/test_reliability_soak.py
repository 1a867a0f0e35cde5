"""Soak (issue 7): two sfs_node instances, two cameras at 30 Hz, open-vocabulary branch on.

Each camera publishes SOAK_FRAMES 160x120 frames at 30 Hz into its own namespace; the nodes
(random-weight FastSAM-s, SegFormer-B0 and CLIP in clip mode) process far slower than that, so
most frames are dropped by design (only the newest frame waits). Checked:

* no cross-talk: every output of /cam_a carries a frame_id and a stamp that /cam_a's camera sent
  (and the same for /cam_b);
* every published ~/masks and ~/semantic message is well-formed;
* frames are accounted for (received = processed + dropped + rejected + failed, +1 in hand):
  nothing queues up; the open-vocabulary queue stays within its size and its worker never
  restarts;
* RSS is flat: the slope of a straight line fitted to the second half of the run is printed and
  bounded; latency (stamp -> ~/masks arrival) p50/p99 are printed and bounded;
* both nodes stop on SIGINT with code 0 within 5 s.
"""

from __future__ import annotations

import array
import signal
import threading
import time
from collections.abc import Iterator

import cv2
import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.qos import QoSProfile, ReliabilityPolicy
from ros_helpers import RosProbe, stamp_of, wait_until
from sensor_msgs.msg import Image
from std_msgs.msg import Header

pytestmark = [pytest.mark.ros, pytest.mark.slow]

SOAK_FRAMES = 1000
RATE_HZ = 30.0
# 160x120 rgb8 (57.6 KB): one UDP datagram per frame (the nodes run UDP only, see below).
SIZE = (120, 160)
RELIABLE = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
CAMERAS = ("cam_a", "cam_b")
ARGS = ["-p", "masks.imgsz:=320", "-p", "closed_set.ade20k.input_size:=256", "-p", "masks.max_masks:=30",
        "-p", "qos.reliability:=reliable", "-p", "qos.depth:=1",
        "-p", "open_vocab.enabled:=true", "-p", "open_vocab.vocabulary:=[zebra, giraffe, kite, bus, person]",
        "-p", "open_vocab.max_rate:=2.0", "-p", "open_vocab.duty_cycle:=0.5"]


class Arrivals:
    """(arrival wall time, message) of one subscription."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.items: list[tuple[float, object]] = []

    def __call__(self, msg) -> None:
        with self.lock:
            self.items.append((time.time(), msg))

    def snapshot(self) -> list[tuple[float, object]]:
        with self.lock:
            return list(self.items)


def status_values(diagnostics, name: str) -> dict[str, str]:
    """Key-values of the newest status ``name`` in the collected /diagnostics."""
    for msg in reversed(diagnostics.messages):
        for status in msg.status:
            if status.name == name:
                return {kv.key: kv.value for kv in status.values}
    return {}


@pytest.fixture
def own_domain(monkeypatch) -> Iterator[RosProbe]:
    """A ROS domain and probe of the soak's own: the session's domain carries the discovery state
    of every earlier test's nodes and endpoints. Nodes started inside inherit ROS_DOMAIN_ID."""
    import rclpy
    from domain_coordinator import domain_id
    from rclpy.context import Context

    with domain_id() as domain:
        monkeypatch.setenv("ROS_DOMAIN_ID", str(domain))
        context = Context()
        rclpy.init(context=context, domain_id=domain)
        probe = RosProbe(context, "sfs_soak_probe")
        try:
            yield probe
        finally:
            probe.close()
            rclpy.try_shutdown(context=context)


def test_two_cameras_30_hz_soak_with_open_vocab(start_sfs_node, any_namespace_config, own_domain, sfs_msgs, photo_frames, monkeypatch):
    probe = own_domain
    # UDP only for these nodes: in full runs, shared-memory segments left by nodes that earlier
    # tests killed made a node fail "init_port fastrtps_port700x: open_and_lock_file" and receive
    # nothing. With UDP only (and 320x240 or 160x120 frames) the first node still received no
    # frame in 3 of ~9 full CI runs, on the session domain: hence own_domain and the first-frame
    # check below. The cause is not known.
    monkeypatch.setenv("FASTDDS_BUILTIN_TRANSPORTS", "UDPv4")
    nodes = {cam: start_sfs_node("--params-file", str(any_namespace_config), "-r", f"__ns:=/{cam}", *ARGS) for cam in CAMERAS}
    for cam, node in nodes.items():
        if not node.wait_for_log("ready:", timeout=300):
            pytest.fail(f"/{cam}/sfs_node did not become ready:\n{node.log()}")
    diagnostics = probe.collect(DiagnosticArray, "/diagnostics", 50)
    masks = {cam: Arrivals() for cam in CAMERAS}
    semantic = {cam: Arrivals() for cam in CAMERAS}
    subscriptions = []
    for cam in CAMERAS:
        subscriptions.append(probe.node.create_subscription(sfs_msgs.LabeledMaskArray, f"/{cam}/sfs_node/masks", masks[cam], RELIABLE))
        subscriptions.append(probe.node.create_subscription(Image, f"/{cam}/sfs_node/semantic", semantic[cam], RELIABLE))
    cameras = {cam: probe.node.create_publisher(Image, f"/{cam}/image", RELIABLE) for cam in CAMERAS}
    # Both directions discovered before the soak starts (a loaded CI machine can take seconds).
    assert wait_until(lambda: all(p.get_subscription_count() for p in cameras.values()), 30)
    assert wait_until(lambda: all(s.get_publisher_count() for s in subscriptions), 30)

    frames = [cv2.resize(f, SIZE[::-1]) for f in photo_frames]
    sent: dict[str, set] = {cam: set() for cam in CAMERAS}

    def camera_frame(cam: str, i: int) -> Image:
        rgb = frames[i % len(frames)]
        data = array.array("B")
        data.frombytes(rgb.tobytes())
        msg = Image(header=Header(stamp=probe.now_stamp(), frame_id=f"{cam}_optical"), height=SIZE[0],
                    width=SIZE[1], encoding="rgb8", step=SIZE[1] * 3, data=data)
        sent[cam].add(stamp_of(msg))
        return msg

    def segmentation(cam: str) -> dict[str, str]:
        return status_values(diagnostics, f"/{cam}/sfs_node: semantic segmentation")

    def frames_received(cam: str) -> int:
        return int(segmentation(cam).get("frames_received", 0))

    # Matched endpoints do not yet prove that frames flow: a frame every 0.2 s until each node
    # counts one (it did not in some full CI runs on the shared session domain; see own_domain).
    def first_frames_arrived() -> bool:
        for cam in CAMERAS:
            if not frames_received(cam):
                cameras[cam].publish(camera_frame(cam, 0))
        return all(frames_received(cam) for cam in CAMERAS)

    if not wait_until(first_frames_arrived, 30, interval=0.2):
        silent = [cam for cam in CAMERAS if not frames_received(cam)]
        pytest.fail(f"no camera frame reached {silent} in 30 s; diagnostics: "
                    f"{[segmentation(cam) for cam in silent]}\n"
                    + "\n".join(f"{cam} thread stacks:\n{nodes[cam].thread_stacks()}" for cam in silent))

    rss: dict[str, list[tuple[float, float]]] = {cam: [] for cam in CAMERAS}
    done = threading.Event()

    def publish(cam: str) -> None:
        period = 1.0 / RATE_HZ
        next_at = time.monotonic()
        for i in range(SOAK_FRAMES):
            cameras[cam].publish(camera_frame(cam, i))
            next_at += period
            time.sleep(max(0.0, next_at - time.monotonic()))

    def sample_rss() -> None:
        while not done.is_set():
            for cam, node in nodes.items():
                rss[cam].append((time.monotonic(), node.rss_bytes() / 2**20))
            done.wait(0.5)

    sampler = threading.Thread(target=sample_rss, daemon=True)
    sampler.start()
    t0 = time.monotonic()
    publishers = [threading.Thread(target=publish, args=(cam,)) for cam in CAMERAS]
    for thread in publishers:
        thread.start()
    for thread in publishers:
        thread.join()
    publish_seconds = time.monotonic() - t0
    time.sleep(3.0)  # the last frame in hand, and a diagnostics period
    done.set()
    sampler.join()

    lines = [f"\nsoak: 2 cameras x {SOAK_FRAMES} frames {SIZE[1]}x{SIZE[0]} at {RATE_HZ:.0f} Hz "
             f"({publish_seconds:.1f} s), open vocabulary on (clip mode, random weights)"]
    for cam in CAMERAS:
        own = f"{cam}_optical"
        arrivals = masks[cam].snapshot()
        values = segmentation(cam)
        ov = status_values(diagnostics, f"/{cam}/sfs_node: open vocabulary")
        if len(arrivals) < 10:
            graph = probe.node.get_subscriptions_info_by_topic(f"/{cam}/sfs_node/masks")
            pytest.fail(f"/{cam}: only {len(arrivals)} ~/masks messages; the node's diagnostics: {values} {ov}; "
                        f"subscriptions to its ~/masks: {[(i.node_namespace, i.node_name) for i in graph]}; "
                        f"node log:\n{nodes[cam].log()[-3000:]}\nthread stacks:\n{nodes[cam].thread_stacks()}")
        for _, msg in arrivals:  # no cross-talk, and well-formed
            assert msg.header.frame_id == own and stamp_of(msg) in sent[cam], (cam, msg.header)
            for mask in msg.masks:
                box = mask.bbox
                assert box.x_offset + box.width <= SIZE[1] and box.y_offset + box.height <= SIZE[0]
                assert 0 < mask.area <= SIZE[0] * SIZE[1] and mask.label and 0.0 <= mask.score <= 1.0
        for _, msg in semantic[cam].snapshot():
            assert msg.header.frame_id == own and stamp_of(msg) in sent[cam]
            assert (msg.encoding, msg.height, msg.width, msg.step) == ("mono16", *SIZE, SIZE[1] * 2)
            assert len(msg.data) == msg.step * msg.height

        latencies = np.array([t - (m.header.stamp.sec + m.header.stamp.nanosec * 1e-9) for t, m in arrivals]) * 1e3
        p50, p99 = np.percentile(latencies, [50, 99])
        received, processed, dropped = (int(values[f"frames_{k}"]) for k in ("received", "processed", "dropped"))
        rejected, failed = int(values["frames_rejected"]), int(values["frames_failed"])
        accounted = processed + dropped + rejected + failed
        assert received - 1 <= accounted <= received, values  # at most the frame in hand is pending
        assert rejected == 0 and failed == 0, values
        assert int(ov["queued"]) <= 1 and int(ov["restarts"]) == 0 and ov["running"] == "True", ov

        samples = np.array(rss[cam])
        half = samples[len(samples) // 2:]
        slope = np.polyfit((half[:, 0] - half[0, 0]) / 60.0, half[:, 1], 1)[0]  # MiB per minute
        lines.append(
            f"/{cam}: frames in {len(sent[cam])} (the first {len(sent[cam]) - SOAK_FRAMES} before the soak), reached node {received}, processed {processed}, dropped {dropped}; "
            f"RSS start {samples[0, 1]:.0f} MiB end {samples[-1, 1]:.0f} MiB, slope (2nd half) {slope:+.2f} MiB/min; "
            f"latency p50 {p50:.0f} ms p99 {p99:.0f} ms; open-vocab snapshots {ov['snapshots_processed']}, "
            f"masks labelled {ov['masks_labelled']}, worker restarts {ov['restarts']}")
        assert abs(slope) < 30, f"/{cam} RSS slope {slope:.1f} MiB/min"
        assert 0 < p50 and p99 < 10_000, (p50, p99)
        assert int(ov["masks_labelled"]) > 0, ov
    print("\n".join(lines))

    for cam, node in nodes.items():
        code, seconds = node.stop(signal.SIGINT)
        assert code == 0 and seconds < 5, (cam, code, seconds, node.log()[-2000:])
        assert "Traceback" not in node.log()
    for publisher in cameras.values():
        probe.node.destroy_publisher(publisher)
