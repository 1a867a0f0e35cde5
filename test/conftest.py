"""Shared fixtures. Offline flags are set here, before anything imports transformers/ultralytics."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("SFS_TEST_CACHE", REPO / ".cache" / "test"))
CACHE.mkdir(parents=True, exist_ok=True)
os.environ.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", YOLO_OFFLINE="1", YOLO_AUTOINSTALL="False")
os.environ.setdefault("YOLO_CONFIG_DIR", str(CACHE / "ultralytics"))


def _assets() -> Path:
    import ultralytics

    return Path(ultralytics.__file__).parent / "assets"


@pytest.fixture(scope="session")
def photos() -> list[Path]:
    """Real photos that ship with ultralytics (bus.jpg 810x1080, zidane.jpg 1280x720)."""
    paths = [_assets() / "bus.jpg", _assets() / "zidane.jpg"]
    assert all(p.exists() for p in paths), paths
    return paths


@pytest.fixture(scope="session")
def rgb_640x480(photos):
    import cv2

    return cv2.resize(cv2.cvtColor(cv2.imread(str(photos[0])), cv2.COLOR_BGR2RGB), (640, 480))


@pytest.fixture(scope="session")
def random_models() -> Path:
    """Folder from ``sfs models init-random`` (reused across runs while random_models.py is unchanged)."""
    from sfs_core import random_models

    key = hashlib.sha256(Path(random_models.__file__).read_bytes()).hexdigest()[:12]
    folder = CACHE / f"random-models-{key}"
    config = random_models.init_random(folder)
    return config.parent


@pytest.fixture(scope="session")
def random_config(random_models) -> Path:
    return random_models / "sfs.yaml"


@pytest.fixture(scope="session")
def make_config(random_config):
    """``make_config(**overrides)``: a fresh PipelineConfig of the random models, caching exports under .cache/test."""
    from sfs_core.config import load_config

    def make(overrides: dict | None = None):
        return load_config(random_config, {"cache_dir": str(CACHE / "sfs"), **(overrides or {})})

    return make
