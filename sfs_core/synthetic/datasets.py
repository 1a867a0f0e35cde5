"""Synthetic scenes in the Cityscapes folder layout, which ``sfs evaluate`` already reads.

Layout (``root`` = the dataset folder)::

    leftImg8bit/<split>/<city>/<city>_000000_<index>_leftImg8bit.png   RGB images (lossless PNG)
    gtFine/<split>/<city>/<...>_gtFine_labelTrainIds.png               uint8 class ids, 255 = ignore
    gtFine/<split>/<city>/<...>_gtFine_instanceIds.png                 uint16, class_id * 1000 + k for
                                                                       object k (1-based), else class_id
    classes.yaml                                                       the label space (``--label-map``)

The class ids index :data:`~sfs_core.synthetic.shapes.CLASS_NAMES` (0 = background); every
pixel is labelled, so 255 never occurs. :class:`SyntheticShapes` is the matching
:class:`~sfs_core.evaluation.datasets.SegmentationDataset`: the Cityscapes reader with the
synthetic class list.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import cv2
import numpy as np
import yaml

from sfs_core.evaluation.datasets import Cityscapes, Sample, read_label_png
from sfs_core.evaluation.metrics import IGNORE_INDEX
from sfs_core.synthetic.scenes import Scene
from sfs_core.synthetic.shapes import CLASS_NAMES

CITY = "synthetic"
LABEL_SPACE_FILE = "classes.yaml"
INSTANCE_DIVISOR = 1000  # Cityscapes' instanceIds convention


class SyntheticShapes(Cityscapes):
    """The synthetic world's validation set in the Cityscapes layout, with its own classes."""

    name = "synthetic_shapes"
    classes = CLASS_NAMES

    def load_instances(self, sample: Sample) -> np.ndarray:
        """``(H, W)`` int64 instance ids ``1..N`` (0 = background) from the instanceIds PNG."""
        path = sample.label.with_name(sample.label.name.replace("_gtFine_labelTrainIds.png", "_gtFine_instanceIds.png"))
        encoded = read_label_png(path).astype(np.int64)
        return np.where(encoded >= INSTANCE_DIVISOR, encoded % INSTANCE_DIVISOR, 0)


def label_space(name: str = SyntheticShapes.name) -> dict:
    """The label space in the YAML form :func:`sfs_core.evaluation.label_mapping.load_label_space` reads."""
    return {"name": name, "classes": list(CLASS_NAMES), "ignore_index": IGNORE_INDEX, "reduce_zero_label": False}


def write_label_space(path: Path) -> Path:
    """Write :func:`label_space` as YAML (for ``sfs replay --label-map`` and ``sfs evaluate``)."""
    Path(path).write_text(yaml.safe_dump(label_space(), sort_keys=False))
    return Path(path)


def encode_instances(scene: Scene) -> np.ndarray:
    """Cityscapes-style ``(H, W)`` uint16 instance ids of ``scene``.

    >>> from sfs_core.synthetic.scenes import render, sample_scene
    >>> scene = render(sample_scene(0))
    >>> ids = encode_instances(scene)
    >>> bool(((ids % 1000 == scene.instance_map) | (ids < 1000)).all())
    True
    """
    if len(scene.objects) >= INSTANCE_DIVISOR:
        raise ValueError(f"at most {INSTANCE_DIVISOR - 1} objects per scene")
    semantic = scene.semantic_map.astype(np.uint16)
    objects = scene.instance_map > 0
    return np.where(objects, semantic * INSTANCE_DIVISOR + scene.instance_map, semantic).astype(np.uint16)


def write_cityscapes_layout(root: Path, scenes: Iterable[Scene], split: str = "val", city: str = CITY) -> Path:
    """Write ``scenes`` under ``root`` (see the module docstring); returns ``root``."""
    root = Path(root)
    images = root / "leftImg8bit" / split / city
    labels = root / "gtFine" / split / city
    images.mkdir(parents=True, exist_ok=True)
    labels.mkdir(parents=True, exist_ok=True)
    for index, scene in enumerate(scenes):
        stem = f"{city}_000000_{index:06d}"
        files = {
            images / f"{stem}_leftImg8bit.png": cv2.cvtColor(scene.image, cv2.COLOR_RGB2BGR),
            labels / f"{stem}_gtFine_labelTrainIds.png": scene.semantic_map,
            labels / f"{stem}_gtFine_instanceIds.png": encode_instances(scene),
        }
        for path, array in files.items():
            if not cv2.imwrite(str(path), array):
                raise OSError(f"cannot write '{path}'")
    write_label_space(root / LABEL_SPACE_FILE)
    return root
