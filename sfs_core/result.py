"""What one processed frame produces: ``SemanticResult`` and its per-mask ``MaskRecord``."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from sfs_core.labels import LabelSource, LabelTable


@dataclass
class MaskRecord:
    """One visible mask. ``bbox`` (x, y, width, height) and ``area`` describe the pixels the mask
    won in ``instance_map`` (value ``index + 1``), so they agree with it exactly."""

    id: int
    label: str
    class_id: int
    score: float
    source: LabelSource
    bbox: tuple[int, int, int, int]
    area: int
    centroid: tuple[float, float]
    mask_score: float = 0.0
    candidates: list[str] = field(default_factory=list)
    candidate_scores: list[float] = field(default_factory=list)

    def to_json(self) -> dict:
        out = asdict(self)
        out["source"] = LabelSource(self.source).name
        return out


@dataclass
class SemanticResult:
    """Outputs of :meth:`sfs_core.pipeline.Pipeline.process` for one ``(H, W)`` frame.

    Attributes:
        label_map: ``(H, W)`` uint16 label-table class ids (0 unlabeled, 1 unidentified).
        instance_map: ``(H, W)`` uint16, 0 where no mask won, else index + 1 into ``masks``.
        masks: visible masks, in index order.
        label_table: the shared, growing table (names and colours by class id).
        timings: per-stage wall times in milliseconds, ``total`` included.
    """

    label_map: np.ndarray
    instance_map: np.ndarray
    masks: list[MaskRecord]
    label_table: LabelTable
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def image_size(self) -> tuple[int, int]:
        return self.label_map.shape[:2]

    def mask_crop(self, index: int) -> np.ndarray:
        """Mask ``index`` as mono8 (0/255), cropped to its bbox."""
        x, y, w, h = self.masks[index].bbox
        return ((self.instance_map[y : y + h, x : x + w] == index + 1) * np.uint8(255)).astype(np.uint8)

    def labeled_masks(self) -> Iterator[tuple[dict[str, Any], tuple[int, int, int, int], np.ndarray]]:
        """Per mask, what ``sfs_ros/LabeledMask`` (``msg/LabeledMask.msg``) carries: its scalar and
        list fields as plain Python values, its bbox ``(x, y, width, height)`` and its mono8 crop.
        Both message builders (rclpy: ``sfs_ros.messages``; rosbags: ``sfs_core.bags``) wrap these."""
        for index, record in enumerate(self.masks):
            fields = dict(id=int(record.id), label=record.label, class_id=int(record.class_id), score=float(record.score),
                          source=int(record.source), candidates=list(record.candidates),
                          candidate_scores=[float(s) for s in record.candidate_scores], area=int(record.area))
            yield fields, tuple(int(v) for v in record.bbox), self.mask_crop(index)

    def to_json(self) -> dict:
        return {
            "image_size": list(self.image_size),
            "masks": [m.to_json() for m in self.masks],
            "timings_ms": {k: round(v, 3) for k, v in self.timings.items()},
            "label_table_version": self.label_table.version,
        }
