"""Reliability of the installed sfs_node (issue 7): the bad-input matrix over real topics, stamps
and frame_ids, huge and tiny frames, corrupt checkpoints and model_roots at start-up, signals
during model load and open-vocabulary work, and a restart that reuses the caches.

Every bad frame is followed by a good one that must come back well-formed: a crash, a hang or a
malformed output fails the test. One node process serves the matrix (reliable QoS, as in
test_node_topics.py, so loopback losses cannot make it flaky).
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
from ros_helpers import NodeProcess, stamp_of, wait_until
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

pytestmark = [pytest.mark.ros, pytest.mark.slow]

NS = "/reliability"
NODE = f"{NS}/sfs_node"
RELIABLE = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
MAX_PIXELS = 320 * 240
FAST = ["-p", "masks.imgsz:=320", "-p", "closed_set.ade20k.input_size:=256", "-p", "masks.max_masks:=30"]


def raw_image(header: Header, encoding: str, height: int, width: int, step: int, data: bytes) -> Image:
    payload = array.array("B")
    payload.frombytes(data)
    return Image(header=header, height=height, width=width, encoding=encoding, is_bigendian=0, step=step, data=payload)


def rgb_image(header: Header, rgb: np.ndarray) -> Image:
    h, w = rgb.shape[:2]
    return raw_image(header, "rgb8", h, w, w * 3, np.ascontiguousarray(rgb).tobytes())


def assert_well_formed_image(msg: Image, encoding: str, size: tuple[int, int]) -> None:
    bytes_per_pixel = {"mono16": 2, "rgb8": 3}[encoding]
    assert (msg.encoding, msg.height, msg.width) == (encoding, *size)
    assert msg.step == msg.width * bytes_per_pixel and len(msg.data) == msg.step * msg.height


def assert_well_formed_masks(msg, size: tuple[int, int]) -> None:
    h, w = size
    for mask in msg.masks:
        box = mask.bbox
        assert box.x_offset + box.width <= w and box.y_offset + box.height <= h and box.width >= 1 and box.height >= 1
        assert 0.0 <= mask.score <= 1.0 and 0 < mask.area <= h * w and mask.label
        assert len(mask.candidates) == len(mask.candidate_scores)


class Harness:
    def __init__(self, node: NodeProcess, probe, sfs_msgs) -> None:
        self.node, self.probe = node, probe
        self.masks = probe.collect(sfs_msgs.LabeledMaskArray, f"{NODE}/masks", RELIABLE)
        self.semantic = probe.collect(Image, f"{NODE}/semantic", RELIABLE)
        self.overlay = probe.collect(Image, f"{NODE}/overlay", RELIABLE)
        self.diagnostics = probe.collect(DiagnosticArray, "/diagnostics", 50)
        self.camera = probe.node.create_publisher(Image, f"{NS}/image", RELIABLE)
        self.compressed = probe.node.create_publisher(CompressedImage, f"{NS}/image/compressed", RELIABLE)
        assert wait_until(lambda: self.camera.get_subscription_count() and self.compressed.get_subscription_count(), 30)

    def header(self, frame_id: str = "cam", stamp=None) -> Header:
        return Header(stamp=stamp or self.probe.now_stamp(), frame_id=frame_id)

    def values(self) -> dict[str, str]:
        for msg in reversed(self.diagnostics.messages):
            for status in msg.status:
                if status.name == f"{NODE}: semantic segmentation":
                    return {kv.key: kv.value for kv in status.values}
        return {}

    def counter(self, key: str) -> int:
        return int(self.values().get(key, "0"))

    def roundtrip(self, msg: Image, size: tuple[int, int], timeout: float = 60.0):
        """Publish ``msg`` until its outputs come back; check they are well-formed; the masks."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg.header.stamp = self.probe.now_stamp() if msg.header.stamp.sec >= 1_000_000 else msg.header.stamp
            self.camera.publish(msg)
            out = self.masks.wait_for_stamp(stamp_of(msg), min(15.0, max(0.1, deadline - time.monotonic())))
            if out is not None:
                semantic = self.semantic.wait_for_stamp(stamp_of(msg), 10)
                overlay = self.overlay.wait_for_stamp(stamp_of(msg), 10)
                assert semantic is not None and overlay is not None
                for output in (out, semantic, overlay):
                    assert output.header.frame_id == msg.header.frame_id
                assert_well_formed_image(semantic, "mono16", size)
                assert_well_formed_image(overlay, "rgb8", size)
                assert_well_formed_masks(out, size)
                return out
        pytest.fail(f"no outputs for a {msg.encoding} {msg.width}x{msg.height} frame within {timeout} s:\n"
                    f"{self.node.log()[-2000:]}")

    def reject(self, msg, words: str) -> None:
        """``msg`` is skipped (counted in frames_rejected, error names the problem), the node lives."""
        before = self.counter("frames_rejected")
        (self.compressed if isinstance(msg, CompressedImage) else self.camera).publish(msg)
        assert wait_until(lambda: self.counter("frames_rejected") > before, 20), \
            f"frame not counted as rejected ({words}):\n{self.node.log()[-2000:]}"
        assert self.node.process.poll() is None


@pytest.fixture(scope="module")
def harness(start_sfs_node, any_namespace_config, probe, sfs_msgs) -> Iterator[Harness]:
    node = start_sfs_node("--params-file", str(any_namespace_config), "-r", f"__ns:={NS}", *FAST,
                          "-p", "qos.reliability:=reliable", "-p", "input.compressed:=true",
                          "-p", f"max_input_pixels:={MAX_PIXELS}", "-p", "diagnostics.period:=0.3")
    if not node.wait_for_log("ready:", timeout=300):
        pytest.fail(f"sfs_node did not become ready:\n{node.log()}")
    harness = Harness(node, probe, sfs_msgs)
    yield harness
    node.close()


BAD_FRAMES = {  # name: (encoding, height, width, step, data length, words in the error)
    "empty-0x0": ("rgb8", 0, 0, 0, 0, "empty image 0x0"),
    "step-below-width-x-channels": ("rgb8", 24, 32, 50, 50 * 24, "step 50 is smaller than"),
    "step-not-matching-data": ("rgb8", 24, 32, 100, 96 * 24, "expected step * height"),
    "data-shorter-than-step-x-height": ("rgb8", 24, 32, 96, 96 * 10, "expected step * height"),
    "32FC1-with-nan-and-inf": ("32FC1", 24, 32, 128, 128 * 24, "unsupported image encoding '32FC1'"),
    "unknown-encoding": ("hsv8", 24, 32, 96, 96 * 24, "unsupported image encoding 'hsv8'"),
}


def test_bad_frames_are_rejected_counted_and_named(harness, photo_frames):
    nan_inf = np.tile(np.array([np.nan, np.inf, -np.inf, 1.0], np.float32), 24 * 8).tobytes()
    for encoding, h, w, step, length, words in BAD_FRAMES.values():
        data = nan_inf if encoding == "32FC1" else bytes(length)
        harness.reject(raw_image(harness.header(), encoding, h, w, step, data), words)
    undecodable = CompressedImage(header=harness.header(), format="jpeg", data=array.array("B", b"\xff\xd8garbage"))
    harness.reject(undecodable, "cannot decode")
    log = harness.node.log()
    assert "skipping a frame from '/reliability/image': empty image 0x0" in log  # first one; later ones throttled
    assert harness.counter("frames_rejected") >= len(BAD_FRAMES) + 1
    harness.roundtrip(rgb_image(harness.header(), photo_frames[0][:240, :320]), (240, 320))
    assert "Traceback" not in harness.node.log()


@pytest.mark.parametrize("encoding, channels, itemsize", [
    ("16UC1", 1, 2), ("mono16", 1, 2), ("bayer_rggb8", 1, 1), ("bayer_gbrg8", 1, 1), ("yuv422", 2, 1), ("bgra8", 4, 1),
])
def test_encodings_the_codec_accepts_are_processed(harness, encoding, channels, itemsize):
    h, w = 48, 64
    data = np.random.default_rng(1).integers(0, 255, h * w * channels * itemsize, dtype=np.uint8).tobytes()
    harness.roundtrip(raw_image(harness.header(), encoding, h, w, w * channels * itemsize, data), (h, w))


@pytest.mark.parametrize("size", [(1, 1), (7, 2), (2, 7)])
def test_tiny_frames_are_processed(harness, size):
    harness.roundtrip(rgb_image(harness.header(), np.full((*size, 3), 120, np.uint8)), size)


def test_huge_frame_is_downscaled_to_max_input_pixels(harness, photo_frames):
    """2560x1920 (4x the limit in each direction's product): outputs at 320x240, counted, warned."""
    before = harness.counter("frames_downscaled")
    huge = cv2.resize(photo_frames[1], (2560, 1920))
    harness.roundtrip(rgb_image(harness.header(), huge), (240, 320))
    assert wait_until(lambda: harness.counter("frames_downscaled") > before, 10)
    assert "above max_input_pixels=76800: processed and published at 320x240" in harness.node.log()


def test_frame_id_changes_are_copied_to_the_outputs(harness, photo_frames):
    for frame_id in ("cam_left", "cam_right", "", "cam_left"):
        harness.roundtrip(rgb_image(harness.header(frame_id), photo_frames[0][:120, :160]), (120, 160))


def test_stamps_going_backwards_and_jumping_keep_it_working(harness, photo_frames):
    """A bag loop (stamps from 1970 and going back) and a jump into the future: every frame is
    processed with its own stamp; latency statistics leave these out (frames_stamp_skew)."""
    from builtin_interfaces.msg import Time

    skew_before = harness.counter("frames_stamp_skew")
    now = harness.probe.now_stamp()
    stamps = [Time(sec=100, nanosec=5), Time(sec=50), Time(sec=1, nanosec=1), Time(sec=now.sec + 3600, nanosec=now.nanosec)]
    for stamp in stamps:
        msg = rgb_image(harness.header(stamp=stamp), photo_frames[0][:120, :160])
        harness.camera.publish(msg)
        assert harness.masks.wait_for_stamp(stamp_of(msg), 60), f"stamp {stamp} was not processed"
    harness.roundtrip(rgb_image(harness.header(), photo_frames[0][:120, :160]), (120, 160))  # a normal one again
    assert wait_until(lambda: harness.counter("frames_stamp_skew") >= skew_before + len(stamps), 10)
    for msg in harness.diagnostics.messages[-5:]:
        values = {kv.key: kv.value for kv in msg.status[0].values}
        for key in ("latency_mean_ms", "latency_max_ms"):
            if values.get(key, "n/a") != "n/a":
                assert 0.0 <= float(values[key]) < 60_000, values


def test_shared_node_stops_cleanly_on_sigterm(harness):
    """Last test of the matrix: SIGTERM after all the bad input still exits 0 within 5 s."""
    code, seconds = harness.node.stop(signal.SIGTERM)
    assert code == 0 and seconds < 5, (code, seconds, harness.node.log()[-2000:])
    assert "Traceback" not in harness.node.log()


# ---- start-up failures ----------------------------------------------------------------------------
@pytest.mark.parametrize("content", [b"definitely not a checkpoint", b""], ids=["garbage", "empty"])
def test_corrupt_checkpoint_stops_start_up_with_one_line(run_sfs_node, any_namespace_config, tmp_path, content):
    broken = tmp_path / "FastSAM-s.pt"
    broken.write_bytes(content)
    node = run_sfs_node("--params-file", str(any_namespace_config), "-r", "__ns:=/corrupt",
                        "-p", f"masks.model:={broken}", "-p", "masks.backend:=torch")
    assert node.wait_exit(timeout=120) == 2, node.log()
    errors = [line for line in node.log().splitlines() if "ERROR" in line]
    assert len(errors) == 1 and f"parameter 'masks.model': cannot load model {broken}" in errors[0], node.log()
    assert "Traceback" not in node.log()


def test_model_outside_model_roots_is_refused(run_sfs_node, any_namespace_config, tmp_path):
    node = run_sfs_node("--params-file", str(any_namespace_config), "-r", "__ns:=/roots",
                        "-p", f"model_roots:=[{tmp_path}]")
    assert node.wait_exit(timeout=120) == 2, node.log()
    errors = [line for line in node.log().splitlines() if "ERROR" in line]
    assert len(errors) == 1 and "parameter 'masks.model'" in errors[0] and "'model_roots'" in errors[0], node.log()


# ---- signals at every stage, and a restart that reuses the caches ----------------------------------
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_during_model_load_exits_zero_within_5_s(run_sfs_node, any_namespace_config, tmp_path, sig):
    node = run_sfs_node("--params-file", str(any_namespace_config), "-r", "__ns:=/loading",
                        "-p", f"cache_dir:={tmp_path / 'cache'}")
    time.sleep(3.0)  # past the imports, inside model loading / export / warm-up
    assert "ready:" not in node.log(), "loaded too fast to test a signal during loading"
    code, seconds = node.stop(sig)
    assert code == 0 and seconds < 5, (code, seconds, node.log()[-2000:])
    assert "Traceback" not in node.log()


OPEN_VOCAB = ["-p", "open_vocab.enabled:=true", "-p", "open_vocab.vocabulary:=[zebra, giraffe, kite]",
              "-p", "open_vocab.duty_cycle:=1.0", "-p", "open_vocab.max_rate:=4.0"]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_during_open_vocab_work_then_restart_reuses_caches(run_sfs_node, any_namespace_config, probe,
                                                                  tmp_path, photo_frames, sig):
    cache = tmp_path / "cache"
    args = ("--params-file", str(any_namespace_config), "-r", "__ns:=/ov_signal", *FAST,
            "-p", "qos.reliability:=reliable", "-p", f"cache_dir:={cache}", "-p", "diagnostics.period:=0.5", *OPEN_VOCAB)
    diagnostics = probe.collect(DiagnosticArray, "/diagnostics", 50)

    def open_vocab_values() -> dict[str, str]:
        for msg in reversed(diagnostics.messages):
            for status in msg.status:
                if status.name == "/ov_signal/sfs_node: open vocabulary":
                    return {kv.key: kv.value for kv in status.values}
        return {}

    camera = probe.node.create_publisher(Image, "/ov_signal/image", RELIABLE)
    stop = threading.Event()

    def stream() -> None:
        while not stop.is_set():
            camera.publish(rgb_image(Header(stamp=probe.now_stamp(), frame_id="cam"), photo_frames[0][:240, :320]))
            time.sleep(0.1)

    def cache_files() -> dict[str, int]:
        return {str(p.relative_to(cache)): p.stat().st_mtime_ns for p in cache.rglob("*")
                if p.is_file() and ("exports" in p.parts or "text_embeddings" in p.parts)}

    streamer = threading.Thread(target=stream, daemon=True)
    streamer.start()
    try:
        first = run_sfs_node(*args)
        assert first.wait_for_log("ready:", timeout=300), first.log()
        busy = wait_until(lambda: int(open_vocab_values().get("snapshots_accepted", "0")) >= 2, 120)
        assert busy, f"the open-vocabulary worker never got a snapshot:\n{first.log()[-2000:]}"
        code, seconds = first.stop(sig)
        assert code == 0 and seconds < 5, (code, seconds, first.log()[-2000:])
        cached = cache_files()
        assert any(k.startswith("text_embeddings") for k in cached), cached
        started = time.monotonic()
        second = run_sfs_node(*args)
        assert second.wait_for_log("ready:", timeout=300), second.log()
        print(f"\nrestart to ready: {time.monotonic() - started:.1f} s; caches reused: {sorted(cached)}")
        assert cache_files() == cached, "the restart rewrote a cache file instead of reusing it"
        code, seconds = second.stop(sig)
        assert code == 0 and seconds < 5, (code, seconds)
    finally:
        stop.set()
        streamer.join()
        probe.node.destroy_publisher(camera)
