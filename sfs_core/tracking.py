"""Mask tracking across frames: stable track ids, and labels that live on tracks.

Each frame's masks are matched to the live tracks by mask IoU. All pairs are scored at once (one
exact int8 matrix product of the flattened masks, :mod:`sfs_core.overlap`) and assigned with the Hungarian method
(``scipy.optimize.linear_sum_assignment``); pairs below ``iou_threshold`` stay unmatched. A track
that goes unmatched for more than ``max_missed`` consecutive frames expires. Track ids start at 1,
only grow, and are never reused.

A track carries its labels: the latest closed-set vote, the latest open-vocabulary result (which
can arrive seconds late, from another thread, through :meth:`Tracker.apply_open_vocab`) and the
label fused from both by :func:`sfs_core.open_vocab_fusion.fuse_labels`.

>>> import torch
>>> tracker = Tracker(TrackerConfig(), LabelTable(["person"]))
>>> masks = torch.zeros(1, 12, 16, dtype=torch.bool); masks[0, 2:8, 2:8] = True
>>> tracker.update(masks).track_ids.tolist(), tracker.update(masks.roll(1, dims=2)).track_ids.tolist()
([1], [1])
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import torch
import torch.nn.functional as F

from sfs_core.config import TrackerConfig
from sfs_core.labels import LabelTable
from sfs_core.open_vocab_fusion import ClosedSetLabel, FusionThresholds, OpenVocabLabels, TrackLabel, fuse_labels
from sfs_core.overlap import as_int8, overlap_counts, pixel_counts


@dataclass
class Track:
    """One object followed across frames. ``mask`` is its latest matched mask, ``(h, w)`` bool at
    the tracker's resolution on the CPU; ``area`` is that mask's share of the frame."""

    track_id: int
    mask: torch.Tensor
    area: float
    first_frame: int
    last_frame: int
    label: TrackLabel
    hits: int = 1
    missed: int = 0
    closed_set: ClosedSetLabel | None = None
    open_vocab: OpenVocabLabels | None = None
    open_vocab_stamp: float | None = None  # stamp of the snapshot the open-vocab result came from


@dataclass
class FrameTracks:
    """The tracker's answer for one frame, aligned with the frame's ``N`` masks.

    Attributes:
        frame_index: the tracker's frame counter (0 for the first frame).
        track_ids: ``(N,)`` int64, the track of each mask (>= 1, unique within the frame), or 0
            for a mask that is empty at the tracker's resolution (it gets no track).
        new: ``(N,)`` bool, the track was created in this frame.
        labels: ``N`` fused labels (closed set of this frame + the track's open-vocab result).
        areas: ``(N,)`` float64, each mask's share of the frame in ``[0, 1]``.
        open_vocab_stamps: ``(N,)`` float64, stamp of the track's open-vocab result, NaN if none.
        expired: ids of the tracks that expired in this frame.
    """

    frame_index: int
    track_ids: np.ndarray
    new: np.ndarray
    labels: list[TrackLabel]
    areas: np.ndarray
    open_vocab_stamps: np.ndarray
    expired: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.track_ids.shape[0])

    def class_ids(self) -> np.ndarray:
        """``(N,)`` int64 label-table ids of the fused labels."""
        return np.array([label.class_id for label in self.labels], dtype=np.int64)


def mask_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU of every pair: ``a`` ``(N, h, w)`` and ``b`` ``(M, h, w)`` bool on one device give
    ``(N, M)`` float32 (0 where both masks are empty). One matmul of the flattened masks."""
    fa, fb = as_int8(a), as_int8(b)
    return _iou(fa, pixel_counts(fa), fb, pixel_counts(fb))




def _iou(fa: torch.Tensor, pa: torch.Tensor, fb: torch.Tensor, pb: torch.Tensor) -> torch.Tensor:
    """:func:`mask_iou` of flattened int8 0/1 masks ``(N, P)``, ``(M, P)`` with their pixel counts."""
    inter = overlap_counts(fa, fb)
    union = pa[:, None] + pb[None, :] - inter
    return torch.where(union > 0, inter / union.clamp(min=1.0), torch.zeros_like(inter))


def match(iou: torch.Tensor, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Hungarian assignment maximising total IoU over pairs with ``iou >= threshold``.

    Returns ``(rows, cols)`` int64 index arrays of the matched pairs.
    """
    from scipy.optimize import linear_sum_assignment

    if iou.numel() == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    score = iou.cpu().numpy().astype(np.float64)
    score[score < threshold] = 0.0
    rows, cols = linear_sum_assignment(score, maximize=True)
    keep = score[rows, cols] >= threshold
    return rows[keep].astype(np.int64), cols[keep].astype(np.int64)


class Tracker:
    """Associates each frame's masks with tracks and keeps their labels. Thread-safe: the
    per-frame path calls :meth:`update`; the open-vocabulary worker calls
    :meth:`apply_open_vocab` from its own thread.

    Input masks are ``(N, h, w)`` bool on any device (``MaskResult.masks``); they are reduced to
    at most ``max_side`` pixels on the long side and kept on the CPU. The first frame fixes the
    tracker's resolution; later masks of another size but the same aspect ratio are resized to
    it, and masks of another aspect ratio raise ``ValueError`` (call :meth:`reset` for a new camera).
    """

    def __init__(self, config: TrackerConfig | None = None, label_table: LabelTable | None = None,
                 thresholds: FusionThresholds | None = None) -> None:
        self.config = config or TrackerConfig()
        self.label_table = label_table or LabelTable()
        self.thresholds = thresholds or FusionThresholds()
        self._lock = threading.RLock()
        self._tracks: list[Track] = []
        self._flat = torch.zeros(0, 0, dtype=torch.int8)  # (M, P) int8 0/1 masks of self._tracks, flattened
        self._pixels = torch.zeros(0)  # (M,) their pixel counts
        self._next_id = 1
        self._frame = -1
        self._size: tuple[int, int] | None = None

    # ---- per-frame path ------------------------------------------------------------------------
    def update(
        self,
        masks: torch.Tensor,
        class_ids: Sequence[int] | torch.Tensor | np.ndarray | None = None,
        confidences: Sequence[float] | torch.Tensor | np.ndarray | None = None,
        flat: torch.Tensor | None = None,
    ) -> FrameTracks:
        """Match this frame's masks to tracks, create tracks for the rest, expire stale ones.

        Args:
            masks: ``(N, h, w)`` bool.
            class_ids: ``(N,)`` the closed-set winner of each mask (label-table ids, even when
                below the confidence threshold), or None when there is no closed set.
            confidences: ``(N,)`` the winners' confidences in ``[0, 1]``.
            flat: ``(N, h*w)`` int8 0/1 ``masks`` flattened (:func:`sfs_core.overlap.as_int8`), when
                the caller already has it; used when ``masks`` are at the tracker's resolution.

        Returns:
            :class:`FrameTracks` aligned with ``masks``.
        """
        if masks.ndim != 3 or masks.dtype != torch.bool:
            raise ValueError(f"expected (N, h, w) bool masks, got {tuple(masks.shape)} {masks.dtype}")
        n = masks.shape[0]
        closed = self._closed_set_labels(n, class_ids, confidences)
        with self._lock:
            self._frame += 1
            frame = self._frame
            work = self._to_work_size(masks)
            if flat is None or tuple(work.shape[1:]) != tuple(masks.shape[1:]) or flat.shape[0] != n:
                flat = as_int8(work)  # (N, P), a view of the bool masks
            flat = flat.cpu()
            pixels = pixel_counts(flat)
            areas = (pixels / max(1, flat.shape[1])).double().numpy()
            nonempty = (pixels > 0).numpy()  # empty masks get no track
            valid = torch.from_numpy(np.flatnonzero(nonempty))
            # Row gathers with index_select: advanced indexing of int8 rows is ~30x slower.
            candidates = flat if valid.numel() == n else flat.index_select(0, valid)  # no copy when none is empty
            iou = _iou(candidates, pixels[valid], self._flat, self._pixels)
            rows, cols = match(iou, self.config.iou_threshold)
            rows = valid[torch.from_numpy(rows)].numpy()
            track_of = np.full(n, -1, dtype=np.int64)
            track_of[rows] = cols
            matched = np.zeros(len(self._tracks), dtype=bool)
            matched[cols] = True

            out: list[Track | None] = []
            new_rows: list[int] = []
            for i in range(n):
                if track_of[i] >= 0:
                    track = self._tracks[track_of[i]]
                    track.mask, track.area, track.last_frame = work[i], float(areas[i]), frame
                    track.hits, track.missed = track.hits + 1, 0
                elif nonempty[i]:
                    track = Track(self._next_id, work[i], float(areas[i]), frame, frame, label=self._fuse(None, None))
                    self._next_id += 1
                    new_rows.append(i)
                else:
                    out.append(None)
                    continue
                track.closed_set = closed[i]
                track.label = self._fuse(track.closed_set, track.open_vocab)
                out.append(track)

            # Tracks matched now take this frame's mask; unmatched ones age and may expire.
            self._flat.numpy()[cols] = flat.numpy()[rows]  # numpy row copies: memcpy speed (CPU tensors)
            self._pixels.numpy()[cols] = pixels.numpy()[rows]
            for track, seen in zip(self._tracks, matched):
                track.missed = 0 if seen else track.missed + 1
            keep = [t.missed <= self.config.max_missed for t in self._tracks]
            expired = [t.track_id for t, k in zip(self._tracks, keep) if not k]
            self._tracks = [t for t, k in zip(self._tracks, keep) if k] + [out[i] for i in new_rows]
            if expired:
                keep_index = torch.from_numpy(np.flatnonzero(keep))
                self._flat, self._pixels = self._flat.index_select(0, keep_index), self._pixels.index_select(0, keep_index)
            if new_rows:
                new_index = torch.tensor(new_rows, dtype=torch.long)
                self._flat = torch.cat([self._flat, flat.index_select(0, new_index)])
                self._pixels = torch.cat([self._pixels, pixels.index_select(0, new_index)])
            return FrameTracks(
                frame_index=frame,
                track_ids=np.array([t.track_id if t else 0 for t in out], dtype=np.int64),
                new=np.array([t is not None and t.first_frame == frame for t in out], dtype=bool),
                labels=[t.label if t else self._fuse(c, None) for t, c in zip(out, closed)],
                areas=areas,
                open_vocab_stamps=np.array(
                    [math.nan if t is None or t.open_vocab_stamp is None else t.open_vocab_stamp for t in out],
                    dtype=np.float64,
                ),
                expired=expired,
            )

    # ---- late results (any thread) -----------------------------------------------------------
    def apply_open_vocab(self, track_id: int, labels: OpenVocabLabels, stamp: float) -> bool:
        """Attach an open-vocabulary result to a live track and re-fuse its label.

        ``stamp`` is the stamp of the snapshot the result was computed from; a result older than
        the one the track already holds is ignored. Returns False (result dropped) when the track
        has expired, or the result is older.
        """
        with self._lock:
            track = self.get(track_id)
            if track is None or (track.open_vocab_stamp is not None and stamp < track.open_vocab_stamp):
                return False
            track.open_vocab, track.open_vocab_stamp = labels, stamp
            track.label = self._fuse(track.closed_set, labels)
            return True

    # ---- queries --------------------------------------------------------------------------------
    def refresh(self, tracks: FrameTracks) -> FrameTracks:
        """``tracks`` with the labels and open-vocab stamps its tracks carry now (after results
        were applied since :meth:`update`); an expired track keeps its old entry."""
        with self._lock:
            live = {t.track_id: t for t in self._tracks}
            now = [live.get(int(i)) for i in tracks.track_ids.tolist()]
            labels = [t.label if t is not None else old for t, old in zip(now, tracks.labels)]
            stamps = np.array(
                [old if t is None else (math.nan if t.open_vocab_stamp is None else t.open_vocab_stamp)
                 for t, old in zip(now, tracks.open_vocab_stamps.tolist())],
                dtype=np.float64,
            )
        return replace(tracks, labels=labels, open_vocab_stamps=stamps)

    def get(self, track_id: int) -> Track | None:
        """The live track ``track_id`` (its fields may change under a concurrent update)."""
        with self._lock:
            return next((t for t in self._tracks if t.track_id == track_id), None)

    @property
    def tracks(self) -> list[Track]:
        """The live tracks (matched recently enough), oldest first."""
        with self._lock:
            return sorted(self._tracks, key=lambda t: t.track_id)

    @property
    def frame_index(self) -> int:
        return self._frame

    def __len__(self) -> int:
        with self._lock:
            return len(self._tracks)

    def reset(self) -> None:
        """Forget all tracks and the resolution (ids keep growing: they are never reused)."""
        with self._lock:
            self._tracks, self._size = [], None
            self._flat, self._pixels = torch.zeros(0, 0, dtype=torch.int8), torch.zeros(0)

    # ---- internals ------------------------------------------------------------------------------
    def _fuse(self, closed: ClosedSetLabel | None, open_vocab: OpenVocabLabels | None) -> TrackLabel:
        return fuse_labels(closed, open_vocab, self.thresholds, self.label_table)

    def _closed_set_labels(self, n: int, class_ids, confidences) -> list[ClosedSetLabel | None]:
        if class_ids is None:
            return [None] * n
        ids = torch.as_tensor(class_ids).reshape(-1).tolist()
        conf = torch.as_tensor(confidences if confidences is not None else [1.0] * n).reshape(-1).tolist()
        if len(ids) != n or len(conf) != n:
            raise ValueError(f"{n} masks but {len(ids)} class ids and {len(conf)} confidences")
        names = self.label_table.names
        return [ClosedSetLabel(int(c), names[int(c)], float(s)) for c, s in zip(ids, conf)]

    def _to_work_size(self, masks: torch.Tensor) -> torch.Tensor:
        """``(N, h', w')`` bool on the CPU at the tracker's resolution."""
        h, w = masks.shape[1:]
        if self._size is None:
            scale = min(1.0, self.config.max_side / max(h, w))
            self._size = (max(1, round(h * scale)), max(1, round(w * scale)))
            self._flat = torch.zeros(0, self._size[0] * self._size[1], dtype=torch.int8)
        th, tw = self._size
        if abs(h / w - th / tw) > 0.02 * th / tw + 1.0 / min(th, tw):
            raise ValueError(
                f"mask resolution {h}x{w} does not match the tracker's aspect ratio ({th}x{tw}); "
                "call Tracker.reset() when the camera changes"
            )
        masks = masks.cpu()
        if masks.shape[0] == 0:
            return masks.new_zeros((0, th, tw))
        if (h, w) == (th, tw):
            return masks.clone()
        # Area averaging keeps any covered cell (thin masks survive a reduction); nearest upsamples.
        mode = "area" if h >= th and w >= tw else "nearest-exact"
        return F.interpolate(masks[:, None].float(), size=(th, tw), mode=mode)[:, 0] > 0
