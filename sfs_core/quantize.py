"""FastSAM quantized to int8 with NNCF, for OpenVINO on the CPU (``precision: auto``).

8-bit weights and activations run ~1.6x faster than bf16 on CPUs with VNNI (FastSAM-s at
640x480 here: ~77 -> ~47 ms) and agree with torch as closely as bf16 does (tests). The
closed-set SegFormer is not quantized: in int8 it was slower than in bf16. ``precision: half``
turns quantization off.

Quantization needs calibration inputs: frames like the camera's, passed through FastSAM's own
pre-processing. ``calibration_images`` names a folder of them; empty, the ultralytics sample
photos and their flips and crops stand in (fine for a test, weak for a robot: give frames from
its camera).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from sfs_core.config import ConfigError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
MAX_CALIBRATION_IMAGES = 64


@dataclass(frozen=True)
class Calibration:
    """What an int8 model is calibrated on: ``inputs()`` builds the network inputs (only when
    quantizing); ``key`` identifies them (image files plus pre-processing) for the cache."""

    key: str
    inputs: Callable[[], list[np.ndarray]]


def calibration(folder: str, preprocess: Callable[[np.ndarray], np.ndarray], preprocessing_key: str) -> Calibration:
    """The :class:`Calibration` of the images in ``folder`` (see :func:`calibration_images`)
    through ``preprocess``. The key hashes the image files, not the decoded inputs: a start-up
    with the quantized model cached reads a few files and decodes none."""
    digest = hashlib.sha256(preprocessing_key.encode())
    for path in _image_paths(folder):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return Calibration(digest.hexdigest()[:16], lambda: [preprocess(image) for image in calibration_images(folder)])


def calibration_images(folder: str = "") -> list[np.ndarray]:
    """RGB calibration images: up to :data:`MAX_CALIBRATION_IMAGES` from ``folder`` (sorted),
    or, for an empty ``folder``, the two ultralytics sample photos with their mirror images
    and centre crops (6 images)."""
    images = [_read_rgb(p) for p in _image_paths(folder)]
    if folder:
        return images
    crops = [p[p.shape[0] // 4:, p.shape[1] // 4:] for p in images]
    return images + [np.ascontiguousarray(p[:, ::-1]) for p in images] + crops


def _image_paths(folder: str) -> list[Path]:
    if not folder:
        from ultralytics.utils import ASSETS

        return [ASSETS / "bus.jpg", ASSETS / "zidane.jpg"]
    root = Path(os.path.expanduser(folder))
    paths = sorted(p for p in root.glob("*") if p.suffix.lower() in IMAGE_SUFFIXES)[:MAX_CALIBRATION_IMAGES] if root.is_dir() else []
    if not paths:
        raise ConfigError("calibration_images", f"no .jpg/.png images in '{folder}'")
    return paths


def _read_rgb(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise ConfigError("calibration_images", f"cannot read the image '{path}'")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def quantized_ir(ir_path: Path, calibration: Calibration) -> Path:
    """An INT8 copy of the OpenVINO IR ``ir_path``, calibrated on ``calibration.inputs()``.

    Cached next to ``ir_path``, keyed by ``calibration.key`` and the NNCF version, so the
    quantization (a few seconds) runs once per model and calibration set.
    """
    try:
        nncf_version = importlib.metadata.version("nncf")  # not imported unless quantizing (slow, noisy)
    except importlib.metadata.PackageNotFoundError as exc:
        raise ConfigError("precision", "auto quantizes FastSAM for OpenVINO and needs NNCF (pip install nncf); "
                                       "or set precision: half") from exc
    key = hashlib.sha256(f"{nncf_version}-{calibration.key}".encode()).hexdigest()[:12]
    target = ir_path.with_name(ir_path.name.replace(".openvino.xml", f".int8-{key}.openvino.xml"))
    if target.exists():
        return target
    import nncf
    import openvino as ov

    inputs = [np.ascontiguousarray(x, dtype=np.float32) for x in calibration.inputs()]
    model = ov.Core().read_model(str(ir_path))
    quantized = nncf.quantize(model, nncf.Dataset(inputs), subset_size=len(inputs))
    tmp = target.with_name(target.name + f".{os.getpid()}.tmp.xml")
    ov.save_model(quantized, str(tmp), compress_to_fp16=False)
    tmp.with_suffix(".bin").replace(target.with_suffix(".bin"))
    tmp.replace(target)
    return target
