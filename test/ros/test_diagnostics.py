"""Frame statistics and their /diagnostics form (no build needed)."""

from __future__ import annotations

import math

from diagnostic_msgs.msg import DiagnosticStatus

from sfs_core.open_vocab.worker import WorkerStats
from sfs_ros.diagnostics import FrameStats, diagnostic_status, open_vocab_status


def test_stats_count_totals_and_window():
    clock = iter([0.0, 2.0, 5.0]).__next__
    stats = FrameStats(clock=clock)
    for replaced in (False, True, True):
        stats.on_received(replaced)
    stats.on_processed(latency_ms=100.0, processing_ms=80.0)
    stats.on_processed(latency_ms=300.0, processing_ms=90.0)
    stats.on_processed(latency_ms=None, processing_ms=70.0)  # unstamped frame: no latency
    stats.on_rejected()
    first = stats.window()
    assert (first.received, first.processed, first.dropped, first.rejected, first.failed) == (3, 3, 2, 1, 0)
    assert first.fps == 1.5 and first.latency_mean_ms == 200.0 and first.latency_max_ms == 300.0
    assert first.processing_mean_ms == 80.0 and first.window_rejected == 1
    second = stats.window()
    assert second.processed == 3 and second.window_processed == 0 and second.fps == 0.0
    assert second.latency_mean_ms is None and second.window_rejected == 0


def test_diagnostic_status_levels_and_values():
    stats = FrameStats()
    ok = diagnostic_status(stats.window(), "/sfs_node: semantic segmentation", "cpu", {"device": "cpu"})
    assert ok.level == DiagnosticStatus.OK and ok.message == "waiting for images"
    stats.on_received(False)
    stats.on_rejected()
    warn = diagnostic_status(stats.window(), "n", "cpu", {})
    values = {kv.key: kv.value for kv in warn.values}
    assert warn.level == DiagnosticStatus.WARN and "1 frames rejected" in warn.message
    assert values["frames_rejected"] == "1" and values["latency_mean_ms"] == "n/a"
    assert ok.hardware_id == "cpu" and {kv.key: kv.value for kv in ok.values}["device"] == "cpu"


def test_open_vocab_status_reports_every_worker_counter():
    stats = WorkerStats(running=True, queued=1, backlog=3, result_age_last=0.75, result_age_mean=math.nan)
    status = open_vocab_status(stats, "/sfs_node: open vocabulary", "cpu")
    values = {kv.key: kv.value for kv in status.values}
    assert status.level == DiagnosticStatus.OK and "backlog 3 masks" in status.message
    assert values["queued"] == "1" and values["result_age_last"] == "0.750" and values["result_age_mean"] == "n/a"
    assert {"snapshots_dropped", "masks_per_second", "errors"} <= set(values)
    failing = WorkerStats(running=True, errors=2, last_error="boom")
    assert open_vocab_status(failing, "n", "cpu").level == DiagnosticStatus.WARN
    assert open_vocab_status(WorkerStats(running=False), "n", "cpu").level == DiagnosticStatus.ERROR
