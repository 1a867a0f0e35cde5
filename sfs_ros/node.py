"""``sfs_node``: the ROS 2 adapter around :class:`sfs_core.pipeline.Pipeline`.

Threads:

* the executor thread runs the subscription callbacks (they only store the newest frame in a
  :class:`~sfs_ros.frame_slot.LatestFrameSlot`), the parameter callback and the diagnostics timer;
* the worker thread takes the newest frame, decodes it, runs the pipeline and publishes;
* the main thread waits for SIGINT/SIGTERM and then shuts down in a safe order;
* SIGUSR1 prints every thread's stack to stderr (for a node that seems stuck).

Topics (names relative, so namespaces and remapping work):

* in: ``image`` (sensor_msgs/Image), and ``image/compressed`` when ``input.compressed`` is true;
* out: ``~/semantic`` (mono16 class ids), ``~/semantic_color`` and ``~/overlay`` (rgb8),
  ``~/masks`` (sfs_ros/LabeledMaskArray), ``~/labels`` (sfs_ros/LabelTable, transient local,
  published when the table changes), ``/diagnostics``.

Every output carries the input frame's ``header`` (stamp and frame_id). Image outputs and masks
are only built while someone subscribes to them.
"""

from __future__ import annotations

import faulthandler
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import SetParametersResult
from rclpy.event_handler import QoSRequestedIncompatibleQoSInfo, SubscriptionEventCallbacks
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.publisher import Publisher
from rclpy.qos import qos_policy_name_from_kind
from rclpy.signals import SignalHandlerOptions
from rclpy.subscription import Subscription
from rclpy.time import Time
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from sfs_core.config import NODE_NAME, ConfigError, PipelineConfig
from sfs_core.result import SemanticResult
from sfs_core.visualize import colorize, overlay
from sfs_ros.conversions import ImageDecoder
from sfs_ros.diagnostics import FrameStats, diagnostic_status, open_vocab_status
from sfs_ros.frame_slot import LatestFrameSlot
from sfs_ros.messages import image_msg, label_table_msg, labeled_mask_array
from sfs_ros.msg import LabeledMaskArray
from sfs_ros.msg import LabelTable as LabelTableMsg
from sfs_ros.params import RUNTIME_THRESHOLDS, declare_parameters, params_file_dir, unmatched_section_warning
from sfs_ros.qos import LABELS_QOS, OUTPUT_QOS, input_qos

if TYPE_CHECKING:
    from sfs_core.pipeline import Pipeline

#: Size of the noise frame the models are warmed up with (height, width).
WARMUP_SIZE = (480, 640)
#: Minimum seconds between two identical error lines about bad frames.
ERROR_THROTTLE_S = 5.0
#: Seconds shutdown waits for the open-vocabulary worker (a caption batch can take longer; the
#: process then exits without it, keeping shutdown within ~5 s).
OPEN_VOCAB_STOP_S = 2.0


@dataclass(frozen=True)
class InputFrame:
    """One received message and the (resolved) topic it came from."""

    msg: Image | CompressedImage
    topic: str


class SfsNode(Node):
    """Semantic-Fast-SAM as a ROS 2 node; all model work is done by :class:`Pipeline`.

    Construction declares and validates the parameters, loads and warms up the models, then
    creates the publishers and subscriptions and starts the worker. It raises
    :class:`ConfigError` (naming the parameter) for a bad parameter. Call :meth:`close` before
    destroying the node.
    """

    def __init__(self, argv: Sequence[str] = ()) -> None:
        super().__init__(NODE_NAME)
        try:
            self._setup(argv)
        except BaseException:
            self.destroy_node()
            raise

    def _setup(self, argv: Sequence[str]) -> None:
        warning = unmatched_section_warning(argv, self.get_fully_qualified_name())
        if warning:
            self.get_logger().warning(warning)
        self.settings, config = declare_parameters(self, params_file_dir(argv) or Path.cwd())
        self.pipeline = self._load_pipeline(config)
        self.decoder = ImageDecoder()
        self.stats = FrameStats()
        self._slot: LatestFrameSlot[InputFrame] = LatestFrameSlot()
        self._published_label_version: int | None = None
        self._create_publishers()
        self._inputs = self._create_subscriptions()
        self._static_diagnostics = {
            "device": str(self.pipeline.device),
            "model_load_s": f"{self._load_seconds:.2f}",
            "warmup_s": f"{self._warmup_seconds:.2f}",
            "image_decoder": self.decoder.backend,
            "input_topics": ", ".join(s.topic_name for s in self._inputs),
        }
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.create_timer(self.settings.diagnostics_period, self._publish_diagnostics)
        self._worker = threading.Thread(target=self._run_worker, name="sfs_worker")
        self._worker.start()
        self.get_logger().info(
            f"ready: {', '.join(s.topic_name for s in self._inputs)} -> "
            f"{self.get_fully_qualified_name()}/{{semantic,semantic_color,overlay,masks,labels}}"
        )

    def _create_publishers(self) -> None:
        """The outputs; ~/semantic_color and ~/overlay only when enabled (output.color, output.overlay)."""
        def optional(enabled: bool, topic: str) -> Publisher | None:
            return self.create_publisher(Image, topic, OUTPUT_QOS) if enabled else None

        self._semantic_pub = self.create_publisher(Image, "~/semantic", OUTPUT_QOS)
        self._color_pub = optional(self.settings.publish_color, "~/semantic_color")
        self._overlay_pub = optional(self.settings.publish_overlay, "~/overlay")
        self._masks_pub = self.create_publisher(LabeledMaskArray, "~/masks", OUTPUT_QOS)
        self._labels_pub = self.create_publisher(LabelTableMsg, "~/labels", LABELS_QOS)
        self._diagnostics_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)

    def _create_subscriptions(self) -> list[Subscription]:
        """``image``, and ``image/compressed`` when ``input.compressed``; both feed the frame slot."""
        qos = input_qos(self.settings.reliability, self.settings.depth)
        inputs = [(Image, "image")] + ([(CompressedImage, "image/compressed")] if self.settings.compressed else [])
        subscriptions = []
        for msg_type, topic in inputs:
            resolved = self.resolve_topic_name(topic)
            events = SubscriptionEventCallbacks(incompatible_qos=partial(self._on_incompatible_qos, resolved))
            subscriptions.append(self.create_subscription(
                msg_type, topic, partial(self._on_frame, resolved), qos, event_callbacks=events))
        return subscriptions

    def _load_pipeline(self, config: PipelineConfig) -> Pipeline:
        """Load the models and warm them up (before anything subscribes), logging both times."""
        from sfs_core.pipeline import Pipeline  # imports torch (~2 s): after main() has set up signals

        t0 = time.perf_counter()
        pipeline = Pipeline(config)
        self._load_seconds = time.perf_counter() - t0
        self._warmup_seconds = pipeline.warmup(WARMUP_SIZE)
        segmenters = ", ".join(f"{c.name}={c.model}" for c in config.closed_set)
        self.get_logger().info(
            f"models loaded on {config.device} in {self._load_seconds:.1f} s (masks: {config.masks.model}; "
            f"closed set: {segmenters}); warm-up at {WARMUP_SIZE[1]}x{WARMUP_SIZE[0]} took {self._warmup_seconds:.1f} s"
        )
        return pipeline

    # ---- executor thread ---------------------------------------------------------------------
    def _on_frame(self, topic: str, msg: Image | CompressedImage) -> None:
        self.stats.on_received(replaced_waiting_frame=self._slot.put(InputFrame(msg, topic)))

    def _on_incompatible_qos(self, topic: str, event: QoSRequestedIncompatibleQoSInfo) -> None:
        self.get_logger().warning(
            f"a publisher on '{topic}' offers QoS incompatible with this subscription "
            f"(policy {qos_policy_name_from_kind(event.last_policy_kind)}); no frames will arrive from it. "
            f"This node subscribes with qos.reliability={self.settings.reliability}: match the publisher"
        )

    def _on_set_parameters(self, parameters: list[Parameter]) -> SetParametersResult:
        """Apply threshold changes (the other pipeline parameters are read-only)."""
        changes = {RUNTIME_THRESHOLDS[p.name]: p.value for p in parameters if p.name in RUNTIME_THRESHOLDS}
        if not changes:
            return SetParametersResult(successful=True)
        try:
            self.pipeline.set_thresholds(**changes)
        except ValueError as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        self.get_logger().info("thresholds changed: " + ", ".join(f"{p.name}={p.value}" for p in parameters))
        return SetParametersResult(successful=True)

    def _publish_diagnostics(self) -> None:
        name = self.get_fully_qualified_name()
        statuses = [diagnostic_status(
            self.stats.window(), name=f"{name}: semantic segmentation", hardware_id=str(self.pipeline.device),
            static={**self._static_diagnostics, "label_classes": str(len(self.pipeline.label_table)),
                    "labels_refused": str(self.pipeline.label_table.refused),
                    "masks_imgsz": str(self.pipeline.config.masks.imgsz),
                    "oom_backoffs": str(self.pipeline.oom_backoffs)},
        )]
        if self.pipeline.open_vocab is not None:
            statuses.append(open_vocab_status(self.pipeline.open_vocab.stats(), f"{name}: open vocabulary",
                                              hardware_id=str(self.pipeline.device)))
        header = Header(stamp=self.get_clock().now().to_msg())
        self._diagnostics_pub.publish(DiagnosticArray(header=header, status=statuses))

    # ---- worker thread -----------------------------------------------------------------------
    def _run_worker(self) -> None:
        while (frame := self._slot.take()) is not None:
            self._process(frame)

    def _process(self, frame: InputFrame) -> None:
        try:
            rgb = self.decoder.decode(frame.msg)
        except ValueError as exc:
            self.stats.on_rejected()
            self.get_logger().error(
                f"skipping a frame from '{frame.topic}': {exc}", throttle_duration_sec=ERROR_THROTTLE_S)
            return
        fitted = self.pipeline.fit_input(rgb)
        if fitted is not rgb:
            self.stats.on_downscaled()
            self.get_logger().warning(
                f"frame from '{frame.topic}' is {rgb.shape[1]}x{rgb.shape[0]}, above max_input_pixels="
                f"{self.pipeline.config.max_input_pixels}: processed and published at {fitted.shape[1]}x{fitted.shape[0]}",
                throttle_duration_sec=ERROR_THROTTLE_S)
            rgb = fitted
        try:
            result = self.pipeline.process(rgb)
            self._publish(result, rgb, frame.msg.header)
        except Exception as exc:  # one bad frame must not stop the node; counted in /diagnostics
            self.stats.on_failed()
            self.get_logger().error(
                f"processing a frame from '{frame.topic}' failed: {type(exc).__name__}: {exc}",
                throttle_duration_sec=ERROR_THROTTLE_S,
            )
            return
        stamp = Time.from_msg(frame.msg.header.stamp)
        latency_ms = (self.get_clock().now() - stamp).nanoseconds / 1e6 if stamp.nanoseconds else None
        self.stats.on_processed(latency_ms, result.timings["total"])

    def _publish(self, result: SemanticResult, rgb: np.ndarray, header: Header) -> None:
        """Publish every output of one frame with the frame's header; outputs nobody subscribes
        to are skipped, except ``~/labels``, which is latched and goes out whenever it changed."""
        if self._masks_pub.get_subscription_count():
            self._masks_pub.publish(labeled_mask_array(result, header))
        if self._semantic_pub.get_subscription_count():
            self._semantic_pub.publish(image_msg(result.label_map, "mono16", header))
        if self._color_pub and self._color_pub.get_subscription_count():
            colors = colorize(result.label_map, result.label_table.palette())
            self._color_pub.publish(image_msg(colors, "rgb8", header))
        if self._overlay_pub and self._overlay_pub.get_subscription_count():
            self._overlay_pub.publish(image_msg(overlay(rgb, result), "rgb8", header))
        if result.label_table.version != self._published_label_version:
            self._labels_pub.publish(label_table_msg(result.label_table, header))
            self._published_label_version = result.label_table.version

    def close(self) -> None:
        """Stop the worker (it finishes the frame in hand first), then the pipeline's own threads
        (the open-vocabulary worker). Call before destroying the node."""
        self._slot.close()
        self._worker.join()
        if not self.pipeline.close(timeout=OPEN_VOCAB_STOP_S):
            self.get_logger().warning(f"the open-vocabulary worker did not stop within {OPEN_VOCAB_STOP_S} s")


class _ShutdownRequest:
    """SIGINT/SIGTERM handler: remember the request, then interrupt the main thread.

    The KeyboardInterrupt stops a start-up in progress (model loading can take a while). Library
    code can swallow it (a signal that lands in a ``__del__`` is only printed), so the main thread
    also checks :attr:`requested`.
    """

    def __init__(self) -> None:
        self.requested = threading.Event()

    def __call__(self, signum: int, _frame) -> None:
        self.requested.set()
        raise KeyboardInterrupt


def _exit_at_once(signum: int, _frame) -> None:
    """A second SIGINT/SIGTERM during shutdown: stop waiting for the worker."""
    os.write(2, b"[sfs_node] second signal during shutdown: exiting without waiting\n")
    os._exit(128 + signum)


def main(args: Sequence[str] | None = None) -> int:
    """Run the node until SIGINT or SIGTERM.

    Returns the exit code: 0 after a signal, 2 for a bad parameter (one error line naming it),
    1 if the executor stopped on its own (a callback raised).
    """
    argv = list(sys.argv if args is None else args)
    rclpy.init(args=argv, signal_handler_options=SignalHandlerOptions.NO)
    shutdown = _ShutdownRequest()
    # A signal the parent ignores stays ignored (as Python itself does for SIGINT).
    handled = [s for s in (signal.SIGINT, signal.SIGTERM) if signal.getsignal(s) is not signal.SIG_IGN]
    for signum in handled:
        signal.signal(signum, shutdown)
    faulthandler.register(signal.SIGUSR1, all_threads=True)  # `kill -USR1 <pid>`: every thread's stack to stderr
    node: SfsNode | None = None
    executor: SingleThreadedExecutor | None = None
    spin_thread: threading.Thread | None = None
    code = 0
    try:
        node = SfsNode(argv)
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        spin_thread = threading.Thread(target=executor.spin, name="sfs_executor")
        spin_thread.start()
        while spin_thread.is_alive() and not shutdown.requested.is_set():
            spin_thread.join(timeout=0.5)
        code = 0 if shutdown.requested.is_set() else 1
    except KeyboardInterrupt:
        pass
    except ConfigError as exc:
        rclpy.logging.get_logger(NODE_NAME).error(str(exc))
        code = 2
    finally:
        for signum in handled:
            signal.signal(signum, _exit_at_once)
        # Order matters (ENVIRONMENT.md): worker, executor, spin thread, node, context.
        if node is not None:
            node.close()
        if executor is not None:
            executor.shutdown()
        if spin_thread is not None:
            spin_thread.join()
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return code


def run() -> None:
    """Entry point of the ``sfs_node`` executable: :func:`main`, then exit at once.

    Everything ROS has been shut down by then; skipping the interpreter's own teardown saves the
    ~2.5 s it spends unloading torch and transformers, so a shutdown stays well within 5 s.
    """
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
