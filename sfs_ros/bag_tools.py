"""Play a rosbag2 into a live ROS graph and record topics into a new bag, without rosbag2.

``ros2 bag play`` / ``ros2 bag record`` do the same on a full ROS install; this tool exists for
machines with only the rclpy wheels (tests, CI, minimal robots). Messages travel as their
recorded CDR bytes: nothing is deserialised on the way.

    python -m sfs_ros.bag_tools BAG [--topic /camera/image_raw] [--to image] [--rate 1.0]
                                    [--restamp] [--record OUT_BAG] [--node /sfs_node]
"""

from __future__ import annotations

import argparse
import importlib
import struct
import sys
import threading
import time
from pathlib import Path

from sfs_core.bags import BagReader, sfs_typestore

#: The outputs of ``sfs_node`` (relative to its node name) and their types.
SFS_OUTPUTS = {
    "semantic": "sensor_msgs/msg/Image",
    "semantic_color": "sensor_msgs/msg/Image",
    "overlay": "sensor_msgs/msg/Image",
    "masks": "sfs_ros/msg/LabeledMaskArray",
    "labels": "sfs_ros/msg/LabelTable",
}


def message_class(msgtype: str):
    """``sensor_msgs/msg/Image`` -> the rclpy message class."""
    package, _, name = msgtype.split("/")
    return getattr(importlib.import_module(f"{package}.msg"), name)


def restamp(cdr: bytes, stamp_ns: int) -> bytes:
    """The CDR bytes of a message that starts with a ``std_msgs/Header`` (Image, CompressedImage),
    with ``header.stamp`` replaced: the stamp sits right after the 4-byte encapsulation header."""
    if len(cdr) < 12 or cdr[1] not in (0, 1):
        raise ValueError("not a CDR message with a leading header")
    out = bytearray(cdr)
    fmt = "<iI" if cdr[1] == 1 else ">iI"  # encapsulation 0x0001 = little endian
    struct.pack_into(fmt, out, 4, stamp_ns // 1_000_000_000, stamp_ns % 1_000_000_000)
    return bytes(out)


class BagPlayer:
    """Publishes one topic of a bag at its recorded rate (scaled by ``rate``)."""

    def __init__(self, node, bag: str | Path, topic: str | None = None, to: str | None = None, restamp_now: bool = False) -> None:
        from rclpy.qos import QoSProfile

        self.bag = Path(bag)
        with BagReader(self.bag) as reader:
            self.info = reader.select_image_topic(topic)
        self.node = node
        self.restamp_now = restamp_now
        self.publisher = node.create_publisher(message_class(self.info.msgtype), to or self.info.name, QoSProfile(depth=10))

    def play(self, rate: float = 1.0, limit: int | None = None) -> int:
        """Publish every message; returns the count. Sleeps to keep the recorded spacing."""
        from rosbags.rosbag2 import Reader

        count, start, first = 0, time.monotonic(), None
        with Reader(self.bag) as reader:
            connections = [c for c in reader.connections if c.topic == self.info.name]
            for _, log_time_ns, raw in reader.messages(connections=connections):
                first = log_time_ns if first is None else first
                delay = start + (log_time_ns - first) / 1e9 / rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                data = restamp(bytes(raw), self.node.get_clock().now().nanoseconds) if self.restamp_now else bytes(raw)
                self.publisher.publish(data)
                count += 1
                if limit is not None and count >= limit:
                    break
        return count


class BagRecorder:
    """Records topics (name -> ``pkg/msg/Type``) into an MCAP bag as received CDR bytes."""

    def __init__(self, node, out: str | Path, topics: dict[str, str]) -> None:
        from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
        from rosbags.rosbag2 import StoragePlugin, Writer

        self.typestore = sfs_typestore()
        self._lock = threading.Lock()
        self._writer = Writer(Path(out), version=9, storage_plugin=StoragePlugin.MCAP)
        self._writer.open()
        self.counts = {topic: 0 for topic in topics}
        self._subscriptions = []
        for topic, msgtype in topics.items():
            connection = self._writer.add_connection(topic, msgtype, typestore=self.typestore)
            latched = msgtype.endswith("/LabelTable")
            qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL if latched else DurabilityPolicy.VOLATILE)
            callback = self._callback(topic, connection)
            self._subscriptions.append(node.create_subscription(message_class(msgtype), topic, callback, qos, raw=True))
        self.node = node

    def _callback(self, topic, connection):
        def write(data: bytes) -> None:
            with self._lock:
                if self._writer is not None:
                    self._writer.write(connection, self.node.get_clock().now().nanoseconds, data)
                    self.counts[topic] += 1

        return write

    def close(self) -> None:
        with self._lock:
            if self._writer is not None:
                self._writer.close()
                self._writer = None


def sfs_output_topics(node_name: str = "/sfs_node") -> dict[str, str]:
    return {f"{node_name.rstrip('/')}/{name}": msgtype for name, msgtype in SFS_OUTPUTS.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sfs_ros.bag_tools", description=__doc__.split("\n\n")[0])
    parser.add_argument("bag", type=Path)
    parser.add_argument("--topic", help="image topic in the bag (default: the only one)")
    parser.add_argument("--to", default="image", help="topic to publish on (default: image, the node's input)")
    parser.add_argument("--rate", type=float, default=1.0, help="playback speed factor")
    parser.add_argument("--limit", type=int, help="stop after N messages")
    parser.add_argument("--restamp", action="store_true", help="set header.stamp to the publish time (live latency)")
    parser.add_argument("--record", type=Path, help="record the node's outputs to this new MCAP bag")
    parser.add_argument("--node", default="/sfs_node", help="fully qualified name of the node to record")
    parser.add_argument("--linger", type=float, default=3.0, help="seconds to keep recording after the last frame")
    args = parser.parse_args(argv)
    if args.rate <= 0:
        parser.error("--rate must be positive")

    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    rclpy.init()
    node = rclpy.create_node("sfs_bag_tools")
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    spin = threading.Thread(target=executor.spin, daemon=True)
    spin.start()
    recorder = None
    try:
        player = BagPlayer(node, args.bag, args.topic, args.to, args.restamp)
        recorder = BagRecorder(node, args.record, sfs_output_topics(args.node)) if args.record else None
        time.sleep(1.0)  # let discovery connect the publisher before the first frame
        sent = player.play(args.rate, args.limit)
        print(f"published {sent} messages from {player.info.name} on {player.publisher.topic_name}")
        if recorder is not None:
            time.sleep(args.linger)
            print("recorded: " + ", ".join(f"{t} {n}" for t, n in recorder.counts.items()))
    except KeyboardInterrupt:
        pass
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        if recorder is not None:
            recorder.close()
        executor.shutdown()
        spin.join(timeout=5)
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
