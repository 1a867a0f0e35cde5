"""Train the mask generator: a shrunk YOLOv8-seg, class-agnostic, with ultralytics' own trainer.

The architecture is ultralytics' ``yolov8-seg.yaml`` (FastSAM's) with one extra compound scale
(depth, width, max channels from :class:`~sfs_core.synthetic.recipes.MaskRecipe`) and one class.
Training data is written in the YOLO-seg layout (:mod:`sfs_core.synthetic.yolo_dataset`). The
result is saved the way :func:`sfs_core.random_models.build_fastsam` saves FastSAM checkpoints,
so ``ultralytics.FastSAM(path)`` and :class:`sfs_core.masks.MaskGenerator` load it.
"""

from __future__ import annotations

import contextlib
import io
import logging
import time
from collections.abc import Sequence
from pathlib import Path

import yaml

from sfs_core.synthetic.recipes import MaskRecipe
from sfs_core.synthetic.scenes import Scene
from sfs_core.synthetic.training import StageReport, all_cpu_threads
from sfs_core.synthetic.yolo_dataset import write_yolo_seg_dataset

log = logging.getLogger(__name__)
MODEL_YAML = "sfs-yolov8t-seg.yaml"


def model_yaml(recipe: MaskRecipe) -> dict:
    """ultralytics' YOLOv8-seg architecture dict with scale ``t`` set from the recipe, ``nc=1``."""
    import ultralytics

    base = Path(ultralytics.__file__).parent / "cfg" / "models" / "v8" / "yolov8-seg.yaml"
    cfg = yaml.safe_load(base.read_text())
    cfg["nc"] = 1
    cfg["scales"] = {"t": [recipe.depth, recipe.width, recipe.max_channels]}
    cfg["scale"] = "t"
    return cfg


def save_fastsam_checkpoint(model, path: Path, imgsz: int) -> Path:
    """Save a trained ``SegmentationModel`` as a FastSAM-loadable ``.pt`` (half precision, one
    class named ``object``)."""
    import copy

    import torch

    model = copy.deepcopy(model).float().eval()
    model.names = {0: "object"}
    model.args = {"task": "segment", "imgsz": imgsz}
    for p in model.parameters():
        p.requires_grad_(False)
    torch.save({"model": model.half(), "train_args": {"task": "segment", "imgsz": imgsz}}, path)
    return path


@contextlib.contextmanager
def _all_threads_through_select_device():
    """Train on every available CPU: ultralytics' ``select_device`` sets torch's thread count to
    its ``NUM_THREADS`` (``cpu_count - 1``: one thread, half the speed, on a 2-core machine)."""
    from ultralytics.utils import torch_utils

    patched = torch_utils.NUM_THREADS
    with all_cpu_threads() as threads:
        torch_utils.NUM_THREADS = threads
        try:
            yield
        finally:
            torch_utils.NUM_THREADS = patched


@contextlib.contextmanager
def _quiet_ultralytics(quiet: bool):
    """Lower ultralytics' logger to warnings and swallow its progress bars (stdout) when ``quiet``."""
    if not quiet:
        yield
        return
    from ultralytics.utils import LOGGER

    level = LOGGER.level
    LOGGER.setLevel(logging.WARNING)
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        LOGGER.setLevel(level)


def _final_losses(trainer) -> dict[str, float]:
    """The last epoch's mean losses by name (``tloss`` is a tensor or a dict across versions)."""
    loss = getattr(trainer, "tloss", None)
    if loss is None:
        return {}
    if isinstance(loss, dict):
        return {str(k): round(float(v), 4) for k, v in loss.items()}
    names = list(getattr(trainer, "loss_names", ()))
    values = [float(v) for v in loss.reshape(-1)]
    return {n: round(v, 4) for n, v in zip(names or [str(i) for i in range(len(values))], values)}


def train_masks(train_scenes: Sequence[Scene], recipe: MaskRecipe, out_path: Path, work_dir: Path,
                quiet: bool = True, device: str = "cpu") -> StageReport:
    """Write the YOLO-seg dataset under ``work_dir``, train, save the checkpoint at ``out_path``.

    ultralytics seeds everything from ``recipe.seed`` and runs with ``deterministic=True`` (it
    restores torch's global deterministic flag afterwards). ``quiet`` hides its console output.
    """
    from ultralytics import YOLO

    report = StageReport("masks")
    t0, cpu0 = time.perf_counter(), time.process_time()
    work_dir = Path(work_dir)
    data = write_yolo_seg_dataset(work_dir / "dataset", {"train": train_scenes})
    arch = work_dir / MODEL_YAML
    arch.write_text(yaml.safe_dump(model_yaml(recipe), sort_keys=False))
    epochs = recipe.epochs
    args = dict(
        data=str(data), epochs=epochs, imgsz=recipe.imgsz, batch=recipe.batch, workers=0, device=device,
        optimizer=recipe.optimizer, lr0=recipe.lr0, warmup_epochs=min(recipe.warmup_epochs, epochs / 2), mosaic=recipe.mosaic, scale=recipe.scale,
        close_mosaic=min(recipe.close_mosaic, epochs), seed=recipe.seed, deterministic=True,
        val=False, plots=False, amp=False, save=True, verbose=False, exist_ok=True,
        project=str(work_dir / "runs"), name="train",
    )
    with _quiet_ultralytics(quiet), _all_threads_through_select_device():
        model = YOLO(str(arch), task="segment")
        model.train(**args)
    trainer = model.trainer
    trained = trainer.ema.ema if getattr(trainer, "ema", None) is not None else trainer.model
    save_fastsam_checkpoint(trained, Path(out_path), recipe.imgsz)
    report.seconds = time.perf_counter() - t0
    report.steps = epochs * max(1, len(train_scenes) // recipe.batch)
    losses = _final_losses(trainer)
    report.losses = [sum(losses.values())] if losses else []
    report.extra = {"cpu_seconds": round(time.process_time() - cpu0, 1), "epochs": epochs, "imgsz": recipe.imgsz,
                    "parameters": sum(p.numel() for p in trained.parameters()), "final_losses": losses}
    return report
