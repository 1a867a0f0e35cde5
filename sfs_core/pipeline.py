"""The per-frame Semantic-Fast-SAM path: masks, closed-set labels, fusion, one semantic map."""

from __future__ import annotations

import logging
import math
import time

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from sfs_core.config import ConfigError, PipelineConfig
from sfs_core.fusion import Votes, decide_closed_set, paint_instances, paint_order, vote
from sfs_core.labels import UNLABELED_ID, LabelSource, LabelTable
from sfs_core.open_vocab_fusion import FusionThresholds
from sfs_core.overlap import as_int8
from sfs_core.result import MaskRecord, SemanticResult
from sfs_core.runtime import configure_runtime
from sfs_core.tracking import Tracker
from sfs_core.upsample import nearest_upsample

log = logging.getLogger(__name__)
#: ``masks.imgsz`` is never halved below this by the out-of-memory back-off.
MIN_BACKOFF_IMGSZ = 160


def check_image(image: np.ndarray) -> None:
    """Raise ``ValueError`` unless ``image`` is a non-empty ``(H, W, 3)`` uint8 array."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 numpy image, got {getattr(image, 'dtype', type(image))}")
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) RGB image, got shape {image.shape}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"empty image {image.shape[1]}x{image.shape[0]}")


def fit_to_pixels(image: np.ndarray, max_pixels: int) -> np.ndarray:
    """``image`` downscaled (aspect kept, area interpolation) to at most ``max_pixels`` pixels;
    returned unchanged when it already fits or ``max_pixels`` is 0 (no limit).

    >>> fit_to_pixels(np.zeros((400, 1000, 3), np.uint8), 1000).shape
    (20, 50, 3)
    """
    height, width = image.shape[:2]
    if max_pixels <= 0 or height * width <= max_pixels:
        return image
    scale = math.sqrt(max_pixels / (height * width))
    new_h, new_w = max(1, int(height * scale)), max(1, int(width * scale))
    while new_h * new_w > max_pixels:  # int() rounding can still leave one row too many
        new_h, new_w = max(1, new_h - (new_h >= new_w)), max(1, new_w - (new_w > new_h))
    return cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_AREA)


def resize_nearest(labels: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Nearest (pixel-centre aligned) resize of an integer ``(h, w)`` map."""
    if tuple(labels.shape) == tuple(size):
        return labels
    out = F.interpolate(labels[None, None].float(), size=size, mode="nearest-exact")[0, 0]
    return out.to(labels.dtype)


class Pipeline:
    """FastSAM masks labelled by one or more closed-set segmenters.

    Input: one ``(H, W, 3)`` uint8 **RGB** frame. Output: :class:`SemanticResult` at ``(H, W)``.
    The node and the CLI both call :meth:`process`; nothing here knows about ROS.

    >>> pipeline = Pipeline(load_config("config/sfs.yaml"))  # doctest: +SKIP
    >>> result = pipeline.process(rgb)  # doctest: +SKIP
    >>> result.label_map.dtype, result.masks[0].label  # doctest: +SKIP
    (dtype('uint16'), 'person')
    """

    def __init__(
        self, config: PipelineConfig, label_table: LabelTable | None = None,
        synchronous_open_vocab: bool = False, independent_frames: bool = False,
    ) -> None:
        """Load every model.

        Args:
            synchronous_open_vocab: label in :meth:`process` itself (deterministic, slow) instead
                of on the worker thread (a live camera: labels land on tracks a few frames later).
            independent_frames: frames are unrelated images (``sfs segment``, dataset
                evaluation): nothing is tracked across them, and open-vocab labelling is synchronous.
        """
        config.validate()
        configure_runtime(config.offline, config.cache_dir, config.threads)
        from sfs_core.closed_set import ClosedSetSegmenter
        from sfs_core.masks import MaskGenerator

        self.config = config
        self.device = torch.device(config.device)
        self.label_table = label_table or LabelTable()
        t0 = time.perf_counter()
        runtime = config.runtime()
        with _load_errors_name("masks.model", config.masks.model):
            self.mask_generator = MaskGenerator(config.masks, **runtime)
        self.segmenters = []
        for c in config.closed_set:
            with _load_errors_name(f"closed_set.{c.name}.model", c.model):
                self.segmenters.append(ClosedSetSegmenter(c, **runtime))
        #: Times a CUDA out-of-memory error made :meth:`process` halve ``masks.imgsz``.
        self.oom_backoffs = 0
        # Model class id -> label-table id, one lookup tensor per segmenter.
        self.lookups = [torch.from_numpy(self.label_table.lookup(s.vocabulary)).to(self.device) for s in self.segmenters]
        self.fill_lookup = self._fill_lookup(config.fusion.fill_classes)
        self.label_table.limit_growth(config.open_vocab.max_labels)  # open-vocabulary names, on top of the closed sets'
        self.tracker = Tracker(config.tracking, self.label_table, FusionThresholds.from_config(config))
        self._frame_size: tuple[int, int] | None = None
        self.independent_frames = independent_frames
        self.open_vocab = None
        if config.open_vocab.enabled:
            from sfs_core.open_vocab.branch import OpenVocabBranch

            self.open_vocab = OpenVocabBranch(
                config.open_vocab, self.tracker, config.open_vocab.device or config.device, config.cache_dir,
                synchronous=synchronous_open_vocab or independent_frames,
            )
        self.load_seconds = time.perf_counter() - t0

    def _fill_lookup(self, names: list[str]) -> torch.Tensor | None:
        """Label-table id -> the id the fill paints: itself for ``fusion.fill_classes``, else
        ``unlabeled``. None when every class may fill (an empty list)."""
        if not names:
            return None
        segmenter_ids = self.lookups[0]  # table ids of the first segmenter's classes
        ids = [self.label_table.id_of(n) for n in names]
        missing = [n for n, i in zip(names, ids) if i is None or not bool((segmenter_ids == i).any())]
        if missing:
            known = self.segmenters[0].vocabulary
            raise ConfigError("fusion.fill_classes", f"{missing} are not classes of the first segmenter "
                              f"'{self.config.closed_set[0].name}' ({len(known)} classes: {', '.join(known[:8])}"
                              f"{', ...' if len(known) > 8 else ''})")
        lookup = torch.full((int(segmenter_ids.max()) + 1,), UNLABELED_ID, dtype=segmenter_ids.dtype, device=self.device)
        allowed = torch.tensor(ids, dtype=segmenter_ids.dtype, device=self.device)
        lookup[allowed] = allowed
        return lookup

    def close(self, timeout: float = 5.0) -> bool:
        """Stop the open-vocabulary worker; True when it ended within ``timeout``."""
        return self.open_vocab.close(timeout) if self.open_vocab is not None else True

    def warmup(self, size: tuple[int, int] = (480, 640), runs: int = 1) -> float:
        """Run ``runs`` frames of noise through every model; returns the seconds it took."""
        t0 = time.perf_counter()
        frame = np.random.default_rng(0).integers(0, 255, (*size, 3), dtype=np.uint8)
        for _ in range(runs):
            self.process(frame)
        return time.perf_counter() - t0

    def set_thresholds(self, conf: float | None = None, iou: float | None = None, min_confidence: float | None = None) -> None:
        """Change thresholds between frames (validated; the next frame uses them)."""
        for value in (conf, iou, min_confidence):
            if value is not None and not 0.0 <= value <= 1.0:
                raise ValueError(f"thresholds must be in [0, 1], got {value}")
        if conf is not None:
            self.config.masks.conf = conf
        if iou is not None:
            self.config.masks.iou = iou
        if min_confidence is not None:
            self.config.fusion.min_confidence = min_confidence
            self.tracker.thresholds = FusionThresholds.from_config(self.config)

    def fit_input(self, image: np.ndarray) -> np.ndarray:
        """``image`` downscaled to at most ``max_input_pixels`` (see :func:`fit_to_pixels`).

        :meth:`process` applies it itself, so results of a larger frame come at the downscaled
        size; callers that draw on the input (the node's overlay) call it first.
        """
        return fit_to_pixels(image, self.config.max_input_pixels)

    def process(self, image: np.ndarray) -> SemanticResult:
        """Segment one ``(H, W, 3)`` uint8 RGB frame (downscaled first if above ``max_input_pixels``).

        A CUDA out-of-memory error halves ``masks.imgsz`` (not below :data:`MIN_BACKOFF_IMGSZ`)
        and retries the frame once; if it fails again (or cannot shrink) the error propagates
        and the caller skips the frame. The smaller size stays for later frames.
        """
        check_image(image)
        image = self.fit_input(image)
        try:
            return self._process(image)
        except torch.cuda.OutOfMemoryError as exc:
            if not self._back_off(exc):
                raise
        return self._process(image)

    def _back_off(self, exc: BaseException) -> bool:
        """After an out-of-memory error: free cached memory and halve ``masks.imgsz``; False when
        it is already at the floor."""
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        smaller = max(MIN_BACKOFF_IMGSZ, (self.config.masks.imgsz // 2) // 32 * 32)
        if smaller >= self.config.masks.imgsz:
            log.error("out of memory at masks.imgsz=%d (the floor): frame skipped", self.config.masks.imgsz)
            return False
        log.warning("out of memory (%s): masks.imgsz %d -> %d, retrying the frame",
                    str(exc).splitlines()[0] if str(exc) else type(exc).__name__, self.config.masks.imgsz, smaller)
        self.config.masks.imgsz = smaller
        self.tracker.reset()  # masks change resolution: start tracks afresh
        self._frame_size = None
        self.oom_backoffs += 1
        return True

    @torch.inference_mode()
    def _process(self, image: np.ndarray) -> SemanticResult:
        timings: dict[str, float] = {}
        t_start = time.perf_counter()
        height, width = image.shape[:2]
        # The closed set runs between FastSAM's forward and its post-processing: right after a
        # forward, as the networks run alone, it is ~4 ms a frame faster here than after the
        # post-processing has been through the caches (bench: per-frame over forwards 1.13 -> 1.08).
        raw = self.mask_generator.infer(image, timings)
        class_maps = [lookup[seg(image, timings).class_map] for seg, lookup in zip(self.segmenters, self.lookups)]
        masks = self.mask_generator.decode(raw, timings)

        # Everything below runs at mask (prototype) resolution; one upsample at the end.
        t0 = time.perf_counter()
        work_size = tuple(masks.masks.shape[1:])
        num_classes = len(self.label_table)
        flat = as_int8(masks.masks)  # (N, h*w) int8 view, shared by voting and tracking
        votes: list[Votes] = [vote(masks.masks, resize_nearest(cm, work_size), num_classes, flat) for cm in class_maps]
        decision = decide_closed_set(votes, self.config.fusion.min_confidence)
        t1 = time.perf_counter()
        if self.independent_frames or self._frame_size != (height, width):  # nothing to carry over
            self.tracker.reset()
            self._frame_size = (height, width)
        tracks = self.tracker.update(masks.masks, decision.winners, decision.confidences, flat=flat)
        t2 = time.perf_counter()
        if self.open_vocab is not None:
            tracks = self.open_vocab.observe(image, masks.masks, tracks, closed_set_candidates(votes, self.label_table.names))
            timings["open_vocab"] = (time.perf_counter() - t2) * 1e3
        t3 = time.perf_counter()
        scores = torch.tensor([label.score for label in tracks.labels], dtype=torch.float32, device=self.device)
        areas = votes[0].counts.sum(1)  # pixels per mask (each has one class)
        instances = paint_instances(masks.masks, paint_order(scores, areas))
        timings["tracking"] = (t2 - t1) * 1e3
        timings["fusion"] = (t1 - t0 + time.perf_counter() - t3) * 1e3

        t0 = time.perf_counter()
        fill = class_maps[0] if self.config.fusion.fill_uncovered else None
        if fill is not None and self.fill_lookup is not None:
            fill = self.fill_lookup[fill]
        label_map, instance_map, visible, stats = compose_maps(instances, tracks.class_ids(), fill, (height, width))
        records = self._records(stats, visible.tolist(), tracks, masks.scores[torch.from_numpy(visible)].tolist())
        result = SemanticResult(
            label_map=label_map, instance_map=instance_map, masks=records, label_table=self.label_table, timings=timings,
        )
        timings["paint"] = (time.perf_counter() - t0) * 1e3
        timings["total"] = (time.perf_counter() - t_start) * 1e3
        return result

    def _records(self, stats: dict[str, np.ndarray], visible: list[int], tracks, mask_scores: list[float]) -> list[MaskRecord]:
        rows = zip(visible, mask_scores, stats["bbox"].tolist(), stats["area"].tolist(), stats["centroid"].tolist())
        records = []
        for i, mask_score, bbox, area, centroid in rows:
            label = tracks.labels[i]
            records.append(MaskRecord(
                id=int(tracks.track_ids[i]), label=label.name, class_id=label.class_id, score=label.score,
                source=LabelSource(label.source), mask_score=mask_score, bbox=tuple(bbox), area=area,
                centroid=tuple(centroid), candidates=list(label.candidates), candidate_scores=list(label.candidate_scores),
            ))
        return records


class _load_errors_name:
    """Turn an unexpected error while loading ``model`` (a corrupt checkpoint, a foreign file)
    into a one-line :class:`ConfigError` naming ``param``, so start-up fails with one clear line."""

    def __init__(self, param: str, model: str) -> None:
        self.param, self.model = param, model

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, exc, _tb) -> bool:
        if exc is None or isinstance(exc, (ConfigError, KeyboardInterrupt, SystemExit)) or not isinstance(exc, Exception):
            return False
        first_line = (str(exc).strip().splitlines() or [""])[0][:300]
        raise ConfigError(self.param, f"cannot load model {self.model}: {type(exc).__name__}: {first_line}") from exc


def closed_set_candidates(votes: list[Votes], names: list[str], per_segmenter: int = 2) -> list[list[str]]:
    """Per mask, the names of each segmenter's top classes by pixel count (SSA's class proposals)."""
    tops = [v.counts.topk(min(per_segmenter, v.counts.shape[1]), dim=1) for v in votes]
    per_mask: list[list[str]] = [[] for _ in range(votes[0].counts.shape[0])] if votes else []
    for top in tops:
        for candidates, counts, ids in zip(per_mask, top.values.tolist(), top.indices.tolist()):
            candidates.extend(names[c] for c, n in zip(ids, counts) if n > 0 and names[c] not in candidates)
    return per_mask


def compose_maps(
    instances: torch.Tensor, class_ids: np.ndarray, fill: torch.Tensor | None, size: tuple[int, int],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """The frame's published maps from the small instance map, with one nearest upsample each.

    Args:
        instances: ``(h, w)`` int, 0 or 1 + mask index (:func:`paint_instances`).
        class_ids: ``(N,)`` label-table id of every mask.
        fill: class map (any resolution) for pixels no mask covers, or None (``unlabeled``).
        size: the frame's ``(H, W)``.

    Returns:
        ``label_map`` and ``instance_map`` ``(H, W)`` uint16, where masks that won no pixel are
        dropped and the rest renumbered ``1..K`` in their order; ``visible`` ``(K,)`` int64, the
        indices of the kept masks; and their exact area, bbox and centroid in ``instance_map``
        (see :class:`~sfs_core.upsample.NearestUpsample`).
    """
    count = int(class_ids.shape[0])
    small = instances.cpu().numpy()
    up = nearest_upsample(small.shape, size)
    stats = up.stats(small, count)
    visible = np.flatnonzero(stats["area"] > 0)
    remap = np.zeros(count + 1, np.uint16)  # old id -> new id (0 for masks that won nothing)
    remap[visible + 1] = np.arange(1, visible.size + 1)
    compact = remap[small]
    lut = np.empty(visible.size + 1, np.uint16)  # new id -> class
    lut[0] = UNLABELED_ID
    lut[1:] = class_ids[visible]
    instance_map, label_map = up(compact), up(lut[compact])
    if fill is not None:
        fill_small = fill.cpu().numpy().astype(np.uint16)
        np.copyto(label_map, nearest_upsample(fill_small.shape, size)(fill_small), where=instance_map == 0)
    return label_map, instance_map, visible, {k: v[visible] for k, v in stats.items()}


def instance_stats(instances: torch.Tensor, count: int) -> dict[str, torch.Tensor]:
    """Area, bbox ``(x, y, w, h)`` and centroid ``(x, y)`` of instances ``1..count``, in one pass
    over a full-resolution map (the reference that :meth:`NearestUpsample.stats` matches)."""
    h, w = instances.shape
    flat = instances.reshape(-1)
    ys = torch.arange(h, device=instances.device).repeat_interleave(w)
    xs = torch.arange(w, device=instances.device).repeat(h)
    size = count + 1
    area = torch.bincount(flat, minlength=size)
    big = torch.full((size,), h + w, dtype=torch.long, device=instances.device)
    small = torch.full((size,), -1, dtype=torch.long, device=instances.device)
    x0 = big.scatter_reduce(0, flat, xs, "amin")
    y0 = big.scatter_reduce(0, flat, ys, "amin")
    x1 = small.scatter_reduce(0, flat, xs, "amax")
    y1 = small.scatter_reduce(0, flat, ys, "amax")
    cx = torch.zeros(size, dtype=torch.float64, device=instances.device).index_add_(0, flat, xs.double())
    cy = torch.zeros(size, dtype=torch.float64, device=instances.device).index_add_(0, flat, ys.double())
    denom = area.clamp(min=1).double()
    bbox = torch.stack([x0, y0, x1 - x0 + 1, y1 - y0 + 1], dim=1)[1:]
    centroid = torch.stack([cx / denom, cy / denom], dim=1)[1:]
    return {"area": area[1:], "bbox": bbox, "centroid": centroid}
