"""The asynchronous open-vocabulary branch: a worker thread that labels tracks from snapshots.

The per-frame path never waits for it. Each frame it may :meth:`OpenVocabWorker.submit` a
:class:`Snapshot` (frame, masks, track ids, closed-set candidates); the worker accepts at most
``max_rate`` per second into a queue of ``queue_size``. When the queue is full the **oldest**
snapshot is dropped, so the worker always works on recent frames; a dropped or too-old snapshot
labels nothing, and its tracks stay eligible, so they are picked from a later snapshot.

From each snapshot the worker labels up to ``max_masks_per_snapshot`` tracks, most needed first:
tracks without an open-vocabulary result and unidentified ones, then the least confident, larger
before smaller at equal need. Results go to the tracks (``sink.apply_open_vocab``), never to
pixels; the per-frame path shows them from its next frame on.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Protocol

import numpy as np
import torch

from sfs_core.config import OpenVocabConfig
from sfs_core.labels import LabelSource
from sfs_core.open_vocab_fusion import OpenVocabLabels, TrackLabel
from sfs_core.tracking import FrameTracks

log = logging.getLogger(__name__)


@dataclass
class Snapshot:
    """One frame handed to the worker. Arrays are referenced, not copied: do not modify them
    after :meth:`OpenVocabWorker.submit`.

    Attributes:
        image: ``(H, W, 3)`` uint8 RGB.
        masks: ``(N, h, w)`` bool covering the image, any device.
        track_ids: ``(N,)`` int64, the track of each mask.
        areas: ``(N,)`` float64, each mask's share of the frame.
        labels: ``N`` track labels at snapshot time (source and score set the priority).
        open_vocab_stamps: ``(N,)`` float64, stamp of each track's open-vocab result, NaN if none.
        closed_set_candidates: ``N`` lists of closed-set names (used in ``caption`` mode).
        stamp: ``time.monotonic()`` when the frame was taken (the worker's clock).
        frame_index: the tracker's frame counter.
    """

    image: np.ndarray
    masks: torch.Tensor
    track_ids: np.ndarray
    areas: np.ndarray
    labels: list[TrackLabel]
    open_vocab_stamps: np.ndarray
    closed_set_candidates: list[list[str]]
    stamp: float
    frame_index: int = 0

    @classmethod
    def from_frame(cls, image: np.ndarray, masks: torch.Tensor, tracks: FrameTracks,
                   closed_set_candidates: Sequence[Sequence[str]] | None = None, stamp: float | None = None) -> Snapshot:
        """Snapshot of a frame the tracker has just updated (``tracks`` aligned with ``masks``)."""
        if masks.shape[0] != len(tracks):
            raise ValueError(f"{masks.shape[0]} masks but {len(tracks)} tracks")
        n = len(tracks)
        candidates = [list(c) for c in closed_set_candidates] if closed_set_candidates is not None else [[] for _ in range(n)]
        if len(candidates) != len(tracks):
            raise ValueError(f"{len(tracks)} masks but {len(candidates)} closed-set candidate lists")
        return cls(image, masks, tracks.track_ids, tracks.areas, list(tracks.labels), tracks.open_vocab_stamps,
                   candidates, time.monotonic() if stamp is None else stamp, tracks.frame_index)

    def __len__(self) -> int:
        return int(self.track_ids.shape[0])


class Labeler(Protocol):
    """What the worker needs from :class:`~sfs_core.open_vocab.labeler.OpenVocabLabeler`."""

    batch_size: int

    def label(self, image: np.ndarray, masks: torch.Tensor,
              closed_set_candidates: Sequence[Sequence[str]] | None = None) -> list[OpenVocabLabels]: ...


class LabelSink(Protocol):
    """Where results go: :class:`~sfs_core.tracking.Tracker`."""

    def apply_open_vocab(self, track_id: int, labels: OpenVocabLabels, stamp: float) -> bool: ...


@dataclass
class WorkerStats:
    """Counters since :meth:`OpenVocabWorker.start` (times in seconds)."""

    running: bool = False
    snapshots_submitted: int = 0
    snapshots_accepted: int = 0
    snapshots_rate_limited: int = 0
    snapshots_dropped: int = 0  # overflowed the queue, or older than max_snapshot_age
    snapshots_processed: int = 0
    tracks_rescheduled: int = 0  # masks of dropped snapshots, left for a later snapshot
    queued: int = 0  # snapshots waiting
    backlog: int = 0  # eligible tracks of the last processed snapshot that it did not label
    masks_labelled: int = 0
    results_applied: int = 0
    results_dropped: int = 0  # the track had expired
    errors: int = 0
    last_error: str = ""
    restarts: int = 0  # the thread died of an unexpected error and was started again
    busy_seconds: float = 0.0  # time spent in the labeler
    masks_per_second: float = 0.0  # masks_labelled / busy_seconds: the labeler's throughput
    result_age_last: float = math.nan  # apply time - snapshot stamp, of the last applied result
    result_age_mean: float = math.nan  # mean over all applied results


def select_tracks(snapshot: Snapshot, now: float, labelled: dict[int, float], config: OpenVocabConfig) -> tuple[np.ndarray, int]:
    """Pick the snapshot's masks to label now. Pure: no threads, no models.

    A track is eligible when it exists (id > 0), its mask covers at least ``min_area`` of the
    frame, and it has no open-vocabulary result yet (neither on the track at snapshot time nor in
    ``labelled``, the worker's own record of result stamps), or its result is older than
    ``relabel_after`` (> 0).
    Eligible tracks are ordered by need: no result yet or unidentified first, then by label
    score (lowest first, in steps of 0.1), and larger before smaller within each group.

    Returns:
        ``(indices, eligible)``: up to ``max_masks_per_snapshot`` int64 indices into the
        snapshot's masks, most needed first, and how many masks were eligible.
    """
    keys = []
    for i, (track_id, area, label) in enumerate(zip(snapshot.track_ids.tolist(), snapshot.areas.tolist(), snapshot.labels)):
        stamp = float(np.fmax(snapshot.open_vocab_stamps[i], labelled.get(track_id, math.nan)))  # NaN = none
        fresh = not math.isnan(stamp) and (config.relabel_after <= 0 or now - stamp < config.relabel_after)
        if track_id <= 0 or area <= 0 or area < config.min_area or fresh:  # id 0: an empty mask, no track
            continue
        if math.isnan(stamp) or label.source == LabelSource.UNIDENTIFIED:
            keys.append((0, 0, -area, i))
        else:
            keys.append((1, math.floor(label.score * 10), -area, i))
    keys.sort()
    chosen = [k[-1] for k in keys[: config.max_masks_per_snapshot]]
    return np.array(chosen, dtype=np.int64), len(keys)


class OpenVocabWorker:
    """Runs a labeler on snapshots in a background thread and applies results to tracks.

    Args:
        labeler: an :class:`~sfs_core.open_vocab.labeler.OpenVocabLabeler` (or anything with
            ``batch_size`` and ``label(image, masks, closed_set_candidates)``).
        sink: receives ``apply_open_vocab(track_id, labels, snapshot.stamp)``; the tracker.
        config: the ``open_vocab`` section (rate, queue, selection, ``threads``, ``duty_cycle``).
        clock: monotonic seconds; the same clock as ``Snapshot.stamp``.

    Stopping is cooperative: :meth:`stop` returns after the labeler call in progress (one
    caption batch at most), or False when ``timeout`` passed first.

    >>> worker = OpenVocabWorker(labeler, tracker, config.open_vocab)  # doctest: +SKIP
    >>> worker.start(); worker.submit(Snapshot.from_frame(rgb, masks, tracks)); worker.stop()  # doctest: +SKIP
    """

    def __init__(self, labeler: Labeler, sink: LabelSink, config: OpenVocabConfig,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.labeler = labeler
        self.sink = sink
        self.config = config
        self.clock = clock
        self._cond = threading.Condition()
        self._queue: deque[Snapshot] = deque()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_accept = -math.inf
        self._labelled: dict[int, float] = {}
        self._stats = WorkerStats()
        self._age_sum = 0.0

    # ---- control ----------------------------------------------------------------------------------
    def start(self) -> OpenVocabWorker:
        if self.running:
            return self
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="sfs-open-vocab", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> bool:
        """Ask the thread to finish and join it; True when it has ended within ``timeout``."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                return False
            self._thread = None
        return True

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def __enter__(self) -> OpenVocabWorker:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ---- per-frame path ---------------------------------------------------------------------------
    def wants_snapshot(self, now: float | None = None) -> bool:
        """True when :meth:`submit` would accept a snapshot now (saves building one)."""
        now = self.clock() if now is None else now
        return now - self._last_accept >= 1.0 / self.config.max_rate

    def submit(self, snapshot: Snapshot) -> bool:
        """Offer a snapshot; never blocks. Returns False when rate-limited or empty."""
        now = self.clock()
        self._restart_if_crashed()
        with self._cond:
            self._stats.snapshots_submitted += 1
            if len(snapshot) == 0:
                return False
            if not self.wants_snapshot(now):
                self._stats.snapshots_rate_limited += 1
                return False
            self._last_accept = now
            self._stats.snapshots_accepted += 1
            while len(self._queue) >= self.config.queue_size:
                self._drop(self._queue.popleft())
            self._queue.append(snapshot)
            self._cond.notify()
            return True

    def stats(self) -> WorkerStats:
        """A consistent copy of the counters."""
        with self._cond:
            s = self._stats
            return replace(s, running=self.running, queued=len(self._queue),
                           masks_per_second=s.masks_labelled / s.busy_seconds if s.busy_seconds > 0 else 0.0)

    def _restart_if_crashed(self) -> None:
        """Start the thread again when it died of an error (not when it was stopped); counted in
        ``restarts``. Called from the per-frame path, so a crash costs one snapshot at most."""
        thread = self._thread
        if thread is None or thread.is_alive() or self._stop.is_set():
            return
        with self._cond:
            self._stats.restarts += 1
        log.error("the open-vocabulary worker thread died (%s); restarting it", self._stats.last_error)
        self._thread = None
        self.start()

    # ---- worker thread ----------------------------------------------------------------------------
    def _drop(self, snapshot: Snapshot) -> None:
        self._stats.snapshots_dropped += 1
        self._stats.tracks_rescheduled += len(snapshot)

    def _next(self) -> Snapshot | None:
        with self._cond:
            while not self._queue and not self._stop.is_set():
                self._cond.wait(0.1)
            if self._stop.is_set():
                return None
            snapshot = self._queue.popleft()
            if self.clock() - snapshot.stamp > self.config.max_snapshot_age:
                self._drop(snapshot)
                return None
            return snapshot

    def _run(self) -> None:
        if self.config.threads > 0:
            torch.set_num_threads(self.config.threads)  # per thread with OpenMP: the per-frame path keeps its own
        try:
            while not self._stop.is_set():
                snapshot = self._next()
                if snapshot is not None:
                    self._process(snapshot)
        except Exception as err:  # a bug outside the labeler: the next submit() restarts the thread
            log.exception("open-vocabulary worker thread crashed")
            with self._cond:
                self._stats.errors += 1
                self._stats.last_error = f"{type(err).__name__}: {err}"

    def _process(self, snapshot: Snapshot) -> None:
        now = self.clock()
        present = set(snapshot.track_ids.tolist())
        self._labelled = {t: s for t, s in self._labelled.items() if t in present}  # ids are never reused
        chosen, eligible = select_tracks(snapshot, now, self._labelled, self.config)
        with self._cond:
            self._stats.backlog = eligible - len(chosen)
        step = max(1, int(self.labeler.batch_size))
        for start in range(0, len(chosen), step):
            if self._stop.is_set():
                break
            part = chosen[start : start + step]
            t0 = time.perf_counter()
            try:
                results = self.labeler.label(snapshot.image, snapshot.masks[torch.as_tensor(part)],
                                             [snapshot.closed_set_candidates[i] for i in part])
            except Exception as err:  # keep the thread alive; these tracks stay eligible
                log.exception("open-vocabulary labeler failed")
                with self._cond:
                    self._stats.errors += 1
                    self._stats.last_error = f"{type(err).__name__}: {err}"
                continue
            busy = time.perf_counter() - t0
            self._apply(snapshot, part, results, busy)
            if self.config.duty_cycle < 1.0:
                self._stop.wait(busy * (1.0 / self.config.duty_cycle - 1.0))
        with self._cond:
            self._stats.snapshots_processed += 1

    def _apply(self, snapshot: Snapshot, part: np.ndarray, results: list[OpenVocabLabels], busy: float) -> None:
        applied = dropped = 0
        for i, labels in zip(part.tolist(), results):
            track_id = int(snapshot.track_ids[i])
            self._labelled[track_id] = snapshot.stamp
            if self.sink.apply_open_vocab(track_id, labels, snapshot.stamp):
                applied += 1
            else:
                dropped += 1
        age = self.clock() - snapshot.stamp
        with self._cond:
            s = self._stats
            s.masks_labelled += len(results)
            s.busy_seconds += busy
            s.results_applied += applied
            s.results_dropped += dropped
            if applied:
                s.result_age_last = age
                self._age_sum += age * applied
                s.result_age_mean = self._age_sum / s.results_applied
