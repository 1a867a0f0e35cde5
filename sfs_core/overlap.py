"""Pixel-overlap counts of binary masks: one exact matrix product, int8 on the CPU.

Voting (mask x class) and tracking (mask x track) both need ``sum_p a[n, p] * b[m, p]`` over
0/1 rows. Bool masks are already 0/1 bytes, so an ``int8`` view costs nothing, and torch's
int8 product (int32 accumulation, exact) measured ~5x faster than float32 here (100 x 90 masks
of 19,200 pixels, 1 thread: 1.3 ms against 7.4 ms with the float conversion).
"""

from __future__ import annotations

import math

import torch

_INT8_OK: bool | None = None  # whether torch._int_mm works on this build (checked once)


def as_int8(masks: torch.Tensor) -> torch.Tensor:
    """``(N, ...)`` bool masks as ``(N, P)`` int8 0/1: a view when contiguous, else a copy."""
    flat = masks.reshape(masks.shape[0], math.prod(masks.shape[1:]))
    return flat.view(torch.int8) if flat.dtype == torch.bool else flat.to(torch.int8)


def overlap_counts(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``(N, M)`` float32 counts of pixels set in both ``a[n]`` and ``b[m]``.

    Args:
        a: ``(N, P)`` int8 0/1 (:func:`as_int8`); ``b``: ``(M, P)`` likewise, same device.
    """
    n, m = a.shape[0], b.shape[0]
    if n == 0 or m == 0 or a.shape[1] == 0:
        return torch.zeros(n, m, dtype=torch.float32, device=a.device)
    if a.device.type == "cpu" and _int8_works():
        return torch._int_mm(a, b.T).to(torch.float32)
    return a.to(torch.float32) @ b.to(torch.float32).T  # exact below 2**24 pixels


def pixel_counts(a: torch.Tensor) -> torch.Tensor:
    """``(N,)`` float32 pixels set in each row of ``(N, P)`` int8 0/1 masks (the same product
    against a row of ones: faster than an int8 ``sum``)."""
    return overlap_counts(a, torch.ones(1, a.shape[1], dtype=torch.int8, device=a.device))[:, 0]


def _int8_works() -> bool:
    global _INT8_OK
    if _INT8_OK is None:
        try:
            x = torch.ones(3, 5, dtype=torch.int8)
            _INT8_OK = bool(torch._int_mm(x, x.T).eq(5).all())
        except (AttributeError, RuntimeError, NotImplementedError):
            _INT8_OK = False
    return _INT8_OK
