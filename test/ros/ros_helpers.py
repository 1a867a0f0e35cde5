"""Test-side helpers: an in-process rclpy probe node, message collectors and a running ``sfs_node``."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSProfile

Stamp = tuple[int, int]


def stamp_of(msg: Any) -> Stamp:
    """``(sec, nanosec)`` of a stamped message, hashable and comparable."""
    return (msg.header.stamp.sec, msg.header.stamp.nanosec)


def wait_until(condition: Callable[[], Any], timeout: float, interval: float = 0.05) -> Any:
    """Poll ``condition`` until it returns something truthy (returned) or ``timeout`` passes (None)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            return None
        time.sleep(interval)


class Collector:
    """Thread-safe list of the messages one subscription received."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._messages: list[Any] = []

    def __call__(self, msg: Any) -> None:
        with self._lock:
            self._messages.append(msg)

    @property
    def messages(self) -> list[Any]:
        with self._lock:
            return list(self._messages)

    def latest(self) -> Any:
        messages = self.messages
        return messages[-1] if messages else None

    def by_stamp(self, stamp: Stamp) -> Any:
        return next((m for m in reversed(self.messages) if stamp_of(m) == stamp), None)

    def wait_for_stamp(self, stamp: Stamp, timeout: float) -> Any:
        return wait_until(lambda: self.by_stamp(stamp), timeout)


class RosProbe:
    """A test node spinning in a background thread of its own rclpy context."""

    def __init__(self, context: Context, name: str = "sfs_test_probe") -> None:
        self.node = Node(name, context=context)
        self._executor = SingleThreadedExecutor(context=context)
        self._executor.add_node(self.node)
        self._thread = threading.Thread(target=self._executor.spin, name=f"{name}_spin", daemon=True)
        self._thread.start()

    def collect(self, msg_type: type, topic: str, qos: QoSProfile | int = 10) -> Collector:
        collector = Collector()
        self.node.create_subscription(msg_type, topic, collector, qos)
        return collector

    def now_stamp(self):
        return self.node.get_clock().now().to_msg()

    def close(self) -> None:
        self._executor.shutdown()
        self._thread.join()
        self.node.destroy_node()


class NodeProcess:
    """The installed ``sfs_node`` executable, running with its output in ``log_path``."""

    def __init__(self, executable: Path, ros_args: list[str], env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        self._log_file = open(log_path, "wb")
        self.process = subprocess.Popen(
            [str(executable), "--ros-args", *ros_args], stdout=self._log_file, stderr=subprocess.STDOUT, env=env,
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, text: str, timeout: float) -> bool:
        """True once ``text`` appears in the output; False on timeout or if the process exits first."""
        found = wait_until(lambda: text in self.log() or self.process.poll() is not None, timeout, interval=0.2)
        return bool(found) and text in self.log()

    def thread_stacks(self, wait: float = 1.0) -> str:
        """Every thread's stack, as the node prints it on SIGUSR1 (the log's new part)."""
        if self.process.poll() is not None:
            return "(process has exited)"
        before = len(self.log())
        os.kill(self.pid, signal.SIGUSR1)
        time.sleep(wait)
        return self.log()[before:]

    def rss_bytes(self) -> int:
        return psutil.Process(self.pid).memory_info().rss

    def stop(self, sig: int = signal.SIGINT, timeout: float = 30.0) -> tuple[int | None, float]:
        """Send ``sig``; returns (exit code or None if still running after ``timeout``, seconds taken)."""
        t0 = time.monotonic()
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            code = None
        return code, time.monotonic() - t0

    def wait_exit(self, timeout: float) -> int | None:
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def close(self) -> None:
        """Stop the process if it still runs (SIGINT, SIGKILL after 10 s), and close the log.

        A graceful stop matters for the tests that follow: a killed node's DDS participant stays
        in the others' discovery data until its lease expires."""
        if self.process.poll() is None and self.stop(signal.SIGINT, timeout=10.0)[0] is None:
            os.kill(self.pid, signal.SIGKILL)
            self.process.wait()
        self._log_file.close()
