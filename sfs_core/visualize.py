"""Colour and overlay images for people (RViz, reports)."""

from __future__ import annotations

import cv2
import numpy as np

from sfs_core.result import SemanticResult


def colorize(label_map: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """``(H, W, 3)`` uint8 RGB image of a uint16 label map (one palette lookup)."""
    if label_map.size and int(label_map.max()) >= len(palette):
        raise ValueError(f"label {int(label_map.max())} outside a palette of {len(palette)} colours")
    return palette[label_map]


def boundaries(instance_map: np.ndarray) -> np.ndarray:
    """Bool ``(H, W)``: pixels whose right or lower neighbour belongs to another instance."""
    edge = np.zeros(instance_map.shape, dtype=bool)
    edge[:, :-1] |= instance_map[:, :-1] != instance_map[:, 1:]
    edge[:-1, :] |= instance_map[:-1, :] != instance_map[1:, :]
    return edge


def overlay(image: np.ndarray, result: SemanticResult, alpha: float = 0.5, min_text_area: float = 0.002) -> np.ndarray:
    """The RGB input blended with label colours, mask outlines, and label names drawn at the
    centroids of masks covering at least ``min_text_area`` of the image."""
    colors = colorize(result.label_map, result.label_table.palette())
    out = cv2.addWeighted(image, 1.0 - alpha, colors, alpha, 0.0)
    out[boundaries(result.instance_map)] = (255, 255, 255)
    height, width = result.label_map.shape
    min_area = min_text_area * height * width
    scale = max(0.35, min(height, width) / 900)
    for record in result.masks:
        if record.area < min_area:
            continue
        text = record.label
        (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
        x = int(np.clip(record.centroid[0] - tw / 2, 0, max(0, width - tw)))
        y = int(np.clip(record.centroid[1] + th / 2, th, height - 1))
        cv2.putText(out, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(out, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return out
