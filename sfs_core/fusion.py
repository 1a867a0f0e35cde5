"""Closed-set fusion: vote per mask, decide a label, paint masks by confidence.

Everything here is resolution-agnostic and vectorised over masks and pixels: masks are an
``(N, h, w)`` bool tensor and class maps ``(h, w)`` int64 tensors of label-table ids at the same
resolution. One exact int8 product (:mod:`sfs_core.overlap`) counts every (mask, class) pair at once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from sfs_core.labels import UNIDENTIFIED_ID, UNLABELED_ID, LabelSource
from sfs_core.overlap import as_int8, overlap_counts


@dataclass
class Votes:
    """Per-mask vote of one segmenter. ``counts`` is ``(N, C)`` pixel counts per class."""

    counts: torch.Tensor
    labels: torch.Tensor  # (N,) int64, the class covering the largest share of the mask
    shares: torch.Tensor  # (N,) float32, that share in [0, 1]; 0 for empty masks


def vote(masks: torch.Tensor, class_map: torch.Tensor, num_classes: int, flat: torch.Tensor | None = None) -> Votes:
    """Majority vote of ``class_map`` inside every mask.

    Args:
        masks: ``(N, h, w)`` bool.
        class_map: ``(h, w)`` int64 class ids in ``[0, num_classes)``.
        flat: ``as_int8(masks)`` when the caller already has it.
    """
    n = masks.shape[0]
    flat = as_int8(masks) if flat is None else flat
    # One overlap product against the one-hot rows of the classes present in the map.
    ids = class_map.reshape(-1)
    present = torch.bincount(ids, minlength=num_classes).nonzero().flatten()
    row = torch.zeros(num_classes, dtype=torch.long, device=ids.device)
    row[present] = torch.arange(present.numel(), device=ids.device)
    onehot = torch.zeros(present.numel(), ids.numel(), dtype=torch.int8, device=ids.device)  # (K, h*w)
    onehot[row[ids], torch.arange(ids.numel(), device=ids.device)] = 1  # one write per pixel: ~5x faster than a (K, h*w) compare at K=112
    counts = torch.zeros(n, num_classes, dtype=torch.float32, device=masks.device)
    counts[:, present] = overlap_counts(flat, onehot)
    if n == 0:
        return Votes(counts=counts, labels=counts.new_zeros(0, dtype=torch.long), shares=counts.new_zeros(0))
    best, labels = counts.max(dim=1)
    area = counts.sum(dim=1)  # every pixel has one class: (N, C) sums, not another (N, h*w) pass
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
    # Ranks are unique: the top level alone names the mask (no argmax), and uint8 levels keep
    # the (N, h, w) product small while they fit.
    dtype = torch.uint8 if n < 255 else torch.int16 if n < 32767 else torch.int32
    level = (rank.to(dtype) + 1).view(n, 1, 1)
    top = ((masks.view(torch.uint8) if dtype == torch.uint8 else masks.to(dtype)) * level).amax(dim=0)
    owner = torch.zeros(n + 1, dtype=torch.long, device=masks.device)  # level -> 1 + mask index
    owner[rank.long() + 1] = torch.arange(1, n + 1, device=masks.device)
    return owner[top.long()]


def label_instances(instance_map: torch.Tensor, class_ids: torch.Tensor, fill: torch.Tensor | None) -> torch.Tensor:
    """Label map from an instance map: each instance's class id; uncovered pixels take ``fill``
    (a class map of the same shape) or ``unlabeled``."""
    lut = torch.cat([class_ids.new_full((1,), UNLABELED_ID), class_ids])
    label_map = lut[instance_map]
    if fill is not None:
        label_map = torch.where(instance_map > 0, label_map, fill)
    return label_map
