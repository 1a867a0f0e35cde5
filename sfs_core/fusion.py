"""Closed-set fusion: vote per mask, decide a label, paint masks by confidence.

Everything here is resolution-agnostic and vectorised over masks and pixels: masks are an
``(N, h, w)`` bool tensor and class maps ``(h, w)`` int64 tensors of label-table ids at the same
resolution. One ``index_add_`` counts every (mask, class) pair at once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from sfs_core.labels import UNIDENTIFIED_ID, UNLABELED_ID, LabelSource


@dataclass
class Votes:
    """Per-mask vote of one segmenter. ``counts`` is ``(N, C)`` pixel counts per class."""

    counts: torch.Tensor
    labels: torch.Tensor  # (N,) int64, the class covering the largest share of the mask
    shares: torch.Tensor  # (N,) float32, that share in [0, 1]; 0 for empty masks


def vote(masks: torch.Tensor, class_map: torch.Tensor, num_classes: int) -> Votes:
    """Majority vote of ``class_map`` inside every mask.

    Args:
        masks: ``(N, h, w)`` bool.
        class_map: ``(h, w)`` int64 class ids in ``[0, num_classes)``.
    """
    n = masks.shape[0]
    flat = masks.reshape(n, class_map.numel()).to(torch.float32)
    counts = torch.zeros(n, num_classes, dtype=torch.float32, device=masks.device)
    counts.index_add_(1, class_map.reshape(-1), flat)
    if n == 0:
        return Votes(counts=counts, labels=counts.new_zeros(0, dtype=torch.long), shares=counts.new_zeros(0))
    best, labels = counts.max(dim=1)
    area = flat.sum(dim=1)
    shares = torch.where(area > 0, best / area.clamp(min=1.0), torch.zeros_like(best))
    return Votes(counts=counts, labels=labels, shares=shares)


@dataclass
class Decision:
    class_ids: torch.Tensor  # (N,) int64 label-table ids
    confidences: torch.Tensor  # (N,) float32
    sources: torch.Tensor  # (N,) uint8 LabelSource
    segmenter: torch.Tensor  # (N,) int64 index of the segmenter whose vote won
    winners: torch.Tensor  # (N,) int64 the winning vote's class, even when below the threshold


def decide_closed_set(votes: list[Votes], min_confidence: float) -> Decision:
    """Pick each mask's closed-set label: the segmenter whose majority covers the largest share
    wins (ties go to the earlier segmenter in the config); a winning share below
    ``min_confidence`` makes the mask ``unidentified``.
    """
    labels = torch.stack([v.labels for v in votes])  # (S, N)
    shares = torch.stack([v.shares for v in votes])
    confidences, segmenter = shares.max(dim=0)
    winners = labels.gather(0, segmenter[None])[0]
    unsure = confidences < min_confidence
    class_ids = winners
    class_ids = torch.where(unsure, torch.full_like(class_ids, UNIDENTIFIED_ID), class_ids)
    sources = torch.where(
        unsure,
        torch.full_like(class_ids, int(LabelSource.UNIDENTIFIED)),
        torch.full_like(class_ids, int(LabelSource.CLOSED_SET)),
    ).to(torch.uint8)
    return Decision(class_ids=class_ids, confidences=confidences, sources=sources, segmenter=segmenter, winners=winners)


def paint_order(confidences: torch.Tensor, areas: torch.Tensor) -> torch.Tensor:
    """Rank (0 = bottom) of each mask: more confident on top; at equal confidence, smaller on top."""
    order = np.lexsort((-areas.cpu().numpy(), confidences.cpu().numpy()))
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    return torch.from_numpy(rank).to(confidences.device)


def paint_instances(masks: torch.Tensor, rank: torch.Tensor) -> torch.Tensor:
    """Instance map ``(h, w)`` int64: 0 where no mask covers a pixel, else 1 + index of the
    highest-ranked mask covering it."""
    n = masks.shape[0]
    if n == 0:
        return torch.zeros(masks.shape[1:], dtype=torch.long, device=masks.device)
    dtype = torch.int16 if n < 32767 else torch.int32
    level = (rank.to(dtype) + 1).view(n, 1, 1)
    top, index = torch.where(masks, level, torch.zeros((), dtype=dtype, device=masks.device)).max(dim=0)
    return torch.where(top > 0, index + 1, torch.zeros_like(index))


def label_instances(instance_map: torch.Tensor, class_ids: torch.Tensor, fill: torch.Tensor | None) -> torch.Tensor:
    """Label map from an instance map: each instance's class id; uncovered pixels take ``fill``
    (a class map of the same shape) or ``unlabeled``."""
    lut = torch.cat([class_ids.new_full((1,), UNLABELED_ID), class_ids])
    label_map = lut[instance_map]
    if fill is not None:
        label_map = torch.where(instance_map > 0, label_map, fill)
    return label_map
