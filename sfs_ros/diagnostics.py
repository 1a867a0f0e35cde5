"""Frame counters and latency statistics of the node, and their ``diagnostic_msgs`` form."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from diagnostic_msgs.msg import DiagnosticStatus, KeyValue

#: Latencies outside [0, MAX_LATENCY_S] seconds come from stamps on another clock, not from us.
MAX_LATENCY_S = 60.0

if TYPE_CHECKING:  # imports torch
    from sfs_core.open_vocab.worker import WorkerStats


@dataclass(frozen=True)
class StatsWindow:
    """Totals since start-up, plus rates and latencies over the last window.

    Attributes:
        received: frames that arrived on the input topics.
        processed: frames run through the pipeline and published.
        dropped: frames replaced by a newer one before the worker took them.
        rejected: frames that could not be decoded (bad encoding or layout).
        failed: frames whose processing raised an error.
        seconds: length of the window.
        window_processed, window_rejected, window_failed: the same counts within the window.
        latency_mean_ms, latency_max_ms: input ``header.stamp`` to the end of publishing, over the
            stamped frames of the window (None when there were none).
        processing_mean_ms: mean :meth:`sfs_core.pipeline.Pipeline.process` time over the window.
        downscaled: frames above ``max_input_pixels``, downscaled before processing.
        stamp_skew: processed frames whose stamp was in the future or over
            :data:`MAX_LATENCY_S` old (bag loop, sim time, clock jump): left out of the latency.
    """

    received: int
    processed: int
    dropped: int
    rejected: int
    failed: int
    seconds: float
    window_processed: int
    window_rejected: int
    window_failed: int
    latency_mean_ms: float | None
    latency_max_ms: float | None
    processing_mean_ms: float | None
    downscaled: int = 0
    stamp_skew: int = 0

    @property
    def fps(self) -> float:
        return self.window_processed / self.seconds if self.seconds > 0 else 0.0


class FrameStats:
    """Thread-safe counters, updated by the subscription callbacks and the worker, read by the
    diagnostics timer. Each :meth:`window` call closes the current window and starts a new one."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._received = self._processed = self._dropped = self._rejected = self._failed = 0
        self._downscaled = self._stamp_skew = 0
        self._window_start = clock()
        self._window_processed = self._window_rejected = self._window_failed = 0
        self._latencies_ms: list[float] = []
        self._processing_ms: list[float] = []

    def on_received(self, replaced_waiting_frame: bool) -> None:
        with self._lock:
            self._received += 1
            self._dropped += int(replaced_waiting_frame)

    def on_rejected(self) -> None:
        with self._lock:
            self._rejected += 1
            self._window_rejected += 1

    def on_failed(self) -> None:
        with self._lock:
            self._failed += 1
            self._window_failed += 1

    def on_downscaled(self) -> None:
        with self._lock:
            self._downscaled += 1

    def on_processed(self, latency_ms: float | None, processing_ms: float) -> None:
        """``latency_ms`` is None for frames without a stamp (latency unknown). A latency below 0
        or above :data:`MAX_LATENCY_S` (stamp from another clock) is counted as ``stamp_skew``
        and left out of the statistics."""
        with self._lock:
            self._processed += 1
            self._window_processed += 1
            if latency_ms is not None and not 0.0 <= latency_ms <= MAX_LATENCY_S * 1e3:
                self._stamp_skew += 1
            elif latency_ms is not None:
                self._latencies_ms.append(latency_ms)
            self._processing_ms.append(processing_ms)

    def window(self) -> StatsWindow:
        """Totals and the statistics of the window that ends now."""
        with self._lock:
            now = self._clock()
            latencies, processing = self._latencies_ms, self._processing_ms
            window = StatsWindow(
                received=self._received, processed=self._processed, dropped=self._dropped,
                rejected=self._rejected, failed=self._failed, seconds=now - self._window_start,
                window_processed=self._window_processed,
                window_rejected=self._window_rejected,
                window_failed=self._window_failed,
                latency_mean_ms=sum(latencies) / len(latencies) if latencies else None,
                latency_max_ms=max(latencies) if latencies else None,
                processing_mean_ms=sum(processing) / len(processing) if processing else None,
                downscaled=self._downscaled, stamp_skew=self._stamp_skew,
            )
            self._window_start, self._latencies_ms, self._processing_ms = now, [], []
            self._window_processed = self._window_rejected = self._window_failed = 0
            return window


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}"


def diagnostic_status(window: StatsWindow, name: str, hardware_id: str, static: Mapping[str, str]) -> DiagnosticStatus:
    """One ``DiagnosticStatus`` for ``window``; ``static`` adds fixed key-values (load times...).

    Level: WARN when frames were rejected or failed within the window, else OK.
    """
    values = {
        "frames_received": str(window.received),
        "frames_processed": str(window.processed),
        "frames_dropped": str(window.dropped),
        "frames_rejected": str(window.rejected),
        "frames_failed": str(window.failed),
        "processed_fps": f"{window.fps:.2f}",
        "latency_mean_ms": _ms(window.latency_mean_ms),
        "latency_max_ms": _ms(window.latency_max_ms),
        "processing_mean_ms": _ms(window.processing_mean_ms),
        "frames_downscaled": str(window.downscaled),
        "frames_stamp_skew": str(window.stamp_skew),
        **static,
    }
    if window.window_rejected or window.window_failed:
        level = DiagnosticStatus.WARN
        message = f"{window.window_rejected} frames rejected (bad input), {window.window_failed} failed in processing"
    elif window.received == 0:
        level, message = DiagnosticStatus.OK, "waiting for images"
    else:
        level = DiagnosticStatus.OK
        message = f"{window.fps:.2f} fps, latency {_ms(window.latency_mean_ms)} ms"
    return DiagnosticStatus(
        level=level, name=name, message=message, hardware_id=hardware_id,
        values=[KeyValue(key=k, value=v) for k, v in values.items()],
    )


def _value(value: object) -> str:
    if isinstance(value, float):
        return "n/a" if math.isnan(value) else f"{value:.3f}"
    return str(value)


def open_vocab_status(stats: WorkerStats, name: str, hardware_id: str) -> DiagnosticStatus:
    """The open-vocabulary worker's counters (all of :class:`WorkerStats`, seconds as floats).

    Level: ERROR when the worker is not running, WARN after labelling errors, else OK.
    """
    if not stats.running:
        level, message = DiagnosticStatus.ERROR, "worker not running"
    elif stats.errors:
        level, message = DiagnosticStatus.WARN, f"{stats.errors} labelling errors; last: {stats.last_error}"
    else:
        level = DiagnosticStatus.OK
        age = _value(stats.result_age_last)
        message = f"{stats.queued} snapshots queued, backlog {stats.backlog} masks, last result {age} s old"
    return DiagnosticStatus(
        level=level, name=name, message=message, hardware_id=hardware_id,
        values=[KeyValue(key=k, value=_value(v)) for k, v in asdict(stats).items()],
    )
