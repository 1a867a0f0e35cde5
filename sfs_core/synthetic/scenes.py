"""Deterministic synthetic scenes: textured backgrounds with occluding coloured shapes.

A scene is first *sampled* into a :class:`SceneSpec` (plain numbers: size, seeds and one
:class:`ObjectSpec` per object, bottom to top), then *rendered* into a :class:`Scene` (image,
instance map, semantic map). Rendering is a pure function of the spec, so a sequence of specs
with moving objects (:func:`sample_sequence`) renders into a consistent video, and the same seed
always gives the same pixels.

Ground truth contracts of a rendered :class:`Scene`:

* ``instance_map[y, x] = k`` (1-based) when object ``k - 1`` is the top-most object covering the
  pixel, 0 for background: occlusion is painter's order, and a ring's hole shows what is below.
* ``semantic_map == CLASS_ID[instance_map]``: the semantic map is derived from the instance map,
  so the two never disagree. Ids index :data:`~sfs_core.synthetic.shapes.CLASS_NAMES`.
* :func:`sample_scene` keeps at least ``min_visible`` of every object's area visible.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from sfs_core.synthetic.shapes import CLASS_NAMES, COLORS, SHAPE_CLASSES, fill_shape, shape_contours
from sfs_core.synthetic.textures import OBJECT_TEXTURES, background, finish, object_fill

_INNER_RATIO = {"star": (0.38, 0.55), "ring": (0.45, 0.62), "cross": (0.28, 0.42)}


@dataclass(frozen=True)
class SceneConfig:
    """How scenes are sampled. Radii are fractions of the image's short side."""

    sizes: tuple[tuple[int, int], ...] = ((240, 320), (256, 256), (320, 240))  # (height, width) choices
    min_objects: int = 2
    max_objects: int = 5
    min_radius: float = 0.13
    max_radius: float = 0.24
    min_visible: float = 0.6  # least visible share of each object's area
    min_contrast: float = 70.0  # least RGB distance between an object and the background under it
    classes: tuple[str, ...] = SHAPE_CLASSES
    blur_sigma: float = 0.6
    noise_sigma: float = 4.0
    texture_contrast: float = 1.0  # scales object texture and background pattern amplitudes

    def __post_init__(self) -> None:
        if not self.sizes or any(h < 32 or w < 32 for h, w in self.sizes):
            raise ValueError(f"sizes must be (height, width) pairs of at least 32 pixels, got {self.sizes}")
        if not 1 <= self.min_objects <= self.max_objects:
            raise ValueError(f"need 1 <= min_objects <= max_objects, got {self.min_objects}, {self.max_objects}")
        if not 0 < self.min_radius <= self.max_radius <= 0.5:
            raise ValueError(f"need 0 < min_radius <= max_radius <= 0.5, got {self.min_radius}, {self.max_radius}")
        if not 0 <= self.min_visible <= 1:
            raise ValueError(f"min_visible must be in [0, 1], got {self.min_visible}")
        unknown = set(self.classes) - set(SHAPE_CLASSES)
        if not self.classes or unknown:
            raise ValueError(f"classes must be a non-empty subset of {SHAPE_CLASSES}, got {self.classes}")


@dataclass(frozen=True)
class ObjectSpec:
    """One shape: geometry in pixels, colour name and exact RGB, texture and its seed."""

    shape: str
    center: tuple[float, float]  # (x, y)
    radius: float
    angle: float
    inner_ratio: float
    color: str
    rgb: tuple[float, float, float]
    texture: str
    texture_seed: int

    @property
    def class_id(self) -> int:
        """Semantic id (index into :data:`CLASS_NAMES`)."""
        return CLASS_NAMES.index(self.shape)

    def contours(self) -> list[np.ndarray]:
        return shape_contours(self.shape, self.center, self.radius, self.angle, self.inner_ratio)

    def mask(self, size: tuple[int, int]) -> tuple[np.ndarray, tuple[int, int, int, int]]:
        """The shape's full (unoccluded) mask inside its clipped box: ``(bool (h, w), (x0, y0, x1, y1))``.
        The box is empty (``x1 <= x0``) when the shape lies outside the image."""
        height, width = size
        r = self.radius + 1
        x0, y0 = max(0, math.floor(self.center[0] - r)), max(0, math.floor(self.center[1] - r))
        x1, y1 = min(width, math.ceil(self.center[0] + r) + 1), min(height, math.ceil(self.center[1] + r) + 1)
        if x1 <= x0 or y1 <= y0:
            return np.zeros((0, 0), bool), (x0, y0, x0, y0)
        canvas = np.zeros((y1 - y0, x1 - x0), np.uint8)
        return fill_shape(canvas, self.contours(), (x0, y0)).astype(bool), (x0, y0, x1, y1)


@dataclass(frozen=True)
class SceneSpec:
    """Everything needed to render one scene. ``objects`` are ordered bottom to top."""

    size: tuple[int, int]  # (height, width)
    background_seed: int
    noise_seed: int
    objects: tuple[ObjectSpec, ...]
    blur_sigma: float = 0.6
    noise_sigma: float = 4.0
    texture_contrast: float = 1.0


@dataclass(frozen=True)
class Scene:
    """A rendered scene (see the module docstring for the ground-truth contracts).

    Attributes:
        image: ``(H, W, 3)`` uint8 RGB.
        instance_map: ``(H, W)`` uint16; 0 = background, ``k`` = ``objects[k - 1]``.
        semantic_map: ``(H, W)`` uint8 ids into :attr:`class_names`.
        objects: the specs, bottom to top.
    """

    image: np.ndarray
    instance_map: np.ndarray
    semantic_map: np.ndarray
    objects: tuple[ObjectSpec, ...]
    class_names: tuple[str, ...] = field(default=CLASS_NAMES)

    def instance_masks(self) -> np.ndarray:
        """``(N, H, W)`` bool visible masks, one per object (empty for a fully hidden object)."""
        ids = np.arange(1, len(self.objects) + 1, dtype=self.instance_map.dtype)
        return self.instance_map[None] == ids[:, None, None]

    def visible_areas(self) -> np.ndarray:
        """``(N,)`` int64 visible pixels per object."""
        return np.bincount(self.instance_map.reshape(-1), minlength=len(self.objects) + 1)[1:].astype(np.int64)


def render(spec: SceneSpec) -> Scene:
    """Render ``spec`` (pure: the same spec always gives the same arrays)."""
    height, width = spec.size
    image, _ = background(np.random.default_rng(spec.background_seed), spec.size, spec.texture_contrast)
    instance_map = np.zeros((height, width), np.uint16)
    for k, obj in enumerate(spec.objects, start=1):
        mask, (x0, y0, x1, y1) = obj.mask(spec.size)
        if not mask.any():
            continue
        fill = object_fill(np.random.default_rng(obj.texture_seed), mask.shape, obj.rgb, obj.texture, spec.texture_contrast)
        image[y0:y1, x0:x1][mask] = fill[mask]
        instance_map[y0:y1, x0:x1][mask] = k
    class_ids = np.array([0] + [o.class_id for o in spec.objects], np.uint8)
    image = finish(np.random.default_rng(spec.noise_seed), image, spec.blur_sigma, spec.noise_sigma)
    return Scene(image=image, instance_map=instance_map, semantic_map=class_ids[instance_map], objects=spec.objects)


def _sample_object(rng: np.random.Generator, size: tuple[int, int], config: SceneConfig) -> ObjectSpec:
    height, width = size
    short = min(height, width)
    radius = short * rng.uniform(config.min_radius, config.max_radius)
    margin = 0.3 * radius  # up to 30 % of the radius may leave the image
    shape = config.classes[int(rng.integers(len(config.classes)))]
    lo, hi = _INNER_RATIO.get(shape, (0.5, 0.5))
    color = list(COLORS)[int(rng.integers(len(COLORS)))]
    return ObjectSpec(
        shape=shape,
        center=(float(rng.uniform(radius - margin, width - radius + margin)), float(rng.uniform(radius - margin, height - radius + margin))),
        radius=float(radius),
        angle=float(rng.uniform(0, 2 * np.pi)),
        inner_ratio=float(rng.uniform(lo, hi)),
        color=color,
        rgb=tuple(float(v) for v in np.clip(np.asarray(COLORS[color]) + rng.uniform(-18, 18, 3), 0, 255)),
        texture=OBJECT_TEXTURES[int(rng.integers(len(OBJECT_TEXTURES)))],
        texture_seed=int(rng.integers(2**31)),
    )


def _full_mask(obj: ObjectSpec, size: tuple[int, int]) -> np.ndarray:
    mask, (x0, y0, x1, y1) = obj.mask(size)
    full = np.zeros(size, bool)
    full[y0:y1, x0:x1] = mask
    return full


def sample_scene(seed: int, config: SceneConfig = SceneConfig()) -> SceneSpec:
    """A random scene spec, deterministic in ``seed``.

    Objects are placed one by one on top of the previous ones; a candidate is rejected when it
    would leave an earlier object less than ``min_visible`` of its area, when it is too small
    after clipping, or when its colour is too close to the background under it. Fewer than the
    drawn number of objects may result when placements keep failing (at least one always fits
    on an empty canvas at these radii).
    """
    rng = np.random.default_rng(seed)
    size = config.sizes[int(rng.integers(len(config.sizes)))]
    background_seed, noise_seed = (int(v) for v in rng.integers(2**31, size=2))
    backdrop, _ = background(np.random.default_rng(background_seed), size, config.texture_contrast)
    wanted = int(rng.integers(config.min_objects, config.max_objects + 1))
    min_area = 0.5 * math.pi * (config.min_radius * min(size)) ** 2 * 0.3
    objects: list[ObjectSpec] = []
    full_areas: list[int] = []
    visible: list[np.ndarray] = []
    for _ in range(wanted * 12):
        if len(objects) == wanted:
            break
        candidate = _sample_object(rng, size, config)
        full = _full_mask(candidate, size)
        area = int(full.sum())
        if area < min_area:
            continue
        under = backdrop[full].mean(axis=0)
        if float(np.linalg.norm(under - np.asarray(candidate.rgb))) < config.min_contrast:
            continue
        remaining = [v & ~full for v in visible]
        if any(r.sum() < config.min_visible * a for r, a in zip(remaining, full_areas)):
            continue
        objects.append(candidate)
        full_areas.append(area)
        visible = remaining + [full]
    return SceneSpec(size=size, background_seed=background_seed, noise_seed=noise_seed, objects=tuple(objects),
                     blur_sigma=config.blur_sigma, noise_sigma=config.noise_sigma, texture_contrast=config.texture_contrast)


def sample_sequence(seed: int, frames: int, config: SceneConfig = SceneConfig(), max_speed: float = 0.015,
                    max_spin: float = 0.05) -> list[SceneSpec]:
    """``frames`` specs of one scene whose objects drift and spin (a camera-like video).

    Each object moves at a constant velocity of up to ``max_speed`` short sides per frame,
    bouncing off the image border, and turns by up to ``max_spin`` radians per frame. The
    background is fixed; the pixel noise changes every frame. Occlusions change over time, so
    ``min_visible`` only holds for the first frame.
    """
    first = sample_scene(seed, config)
    rng = np.random.default_rng([seed, 1])
    height, width = first.size
    speed = max_speed * min(height, width)
    velocities = rng.uniform(-speed, speed, (len(first.objects), 2))
    spins = rng.uniform(-max_spin, max_spin, len(first.objects))
    noise_seeds = rng.integers(2**31, size=frames)
    specs = []
    for t in range(frames):
        objects = []
        for obj, (vx, vy), spin in zip(first.objects, velocities, spins):
            x = _bounce(obj.center[0] + vx * t, obj.radius * 0.7, width - obj.radius * 0.7)
            y = _bounce(obj.center[1] + vy * t, obj.radius * 0.7, height - obj.radius * 0.7)
            objects.append(replace(obj, center=(x, y), angle=obj.angle + spin * t))
        specs.append(replace(first, objects=tuple(objects), noise_seed=int(noise_seeds[t])))
    return specs


def _bounce(value: float, lo: float, hi: float) -> float:
    """Reflect ``value`` into ``[lo, hi]`` (a ball bouncing between two walls)."""
    if hi <= lo:
        return (lo + hi) / 2
    span = hi - lo
    phase = (value - lo) % (2 * span)
    return float(lo + (phase if phase <= span else 2 * span - phase))
