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
from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np

from sfs_core.config import ConfigError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
MAX_CALIBRATION_IMAGES = 64


def calibration_images(folder: str = "") -> list[np.ndarray]:
    """RGB calibration images: up to :data:`MAX_CALIBRATION_IMAGES` from ``folder`` (sorted),
    or, for an empty ``folder``, the two ultralytics sample photos with their mirror images
    and centre crops (6 images)."""
    if folder:
        root = Path(os.path.expanduser(folder))
        paths = sorted(p for p in root.glob("*") if p.suffix.lower() in IMAGE_SUFFIXES)[:MAX_CALIBRATION_IMAGES] if root.is_dir() else []
        if not paths:
            raise ConfigError("calibration_images", f"no .jpg/.png images in '{folder}'")
        return [_read_rgb(p) for p in paths]
    from ultralytics.utils import ASSETS

    photos = [_read_rgb(ASSETS / name) for name in ("bus.jpg", "zidane.jpg")]
    crops = [p[p.shape[0] // 4:, p.shape[1] // 4:] for p in photos]
    return photos + [np.ascontiguousarray(p[:, ::-1]) for p in photos] + crops


def _read_rgb(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise ConfigError("calibration_images", f"cannot read the image '{path}'")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def quantized_ir(ir_path: Path, samples: Callable[[], Sequence[np.ndarray]]) -> Path:
    """An INT8 copy of the OpenVINO IR ``ir_path``, calibrated on ``samples()`` (network inputs).

    Cached next to ``ir_path``, keyed by the samples' content and the NNCF version, so the
    quantization (a few seconds) runs once per model and calibration set.
    """
    try:
        nncf_version = importlib.metadata.version("nncf")  # not imported unless quantizing (slow, noisy)
    except importlib.metadata.PackageNotFoundError as exc:
        raise ConfigError("precision", "auto quantizes FastSAM for OpenVINO and needs NNCF (pip install nncf); "
                                       "or set precision: half") from exc
    inputs = [np.ascontiguousarray(x, dtype=np.float32) for x in samples()]
    digest = hashlib.sha256(nncf_version.encode())
    for x in inputs:
        digest.update(str(x.shape).encode())
        digest.update(x.tobytes())
    target = ir_path.with_name(ir_path.name.replace(".openvino.xml", f".int8-{digest.hexdigest()[:12]}.openvino.xml"))
    if target.exists():
        return target
    import nncf
    import openvino as ov

    model = ov.Core().read_model(str(ir_path))
    quantized = nncf.quantize(model, nncf.Dataset(inputs), subset_size=len(inputs))
    tmp = target.with_name(target.name + f".{os.getpid()}.tmp.xml")
    ov.save_model(quantized, str(tmp), compress_to_fp16=False)
    tmp.with_suffix(".bin").replace(target.with_suffix(".bin"))
    tmp.replace(target)
    return target
