"""The YOLO-seg dataset layout that ultralytics' segmentation trainer reads.

``<root>/images/{train,val}/<id>.png``, ``<root>/labels/{train,val}/<id>.txt`` with one line per
object ``0 x1 y1 x2 y2 ...`` (class 0: class-agnostic "object"; coordinates normalised to
``[0, 1]``) and ``<root>/data.yaml``.

YOLO labels hold one polygon per object, but a visible mask may have holes (a ring) or several
pieces (an object cut in two by an occluder). :func:`mask_to_polygon` joins all contours of a
mask into one polygon with zero-width bridges (a "keyhole"), whose even-odd fill is the mask.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import cv2
import numpy as np
import yaml

from sfs_core.synthetic.scenes import Scene


def _closest(a: np.ndarray, b: np.ndarray) -> tuple[int, int]:
    """Indices ``(i, j)`` of the closest pair of points ``a[i]``, ``b[j]``."""
    d = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)
    i, j = np.unravel_index(int(np.argmin(d)), d.shape)
    return int(i), int(j)


def mask_to_polygon(mask: np.ndarray, epsilon: float = 0.7) -> np.ndarray | None:
    """One ``(K, 2)`` float32 polygon ``(x, y)`` in pixels whose fill reproduces ``mask``.

    Contours (outer borders and holes) are simplified with Douglas-Peucker (``epsilon`` pixels)
    and spliced into the first contour at their closest points, each visited once and closed,
    so the joins are zero-width. Returns ``None`` for an empty mask.
    """
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_CCOMP, cv2.CHAIN_APPROX_NONE)
    parts = []
    for contour in contours:
        simple = cv2.approxPolyDP(contour, epsilon, True)[:, 0, :].astype(np.float32)
        if len(simple) >= 3:
            parts.append(simple)
    if not parts:
        return None
    parts.sort(key=lambda p: -abs(cv2.contourArea(p)))
    polygon = parts[0]
    for part in parts[1:]:
        i, j = _closest(polygon, part)
        loop = np.concatenate([part[j:], part[: j + 1]])  # the part, closed back at its join point
        polygon = np.concatenate([polygon[: i + 1], loop, polygon[i:]])
    return polygon


def yolo_label_lines(scene: Scene) -> list[str]:
    """One ``0 x1 y1 ...`` line per visible object of ``scene`` (coordinates in ``[0, 1]``)."""
    height, width = scene.instance_map.shape
    lines = []
    for mask in scene.instance_masks():
        polygon = mask_to_polygon(mask)
        if polygon is None:
            continue
        normalised = np.clip(polygon / np.array([width, height], np.float32), 0.0, 1.0)
        lines.append("0 " + " ".join(f"{v:.5f}" for v in normalised.reshape(-1)))
    return lines


def write_yolo_seg_dataset(root: Path, splits: dict[str, Iterable[Scene]]) -> Path:
    """Write ``splits`` (``{"train": scenes, "val": scenes}``) in the YOLO-seg layout; returns
    the ``data.yaml`` path. Images are lossless PNG, written in BGR as OpenCV expects."""
    root = Path(root)
    for split, scenes in splits.items():
        images, labels = root / "images" / split, root / "labels" / split
        images.mkdir(parents=True, exist_ok=True)
        labels.mkdir(parents=True, exist_ok=True)
        for index, scene in enumerate(scenes):
            stem = f"{index:05d}"
            if not cv2.imwrite(str(images / f"{stem}.png"), cv2.cvtColor(scene.image, cv2.COLOR_RGB2BGR)):
                raise OSError(f"cannot write '{images / stem}.png'")
            (labels / f"{stem}.txt").write_text("\n".join(yolo_label_lines(scene)) + "\n")
    data = {"path": str(root.resolve()), **{s: f"images/{s}" for s in splits}, "names": {0: "object"}}
    if "val" not in data:
        data["val"] = data["train"]
    path = root / "data.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path
