"""The one nearest upsample per frame, and exact statistics of its result computed before it.

Fusion works at prototype resolution; only the published maps need the frame's ``(H, W)``.
A nearest upsample copies every small pixel ``(i, j)`` to a block of ``rows[i] x cols[j]``
output pixels, so each instance's area, bbox and centroid *in the upsampled map* follow
exactly from the small map weighted by those block sizes: nothing at full resolution but the
final gathers.

The mapping is pixel-centre aligned, ``src = floor((dst + 0.5) * in / out)`` in exact integer
arithmetic: torch's ``nearest-exact`` except where its float32 scale rounds across a pixel edge.
OpenCV's ``INTER_NEAREST_EXACT`` uses fixed-point steps that differ more often (e.g. 128 -> 480),
so the index maps are built here and applied with ``np.take`` (about as fast as ``cv2.resize``).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np


def nearest_index(size_in: int, size_out: int) -> np.ndarray:
    """``(size_out,)`` int64 source index of every output index (pixel-centre aligned)."""
    src = ((2 * np.arange(size_out, dtype=np.int64) + 1) * size_in) // (2 * size_out)  # exact integers
    return np.minimum(src, size_in - 1)


class NearestUpsample:
    """Nearest resize of ``(h, w)`` maps to ``(H, W)``, and exact per-instance statistics of the
    resized map from the small one (works for downscales too: blocks can be empty).

    >>> up = NearestUpsample((2, 2), (4, 6))
    >>> small = np.array([[0, 1], [2, 2]])
    >>> up(small).shape, up.stats(small, 2)["area"].tolist()
    ((4, 6), [6, 12])
    """

    def __init__(self, src: tuple[int, int], dst: tuple[int, int]) -> None:
        (h, w), (big_h, big_w) = src, dst
        self.src, self.dst = (h, w), (big_h, big_w)
        self.rows, self.cols = nearest_index(h, big_h), nearest_index(w, big_w)
        row_n = np.bincount(self.rows, minlength=h)  # output rows copied from each small row
        col_n = np.bincount(self.cols, minlength=w)
        # First and last output row/column of each small row/column (meaningless where n == 0).
        self.y0, self.y1 = np.searchsorted(self.rows, np.arange(h)), np.searchsorted(self.rows, np.arange(h), "right") - 1
        self.x0, self.x1 = np.searchsorted(self.cols, np.arange(w)), np.searchsorted(self.cols, np.arange(w), "right") - 1
        row_sum = np.bincount(self.rows, weights=np.arange(big_h, dtype=np.float64), minlength=h)  # sum of output y per row
        col_sum = np.bincount(self.cols, weights=np.arange(big_w, dtype=np.float64), minlength=w)
        self.weight = np.outer(row_n, col_n).astype(np.float64).ravel()  # output pixels per small pixel
        self.sum_x = np.outer(row_n, col_sum).ravel()  # sum of their x
        self.sum_y = np.outer(row_sum, col_n).ravel()  # sum of their y
        # Small pixels that reach the output (all of them unless downscaling), with their row/col.
        seen = np.flatnonzero(self.weight > 0)
        self.seen = None if seen.size == h * w else seen
        self.pixel_row, self.pixel_col = np.divmod(np.arange(h * w) if self.seen is None else seen, w)
        self.identity = (h, w) == (big_h, big_w)

    def __call__(self, small: np.ndarray) -> np.ndarray:
        """``small`` ``(h, w)`` resized to ``(H, W)`` (the same dtype; a copy)."""
        if self.identity:
            return small.copy()
        return small.take(self.rows, axis=0).take(self.cols, axis=1)

    def stats(self, small: np.ndarray, count: int) -> dict[str, np.ndarray]:
        """Area ``(count,)`` int64, bbox ``(count, 4)`` int64 ``(x, y, w, h)`` and centroid
        ``(count, 2)`` float64 ``(x, y)`` of ids ``1..count`` of ``self(small)``, from ``small``.

        Equal to :func:`sfs_core.pipeline.instance_stats` on the upsampled map (integer sums
        in float64 are exact). Ids without pixels get area 0 and a meaningless bbox.
        """
        h, w = self.src
        flat = small.reshape(-1).astype(np.int64, copy=False)
        size = count + 1
        area = np.bincount(flat, weights=self.weight, minlength=size)[:size]
        cx = np.bincount(flat, weights=self.sum_x, minlength=size)[:size]
        cy = np.bincount(flat, weights=self.sum_y, minlength=size)[:size]
        # Which small rows / columns each id occupies, counting only pixels that reach the output.
        ids = flat if self.seen is None else flat[self.seen]
        cols_of = np.zeros((size, w), dtype=bool)
        rows_of = np.zeros((size, h), dtype=bool)
        cols_of[ids, self.pixel_col] = True
        rows_of[ids, self.pixel_row] = True
        x0 = self.x0[cols_of.argmax(1)]
        x1 = self.x1[w - 1 - cols_of[:, ::-1].argmax(1)]
        y0 = self.y0[rows_of.argmax(1)]
        y1 = self.y1[h - 1 - rows_of[:, ::-1].argmax(1)]
        denom = np.maximum(area, 1.0)
        bbox = np.stack([x0, y0, x1 - x0 + 1, y1 - y0 + 1], axis=1)[1:]
        centroid = np.stack([cx / denom, cy / denom], axis=1)[1:]
        return {"area": area[1:].astype(np.int64), "bbox": bbox.astype(np.int64), "centroid": centroid}


@lru_cache(maxsize=16)
def nearest_upsample(src: tuple[int, int], dst: tuple[int, int]) -> NearestUpsample:
    """A cached :class:`NearestUpsample` (read-only once built, so threads can share it)."""
    return NearestUpsample(tuple(src), tuple(dst))
