"""Start-up and shutdown of the installed sfs_node: bad parameters, default QoS, SIGUSR1, SIGINT."""

from __future__ import annotations

import signal
import threading
import time

import pytest
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from ros_helpers import stamp_of, wait_until
from sensor_msgs.msg import Image
from std_msgs.msg import Header

pytestmark = [pytest.mark.ros, pytest.mark.slow]

NAMESPACE = "/lifecycle"  # apart from test_node_topics' node, should both ever run at once



@pytest.mark.parametrize("override, param, problem", [
    ("masks.conf:=-1.0", "masks.conf", "must be in [0, 1], got -1.0"),
    ("masks.conf:=-1", "masks.conf", "expected a floating-point number"),
    ("masks.model:=/nonexistent/FastSAM-s.pt", "masks.model", "model file or folder not found"),
    ("qos.reliability:=sometimes", "qos.reliability", "expected one of best_effort, reliable"),
])
def test_bad_parameter_stops_with_one_clear_error(run_sfs_node, any_namespace_config, override, param, problem):
    node = run_sfs_node("--params-file", str(any_namespace_config), "-p", override, "-r", f"__ns:={NAMESPACE}")
    code = node.wait_exit(timeout=120)
    log = node.log()
    errors = [line for line in log.splitlines() if "ERROR" in line]
    assert code == 2, log
    assert len(errors) == 1, log
    assert f"parameter '{param}': {problem}" in errors[0]
    assert "Traceback" not in log


def test_default_qos_is_sensor_data_stacks_on_sigusr1_and_sigint_exits_cleanly_while_busy(run_sfs_node, any_namespace_config, probe,
                                                                        sfs_msgs, photo_frames):
    from sfs_ros.messages import image_msg

    node = run_sfs_node("--params-file", str(any_namespace_config), "-r", f"__ns:={NAMESPACE}")
    if not node.wait_for_log("ready:", timeout=300):
        pytest.fail(f"sfs_node did not become ready:\n{node.log()}")
    topic = f"{NAMESPACE}/image"
    (subscription,) = [i for i in probe.node.get_subscriptions_info_by_topic(topic) if i.node_name == "sfs_node"]
    # Discovery carries reliability and durability (not the history depth).
    assert subscription.qos_profile.reliability == ReliabilityPolicy.BEST_EFFORT
    assert subscription.qos_profile.durability == DurabilityPolicy.VOLATILE

    masks = probe.collect(sfs_msgs.LabeledMaskArray, f"{NAMESPACE}/sfs_node/masks", QoSProfile(depth=5))
    camera = probe.node.create_publisher(Image, topic, qos_profile_sensor_data)
    stop = threading.Event()

    def stream() -> None:  # 4 Hz: faster than the node, so the worker is always busy
        while not stop.is_set():
            camera.publish(image_msg(photo_frames[0], "rgb8", Header(stamp=probe.now_stamp(), frame_id="camera")))
            time.sleep(0.25)

    streamer = threading.Thread(target=stream, daemon=True)
    streamer.start()
    try:
        assert wait_until(masks.latest, 90), "no ~/masks from best-effort input"
        first = stamp_of(masks.latest())
        assert wait_until(lambda: stamp_of(masks.latest()) != first, 30), "the node stopped after one frame"
        stacks = node.thread_stacks()  # SIGUSR1: a stack dump, and the node goes on
        assert "sfs_worker" in stacks or "_run_worker" in stacks, stacks
        after_dump = stamp_of(masks.latest())
        assert wait_until(lambda: stamp_of(masks.latest()) != after_dump, 30), "the node stopped after SIGUSR1"
        code, seconds = node.stop(signal.SIGINT)
    finally:
        stop.set()
        streamer.join()
        probe.node.destroy_publisher(camera)
    assert code == 0, node.log()[-3000:]
    assert seconds < 5, f"SIGINT shutdown took {seconds:.1f} s"
    assert "Traceback" not in node.log() and "ERROR" not in node.log()


def test_plain_section_in_a_namespace_is_warned_about(run_sfs_node, random_config):
    node = run_sfs_node("--params-file", str(random_config), "-r", f"__ns:={NAMESPACE}", "-p", "qos.depth:=0")
    assert node.wait_exit(timeout=120) == 2  # stops at the bad override, after the warning
    assert f"configures 'sfs_node:', which applies to /sfs_node only, not to {NAMESPACE}/sfs_node" in node.log()
