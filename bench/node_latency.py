"""(e) End-to-end latency of the installed sfs_node: frames published at 30 Hz, latency from each
frame's header stamp to the arrival of its ``~/masks`` message. Needs the colcon build sourced."""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import threading
import time
from pathlib import Path

import numpy as np


def node_latency(params_file: Path, image: np.ndarray, seconds: float = 20.0, rate_hz: float = 30.0) -> dict:
    import rclpy
    from ament_index_python.packages import get_package_prefix
    from domain_coordinator import domain_id
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    from sfs_ros.msg import LabeledMaskArray

    executable = Path(get_package_prefix("sfs_ros")) / "lib" / "sfs_ros" / "sfs_node"
    with domain_id() as domain:
        env = {**os.environ, "ROS_DOMAIN_ID": str(domain), "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}
        log = open(params_file.parent / "bench_node.log", "wb")
        node_process = subprocess.Popen(
            [str(executable), "--ros-args", "--params-file", str(params_file), "-p", "qos.reliability:=reliable"],
            stdout=log, stderr=subprocess.STDOUT, env=env,
        )
        context = rclpy.context.Context()
        rclpy.init(context=context, domain_id=domain)
        node = rclpy.create_node("sfs_bench", context=context)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        latencies: list[float] = []
        received = threading.Event()

        def on_masks(msg) -> None:
            stamp = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
            latencies.append((node.get_clock().now().nanoseconds * 1e-9 - stamp) * 1e3)
            received.set()

        node.create_subscription(LabeledMaskArray, "/sfs_node/masks", on_masks, QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))
        publisher = node.create_publisher(Image, "/image", QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE))
        spin = threading.Thread(target=executor.spin, daemon=True)
        spin.start()
        msg = Image(height=image.shape[0], width=image.shape[1], encoding="rgb8", step=image.shape[1] * 3)
        msg.header.frame_id = "camera"
        msg.data = image.tobytes()
        sent = 0
        try:
            deadline = time.monotonic() + 300
            while not received.is_set() and time.monotonic() < deadline:  # until the node is up
                msg.header.stamp = node.get_clock().now().to_msg()
                publisher.publish(msg)
                time.sleep(0.2)
            latencies.clear()
            period, start = 1.0 / rate_hz, time.monotonic()
            while time.monotonic() - start < seconds:
                msg.header.stamp = node.get_clock().now().to_msg()
                publisher.publish(msg)
                sent += 1
                time.sleep(max(0.0, start + sent * period - time.monotonic()))
            time.sleep(2.0)
            peak_rss_mb = peak_rss(node_process.pid)
        finally:
            node_process.send_signal(signal.SIGINT)
            node_process.wait(30)
            executor.shutdown()
            spin.join(5)
            node.destroy_node()
            rclpy.try_shutdown(context=context)
            log.close()
    if not latencies:
        raise RuntimeError(f"no ~/masks received; see {params_file.parent / 'bench_node.log'}")
    ordered = sorted(latencies)
    return {
        "rate_hz": rate_hz, "frames_sent": sent, "frames_processed": len(latencies),
        "node_latency_p50_ms": statistics.median(ordered), "node_latency_p99_ms": ordered[int(0.99 * (len(ordered) - 1))],
        "node_latency_max_ms": ordered[-1], "node_fps": len(latencies) / seconds, "node_peak_rss_mb": peak_rss_mb,
    }


def peak_rss(pid: int) -> float:
    """Peak resident memory (VmHWM) of a process in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")
