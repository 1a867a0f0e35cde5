"""Process-wide runtime set-up that must happen before the heavy ML imports."""

from __future__ import annotations

import os
from pathlib import Path

OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "YOLO_OFFLINE": "1", "YOLO_AUTOINSTALL": "False"}


def configure_runtime(offline: bool, cache_dir: str | os.PathLike, threads: int = 0) -> None:
    """Set offline flags and a writable ultralytics settings folder, then torch threads.

    Call before ``ultralytics`` or ``transformers`` is imported: both read these variables at
    import time (``HF_HUB_OFFLINE`` only then; ultralytics otherwise probes the network for ~20 s).
    """
    if offline:
        os.environ.update(OFFLINE_ENV)
    cache = Path(os.path.expanduser(str(cache_dir)))
    settings = cache / "ultralytics"
    try:
        settings.mkdir(parents=True, exist_ok=True)
        os.environ.setdefault("YOLO_CONFIG_DIR", str(settings))
    except OSError:  # unwritable cache: let ultralytics fall back to its own temp folder
        pass
    if threads > 0:
        import torch

        torch.set_num_threads(threads)
