"""The shape classes of the synthetic world and their outlines, as polygons for ``cv2.fillPoly``.

Every outline is a list of ``(K, 2)`` float64 contours in image pixels ``(x, y)``; drawing all of
a shape's contours in one ``fillPoly`` call gives the shape (a ring's second contour is its hole).
Vertices are computed with numpy for all corners at once.
"""

from __future__ import annotations

import numpy as np

#: The shape classes, in the order of their semantic ids (1 + index; 0 is the background).
SHAPE_CLASSES: tuple[str, ...] = ("circle", "square", "triangle", "star", "ring", "cross")
BACKGROUND = "background"
#: The ground-truth label space of the synthetic world: id ``i`` is ``CLASS_NAMES[i]``.
CLASS_NAMES: tuple[str, ...] = (BACKGROUND, *SHAPE_CLASSES)

#: Named colours (RGB) the objects are painted in; CLIP learns these words too.
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (40, 170, 50),
    "blue": (35, 60, 215),
    "yellow": (240, 220, 40),
    "orange": (245, 140, 20),
    "purple": (130, 40, 170),
    "cyan": (40, 210, 220),
    "pink": (240, 120, 190),
    "white": (240, 240, 240),
    "black": (25, 25, 25),
}

_CIRCLE_VERTICES = 48


def _regular(n: int, radius: float, phase: float) -> np.ndarray:
    """``(n, 2)`` vertices of a regular polygon around the origin."""
    angles = phase + 2 * np.pi * np.arange(n) / n
    return radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)


def _unit_outline(kind: str, inner_ratio: float) -> list[np.ndarray]:
    """Contours of ``kind`` with circumradius 1 around the origin, before rotation."""
    if kind == "circle":
        return [_regular(_CIRCLE_VERTICES, 1.0, 0.0)]
    if kind == "square":
        return [_regular(4, 1.0, np.pi / 4)]
    if kind == "triangle":
        return [_regular(3, 1.0, -np.pi / 2)]
    if kind == "star":
        outer = _regular(5, 1.0, -np.pi / 2)
        inner = _regular(5, inner_ratio, -np.pi / 2 + np.pi / 5)
        return [np.stack([outer, inner], axis=1).reshape(-1, 2)]
    if kind == "ring":
        return [_regular(_CIRCLE_VERTICES, 1.0, 0.0), _regular(_CIRCLE_VERTICES, inner_ratio, 0.0)[::-1]]
    if kind == "cross":
        a = inner_ratio / np.sqrt(1 + inner_ratio**2)  # half arm width, so that corners sit on the unit circle
        b = 1 / np.sqrt(1 + inner_ratio**2)  # half arm length
        quarter = np.array([[a, b], [a, a], [b, a]])
        turns = [np.array([[c, -s], [s, c]]) for c, s in ((1, 0), (0, -1), (-1, 0), (0, 1))]
        return [np.concatenate([quarter @ t.T for t in turns])[::-1]]
    raise ValueError(f"unknown shape '{kind}' (known: {', '.join(SHAPE_CLASSES)})")


def shape_contours(kind: str, center: tuple[float, float], radius: float, angle: float, inner_ratio: float = 0.5) -> list[np.ndarray]:
    """Outline of one shape in image pixels.

    Args:
        kind: one of :data:`SHAPE_CLASSES`.
        center: ``(x, y)`` in pixels.
        radius: circumradius in pixels.
        angle: rotation in radians.
        inner_ratio: star inner radius, ring hole radius or cross arm half-width, relative to 1.

    Returns:
        ``(K, 2)`` float64 contours ``(x, y)``; fill them together (even-odd) to draw the shape.

    >>> [c.shape for c in shape_contours("ring", (10, 10), 5, 0.0)]
    [(48, 2), (48, 2)]
    """
    c, s = np.cos(angle), np.sin(angle)
    rotation = np.array([[c, -s], [s, c]])
    return [radius * unit @ rotation.T + np.asarray(center, dtype=np.float64) for unit in _unit_outline(kind, inner_ratio)]


def fill_shape(canvas: np.ndarray, contours: list[np.ndarray], offset: tuple[int, int] = (0, 0), value: int = 1) -> np.ndarray:
    """Draw ``contours`` into ``canvas`` (uint8, modified in place) at 1/16-pixel precision.

    ``offset`` ``(x0, y0)`` is the canvas origin in image pixels (for drawing into a crop).
    Aliased (no anti-aliasing), so a pixel is either in the shape or not.
    """
    shift = 4
    points = [np.round((c - np.asarray(offset)) * (1 << shift)).astype(np.int32) for c in contours]
    import cv2

    cv2.fillPoly(canvas, points, value, lineType=cv2.LINE_8, shift=shift)
    return canvas
