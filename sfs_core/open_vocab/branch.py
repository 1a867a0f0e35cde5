"""The open-vocabulary branch as the per-frame path sees it: one call per frame.

:class:`OpenVocabBranch` ties a :class:`~sfs_core.tracking.Tracker` to a labeler, either through
the asynchronous :class:`~sfs_core.open_vocab.worker.OpenVocabWorker` (node, bag replay) or
synchronously (``sfs segment``: a single image has no later frame to show a late label on).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from sfs_core.config import OpenVocabConfig
from sfs_core.open_vocab.worker import Labeler, OpenVocabWorker, Snapshot, WorkerStats, select_tracks
from sfs_core.tracking import FrameTracks, Tracker


class OpenVocabBranch:
    """Hands frames to the labeler and brings its results back to the tracks.

    Args:
        config: the ``open_vocab`` section.
        tracker: the per-frame path's tracker (results are applied to it).
        device, cache_dir: for the labeler built from ``config`` when ``labeler`` is None.
        labeler: a ready labeler (tests, or sharing one between pipelines).
        synchronous: label in :meth:`observe` itself instead of on the worker thread.

    >>> tracks = pipeline.tracker.update(masks, class_ids, confidences)  # doctest: +SKIP
    >>> tracks = branch.observe(rgb, masks, tracks, closed_set_candidates)  # doctest: +SKIP
    """

    def __init__(self, config: OpenVocabConfig, tracker: Tracker, device: str = "cpu",
                 cache_dir: str | Path = "~/.cache/sfs_ros", labeler: Labeler | None = None, synchronous: bool = False) -> None:
        if labeler is None:
            from sfs_core.open_vocab.labeler import OpenVocabLabeler

            labeler = OpenVocabLabeler(config, device, cache_dir)
        self.config = config
        self.tracker = tracker
        self.labeler = labeler
        self.synchronous = synchronous
        self.worker = None if synchronous else OpenVocabWorker(labeler, tracker, config).start()

    def observe(self, image: np.ndarray, masks: torch.Tensor, tracks: FrameTracks,
                closed_set_candidates: Sequence[Sequence[str]] | None = None, stamp: float | None = None) -> FrameTracks:
        """Offer this frame (``tracks`` from ``tracker.update(masks, ...)``).

        Asynchronous: submits a snapshot when the rate allows and returns ``tracks`` unchanged
        (results show from a later frame). Synchronous: labels every eligible track now and
        returns ``tracks`` with the fused labels.
        """
        if self.worker is not None:
            if len(tracks) and self.worker.wants_snapshot():
                self.worker.submit(Snapshot.from_frame(image, masks, tracks, closed_set_candidates, stamp))
            return tracks
        snapshot = Snapshot.from_frame(image, masks, tracks, closed_set_candidates, stamp)
        every = replace(self.config, max_masks_per_snapshot=max(1, len(tracks)))
        chosen, _ = select_tracks(snapshot, time.monotonic(), {}, every)
        step = max(1, int(self.labeler.batch_size))
        for start in range(0, len(chosen), step):
            part = chosen[start : start + step]
            results = self.labeler.label(image, masks[torch.as_tensor(part)], [snapshot.closed_set_candidates[i] for i in part])
            for i, labels in zip(part.tolist(), results):
                self.tracker.apply_open_vocab(int(tracks.track_ids[i]), labels, snapshot.stamp)
        return self.tracker.refresh(tracks)

    def stats(self) -> WorkerStats:
        """The worker's counters (zeros in synchronous mode)."""
        return self.worker.stats() if self.worker is not None else WorkerStats(result_age_last=math.nan)

    def close(self, timeout: float = 10.0) -> bool:
        """Stop the worker thread; True when it ended within ``timeout``."""
        return self.worker.stop(timeout) if self.worker is not None else True

