"""Procedural textures: smooth noisy backgrounds and patterned object fills (numpy + OpenCV).

Every function takes a ``numpy.random.Generator`` and is deterministic given its state. Images
are float32 RGB in ``[0, 255]`` until :func:`finish` turns them into uint8.
"""

from __future__ import annotations

import cv2
import numpy as np

BACKGROUND_PATTERNS = ("plain", "stripes", "grid", "speckle")
OBJECT_TEXTURES = ("solid", "stripes", "checker", "noise", "gradient")


def smooth_field(rng: np.random.Generator, size: tuple[int, int], cells: int, channels: int = 3) -> np.ndarray:
    """``(H, W, channels)`` float32 low-frequency noise in ``[-1, 1]``: a ``cells``-cell random grid
    upsampled bicubically."""
    height, width = size
    grid = rng.uniform(-1, 1, (cells + 1, cells + 1, channels)).astype(np.float32)
    field = cv2.resize(grid, (width, height), interpolation=cv2.INTER_CUBIC)
    return np.clip(field.reshape(height, width, channels), -1, 1)


def _stripes(size: tuple[int, int], period: float, angle: float, phase: float = 0.0) -> np.ndarray:
    """``(H, W)`` float32 square wave in {0, 1} of ``period`` pixels across direction ``angle``."""
    height, width = size
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    t = xs * np.cos(angle) + ys * np.sin(angle)
    return ((np.floor(t / period + phase) % 2) == 0).astype(np.float32)


def background(rng: np.random.Generator, size: tuple[int, int], contrast: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """A textured background and its mean colour.

    Returns ``((H, W, 3) float32 in [0, 255], (3,) float32 base colour)``: a muted base colour,
    a large-scale colour field, one low-contrast pattern from :data:`BACKGROUND_PATTERNS` and
    fine noise. ``contrast`` scales the pattern's amplitude.
    """
    base = rng.uniform(60, 190, 3).astype(np.float32)
    image = base + 45 * smooth_field(rng, size, int(rng.integers(2, 6)))
    pattern = BACKGROUND_PATTERNS[int(rng.integers(len(BACKGROUND_PATTERNS)))]
    if pattern == "stripes":
        image += contrast * rng.uniform(8, 20) * (_stripes(size, rng.uniform(6, 20), rng.uniform(0, np.pi))[..., None] - 0.5)
    elif pattern == "grid":
        period = rng.uniform(12, 32)
        lines = np.maximum(_stripes(size, period / 2, 0.0) * _stripes(size, period, 0.0, 0.5),
                           _stripes(size, period / 2, np.pi / 2) * _stripes(size, period, np.pi / 2, 0.5))
        image -= contrast * rng.uniform(10, 25) * lines[..., None]
    elif pattern == "speckle":
        image += contrast * 25 * smooth_field(rng, size, max(size) // 6)
    return image, base


def object_fill(rng: np.random.Generator, size: tuple[int, int], rgb: tuple[float, float, float], texture: str,
                contrast: float = 1.0) -> np.ndarray:
    """An ``(h, w, 3)`` float32 fill of colour ``rgb`` with ``texture`` (one of :data:`OBJECT_TEXTURES`).

    Textures keep the colour recognisable: they vary brightness, not hue. ``rng`` draws the
    pattern's period, angle and noise; ``contrast`` scales the brightness variation.
    """
    if texture not in OBJECT_TEXTURES:
        raise ValueError(f"unknown texture '{texture}' (known: {', '.join(OBJECT_TEXTURES)})")
    rgb = np.asarray(rgb, np.float32)
    height, width = size
    if texture == "solid":
        shade = np.ones((height, width), np.float32)
    elif texture == "stripes":
        shade = 1.0 - 0.3 * contrast * _stripes(size, rng.uniform(3, 8), rng.uniform(0, np.pi))
    elif texture == "checker":
        period = rng.uniform(4, 9)
        shade = 1.0 - 0.3 * contrast * np.abs(_stripes(size, period, 0.0) - _stripes(size, period, np.pi / 2))
    elif texture == "noise":
        shade = 1.0 + 0.15 * contrast * smooth_field(rng, size, max(2, max(size) // 4), 1)[..., 0]
    else:  # gradient
        ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
        angle = rng.uniform(0, 2 * np.pi)
        t = xs * np.cos(angle) + ys * np.sin(angle)
        shade = 1.0 + 0.4 * contrast * ((t - t.min()) / max(float(np.ptp(t)), 1.0) - 0.5)
    # Dark colours get lighter patterns instead of darker ones, so the texture stays visible.
    if rgb.mean() < 60:
        shade = 2.0 - shade
        rgb = np.maximum(rgb, 20)
    return rgb * shade[..., None]


def finish(rng: np.random.Generator, image: np.ndarray, blur_sigma: float, noise_sigma: float) -> np.ndarray:
    """Camera-like finish: slight blur (soft edges), Gaussian pixel noise, clip to uint8."""
    if blur_sigma > 0:
        image = cv2.GaussianBlur(image, (0, 0), blur_sigma)
    if noise_sigma > 0:
        image = image + rng.normal(0, noise_sigma, image.shape).astype(np.float32)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)
