"""Scheduling logic of the open-vocabulary worker.

These tests use a FAKE labeler (no model: it names each mask after its area and can be made
slow or failing on demand) so they check only the worker: rate limit, bounded queue, stale
snapshots, priorities, results applied to tracks, statistics, and clean start/stop. The worker
with the real (random-weight) CLIP is tested in test_open_vocab_models.py.
"""

import math
import threading
import time

import numpy as np
import pytest
import torch

from sfs_core.config import OpenVocabConfig
from sfs_core.labels import LabelSource, LabelTable
from sfs_core.open_vocab import OpenVocabBranch, OpenVocabWorker, Snapshot, select_tracks
from sfs_core.open_vocab_fusion import FusionRule, FusionThresholds, OpenVocabLabels, TrackLabel
from sfs_core.tracking import Tracker

IMAGE = np.zeros((48, 64, 3), np.uint8)


class FakeLabeler:
    """Names each mask ``area<pixels>``; records calls; optionally waits on a gate or raises."""

    def __init__(self, batch_size=4, delay=0.0):
        self.batch_size = batch_size
        self.delay = delay
        self.calls: list[int] = []
        self.gate = threading.Event()
        self.gate.set()
        self.fail = False

    def label(self, image, masks, closed_set_candidates=None):
        self.gate.wait(10)
        if self.fail:
            raise RuntimeError("boom")
        time.sleep(self.delay)
        self.calls.append(masks.shape[0])
        return [OpenVocabLabels((f"area{int(m.sum())}",), (0.9,)) for m in masks]


class RecordingSink:
    def __init__(self, alive=None):
        self.applied: list[tuple[int, str, float]] = []
        self.alive = alive

    def apply_open_vocab(self, track_id, labels, stamp):
        self.applied.append((track_id, labels.candidates[0], stamp))
        return self.alive is None or track_id in self.alive


def label(source=LabelSource.CLOSED_SET, score=0.9):
    return TrackLabel(2, "x", score, source, FusionRule.CLOSED_SET)


def snapshot(track_ids, areas=None, labels=None, stamps=None, stamp=None):
    n = len(track_ids)
    masks = torch.zeros(n, 12, 16, dtype=torch.bool)
    for i in range(n):
        masks[i, :, : i + 1] = True  # distinct areas: 12 * (i + 1) pixels
    return Snapshot(
        image=IMAGE, masks=masks, track_ids=np.array(track_ids, np.int64),
        areas=np.array(areas if areas is not None else [0.1] * n, np.float64),
        labels=labels or [label() for _ in range(n)],
        open_vocab_stamps=np.array(stamps if stamps is not None else [math.nan] * n, np.float64),
        closed_set_candidates=[[] for _ in range(n)], stamp=time.monotonic() if stamp is None else stamp,
    )


def config(**overrides):
    base = dict(max_rate=1000.0, queue_size=1, max_masks_per_snapshot=16, max_snapshot_age=60.0, min_area=0.01)
    return OpenVocabConfig(**{**base, **overrides})


def wait_for(predicate, timeout=10.0):
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError("timed out")
        time.sleep(0.005)


# ---- selection (pure) ---------------------------------------------------------------------------
def test_priority_new_and_unidentified_first_then_low_confidence_large_before_small():
    snap = snapshot(
        [1, 2, 3, 4, 5, 6, 7],
        areas=[0.30, 0.05, 0.20, 0.10, 0.40, 0.02, 0.50],
        labels=[label(score=0.9), label(), label(LabelSource.UNIDENTIFIED, 0.1), label(score=0.45),
                label(score=0.95), label(), label(score=0.47)],
        stamps=[1.0, math.nan, 1.0, 1.0, 1.0, math.nan, 1.0],
    )
    chosen, eligible = select_tracks(snap, now=100.0, labelled={}, config=config(relabel_after=10.0))
    # Tier 0 (no result yet, or unidentified) by area: 3 (0.20), 2 (0.05), 6 (0.02).
    # Then by score bucket (0.4x before 0.9x), larger first: 7, 4, then 5, 1.
    assert snap.track_ids[chosen].tolist() == [3, 2, 6, 7, 4, 5, 1]
    assert eligible == 7


def test_labelled_tracks_are_skipped_until_relabel_after_and_tiny_masks_always():
    snap = snapshot([1, 2, 3], areas=[0.2, 0.2, 0.001], stamps=[95.0, 50.0, math.nan])
    never = select_tracks(snap, now=100.0, labelled={}, config=config(relabel_after=0.0))
    assert snap.track_ids[never[0]].tolist() == [] and never[1] == 0
    later = select_tracks(snap, now=100.0, labelled={}, config=config(relabel_after=30.0))
    assert snap.track_ids[later[0]].tolist() == [2]


def test_masks_without_a_track_are_never_selected():
    snap = snapshot([0, 5], areas=[0.0, 0.2])
    chosen, eligible = select_tracks(snap, now=0.0, labelled={}, config=config(min_area=0.0))
    assert snap.track_ids[chosen].tolist() == [5] and eligible == 1


def test_the_workers_own_record_blocks_labelling_a_track_twice():
    snap = snapshot([1, 2])  # captured before the results for track 1 reached the tracker
    chosen, _ = select_tracks(snap, now=100.0, labelled={1: 99.0}, config=config())
    assert snap.track_ids[chosen].tolist() == [2]


def test_max_masks_per_snapshot_caps_the_selection_and_reports_the_backlog():
    snap = snapshot(list(range(1, 11)))
    chosen, eligible = select_tracks(snap, now=0.0, labelled={}, config=config(max_masks_per_snapshot=3))
    assert len(chosen) == 3 and eligible == 10


# ---- queue and rate (no thread) -----------------------------------------------------------------
def test_rate_limit_accepts_at_most_max_rate_snapshots_per_second():
    now = [0.0]
    worker = OpenVocabWorker(FakeLabeler(), RecordingSink(), config(max_rate=2.0, queue_size=10), clock=lambda: now[0])
    accepted = []
    for step in range(20):  # 2 s of frames at 10 Hz
        now[0] = step * 0.1
        accepted.append(worker.submit(snapshot([1], stamp=now[0])))
    assert sum(accepted) == 4 and accepted[0] and accepted[5] and not accepted[4]
    stats = worker.stats()
    assert (stats.snapshots_submitted, stats.snapshots_accepted, stats.snapshots_rate_limited) == (20, 4, 16)


def test_full_queue_drops_the_oldest_snapshot_and_reschedules_its_tracks():
    now = [0.0]
    sink = RecordingSink()
    worker = OpenVocabWorker(FakeLabeler(), sink, config(queue_size=2), clock=lambda: now[0])
    for step, track_ids in enumerate(([1, 2], [3], [4, 5, 6])):
        now[0] = float(step)
        assert worker.submit(snapshot(track_ids, stamp=now[0]))
    stats = worker.stats()
    assert stats.queued == 2 and stats.snapshots_dropped == 1 and stats.tracks_rescheduled == 2
    worker.start()
    try:
        wait_for(lambda: worker.stats().snapshots_processed == 2)
    finally:
        worker.stop()
    assert [t for t, _, _ in sink.applied] == [3, 4, 5, 6]  # the newest snapshots were kept


def test_empty_snapshots_are_ignored():
    worker = OpenVocabWorker(FakeLabeler(), RecordingSink(), config())
    assert not worker.submit(snapshot([]))
    assert worker.stats().snapshots_accepted == 0


# ---- the thread -----------------------------------------------------------------------------------
def test_results_are_applied_to_the_tracks_and_show_on_the_next_frame():
    table = LabelTable(["person"])
    tracker = Tracker(label_table=table, thresholds=FusionThresholds(0.4, 0.3, 0.1))
    masks = torch.zeros(2, 12, 16, dtype=torch.bool)
    masks[0, :6, :8] = True
    masks[1, 6:, 8:] = True
    tracks = tracker.update(masks, class_ids=[table.id_of("person")] * 2, confidences=[0.1, 0.1])
    labeler = FakeLabeler()
    with OpenVocabWorker(labeler, tracker, config()) as worker:
        assert worker.submit(Snapshot.from_frame(IMAGE, masks, tracks))
        wait_for(lambda: worker.stats().results_applied == 2)
    after = tracker.update(masks, class_ids=[table.id_of("person")] * 2, confidences=[0.1, 0.1])
    assert [lab.name for lab in after.labels] == ["area48", "area48"]
    assert all(lab.source == LabelSource.OPEN_VOCAB for lab in after.labels)
    assert not np.isnan(after.open_vocab_stamps).any()


def test_each_track_is_labelled_once_across_snapshots():
    sink = RecordingSink()
    labeler = FakeLabeler(batch_size=2)
    labeler.gate.clear()
    worker = OpenVocabWorker(labeler, sink, config()).start()
    try:
        worker.submit(snapshot([1, 2, 3]))
        wait_for(lambda: worker.stats().queued == 0)  # the worker holds the first snapshot
        worker.submit(snapshot([1, 2, 3, 4]))  # the tracker has not seen any result yet
        labeler.gate.set()
        wait_for(lambda: worker.stats().snapshots_processed == 2)
    finally:
        assert worker.stop(timeout=5)
    assert sorted(t for t, _, _ in sink.applied) == [1, 2, 3, 4]
    assert labeler.calls == [2, 1, 1]  # chunks of batch_size, then only the new track


def test_stale_snapshot_is_dropped_and_its_tracks_come_back_later():
    sink = RecordingSink()
    worker = OpenVocabWorker(FakeLabeler(), sink, config(max_snapshot_age=1.0)).start()
    try:
        worker.submit(snapshot([1, 2], stamp=time.monotonic() - 5.0))  # already too old
        wait_for(lambda: worker.stats().snapshots_dropped == 1)
        assert sink.applied == [] and worker.stats().tracks_rescheduled == 2
        worker.submit(snapshot([1, 2]))
        wait_for(lambda: worker.stats().results_applied == 2)
    finally:
        worker.stop()
    assert [t for t, _, _ in sink.applied] == [1, 2]


def test_results_for_expired_tracks_are_counted_as_dropped():
    worker = OpenVocabWorker(FakeLabeler(), RecordingSink(alive={2}), config()).start()
    try:
        worker.submit(snapshot([1, 2]))
        wait_for(lambda: worker.stats().masks_labelled == 2)
    finally:
        worker.stop()
    stats = worker.stats()
    assert (stats.results_applied, stats.results_dropped) == (1, 1)


def test_stats_report_throughput_age_and_backlog():
    worker = OpenVocabWorker(FakeLabeler(batch_size=8, delay=0.05), RecordingSink(), config(max_masks_per_snapshot=3)).start()
    try:
        worker.submit(snapshot([1, 2, 3, 4, 5], stamp=time.monotonic() - 0.5))
        wait_for(lambda: worker.stats().snapshots_processed == 1)
    finally:
        worker.stop()
    stats = worker.stats()
    assert stats.masks_labelled == 3 and stats.backlog == 2
    assert 0 < stats.masks_per_second <= 3 / 0.05
    assert 0.5 <= stats.result_age_last < 5.0 and stats.result_age_mean == pytest.approx(stats.result_age_last)


def test_labeler_errors_are_counted_and_the_thread_survives():
    labeler = FakeLabeler()
    labeler.fail = True
    sink = RecordingSink()
    worker = OpenVocabWorker(labeler, sink, config()).start()
    try:
        worker.submit(snapshot([1]))
        wait_for(lambda: worker.stats().errors == 1)
        assert worker.running and "boom" in worker.stats().last_error
        labeler.fail = False
        worker.submit(snapshot([1]))  # not marked as labelled: it is tried again
        wait_for(lambda: worker.stats().results_applied == 1)
    finally:
        worker.stop()


def test_stop_joins_within_the_timeout_while_the_labeler_is_busy():
    labeler = FakeLabeler(batch_size=1, delay=0.2)
    worker = OpenVocabWorker(labeler, RecordingSink(), config()).start()
    worker.submit(snapshot(list(range(1, 11))))
    wait_for(lambda: labeler.calls)  # busy with a 10-chunk snapshot
    t0 = time.monotonic()
    assert worker.stop(timeout=5.0)
    assert time.monotonic() - t0 < 1.0 and not worker.running
    assert len(labeler.calls) < 10  # it stopped between chunks
    assert worker.stop()  # idempotent


def test_duty_cycle_idles_between_chunks():
    labeler = FakeLabeler(batch_size=1, delay=0.05)
    worker = OpenVocabWorker(labeler, RecordingSink(), config(duty_cycle=0.25)).start()
    t0 = time.monotonic()
    try:
        worker.submit(snapshot([1, 2, 3]))
        wait_for(lambda: worker.stats().snapshots_processed == 1)
    finally:
        worker.stop()
    assert time.monotonic() - t0 >= 3 * 0.05 / 0.25 * 0.9  # busy 25% of the time


# ---- the branch: one call per frame ---------------------------------------------------------------
def two_masks():
    masks = torch.zeros(2, 12, 16, dtype=torch.bool)
    masks[0, :6, :8] = True
    masks[1, 6:, 8:] = True
    return masks


def test_synchronous_branch_labels_the_frame_it_is_given():
    """``sfs segment``: one image, so the labels must be on the returned tracks."""
    tracker = Tracker(thresholds=FusionThresholds(0.4, 0.3, 0.1))
    labeler = FakeLabeler(batch_size=1)
    branch = OpenVocabBranch(config(), tracker, labeler=labeler, synchronous=True)
    tracks = tracker.update(two_masks())
    labelled = branch.observe(IMAGE, two_masks(), tracks)
    assert [lab.name for lab in labelled.labels] == ["area48", "area48"] and labeler.calls == [1, 1]
    assert [lab.source for lab in tracks.labels] == [LabelSource.UNIDENTIFIED] * 2  # the input is not mutated
    assert branch.close() and branch.stats().masks_labelled == 0


def test_asynchronous_branch_returns_at_once_and_labels_show_later():
    tracker = Tracker(thresholds=FusionThresholds(0.4, 0.3, 0.1))
    labeler = FakeLabeler()
    labeler.gate.clear()  # the labeler is busy for now
    branch = OpenVocabBranch(config(max_rate=1000.0), tracker, labeler=labeler)
    try:
        tracks = branch.observe(IMAGE, two_masks(), tracker.update(two_masks()))
        assert [lab.source for lab in tracks.labels] == [LabelSource.UNIDENTIFIED] * 2
        labeler.gate.set()
        wait_for(lambda: branch.stats().results_applied == 2)
        later = tracker.update(two_masks())
        assert [lab.name for lab in later.labels] == ["area48", "area48"]
    finally:
        assert branch.close(timeout=5)
