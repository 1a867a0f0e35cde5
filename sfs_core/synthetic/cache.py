"""Train-or-reuse the three synthetic models, cached by recipe key.

Layout: ``<root>/<stage>-<key>/`` for ``stage`` in ``masks``, ``closed_set``, ``clip``, where
``key`` is :func:`~sfs_core.synthetic.recipes.stage_key` (recipe + source + library versions).
Each folder holds the model (``fastsam.pt``, ``segformer/`` or ``clip/``) and ``report.json``
(recipe, key, training time and losses); ``report.json`` is written last, inside a temporary
folder that is then renamed into place, so a folder that exists is complete. A per-key lock
file makes concurrent callers (parallel CI jobs) wait for one training instead of repeating it.

``root``: the ``cache`` argument, else ``$SFS_SYNTHETIC_CACHE``, else
``~/.cache/sfs_ros/synthetic``. Nothing here is ever committed to the repository.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from sfs_core.synthetic.recipes import STAGES, SyntheticRecipe, recipe_json, recipe_key, stage_key
from sfs_core.synthetic.training import StageReport, TrainingScenes, all_cpu_threads

CACHE_ENV = "SFS_SYNTHETIC_CACHE"
DEFAULT_CACHE = "~/.cache/sfs_ros/synthetic"
REPORT = "report.json"
#: Stage -> model file or folder name inside the stage folder.
ARTIFACTS = {"masks": "fastsam.pt", "closed_set": "segformer", "clip": "clip"}


def cache_root(cache: str | os.PathLike | None = None) -> Path:
    """The cache root (see the module docstring), created if missing."""
    root = Path(os.path.expanduser(str(cache or os.environ.get(CACHE_ENV) or DEFAULT_CACHE))).resolve()
    root.mkdir(parents=True, exist_ok=True)
    return root


@dataclass
class SyntheticModels:
    """Paths of one complete model set, and how it came to be.

    Attributes:
        paths: stage -> model file (``masks``) or folder (``closed_set``, ``clip``).
        keys: stage -> recipe key; ``key`` names the whole set.
        reports: stage -> the stored training report (time, steps, losses).
        trained: stages trained by this call (the others came from the cache).
        seconds: stage -> wall seconds spent in this call (training or loading the report).
    """

    paths: dict[str, Path]
    keys: dict[str, str]
    key: str
    reports: dict[str, dict] = field(default_factory=dict)
    trained: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive ``flock`` on ``path`` for the block (blocks while another process holds it)."""
    with open(path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _train_stage(stage: str, recipe: SyntheticRecipe, scenes: TrainingScenes, folder: Path, quiet: bool) -> StageReport:
    """Train one stage into ``folder`` (which exists and is empty), on every available CPU."""
    with all_cpu_threads():
        return _run_trainer(stage, recipe, scenes, folder, quiet)


def _run_trainer(stage: str, recipe: SyntheticRecipe, scenes: TrainingScenes, folder: Path, quiet: bool) -> StageReport:
    if stage == "masks":
        from sfs_core.synthetic.train_masks import train_masks

        with tempfile.TemporaryDirectory(prefix="sfs-yolo-") as work:
            return train_masks(scenes, recipe.masks, folder / ARTIFACTS[stage], Path(work), quiet=quiet)
    if stage == "closed_set":
        from sfs_core.synthetic.train_closed_set import train_closed_set

        return train_closed_set(scenes, recipe.data, recipe.closed_set, folder / ARTIFACTS[stage])
    from sfs_core.synthetic.train_clip import train_clip

    return train_clip(scenes, recipe.clip, folder / ARTIFACTS[stage])


def ensure_models(recipe: SyntheticRecipe = SyntheticRecipe(), cache: str | os.PathLike | None = None,
                  stages: tuple[str, ...] = tuple(STAGES), log: Callable[[str], None] = print,
                  quiet: bool = True) -> SyntheticModels:
    """Return the models of ``recipe``, training only the stages missing from the cache.

    Stages train in the order given, sharing one rendering of the training scenes. ``log``
    receives one line per stage (reused or trained, with seconds). ``quiet`` hides
    ultralytics' progress output.
    """
    root = cache_root(cache)
    scenes = TrainingScenes(recipe.data)
    models = SyntheticModels(paths={}, keys={s: stage_key(recipe, s) for s in stages}, key=recipe_key(recipe))
    for stage in stages:
        t0 = time.perf_counter()
        key = models.keys[stage]
        folder = root / f"{stage}-{key}"
        with _locked(root / f".{stage}-{key}.lock"):
            if not (folder / REPORT).exists():
                log(f"{stage}: training (key {key}) ...")
                tmp = Path(tempfile.mkdtemp(prefix=f".{stage}-{key}.tmp-", dir=root))
                try:
                    render_before = scenes.render_seconds
                    report = _train_stage(stage, recipe, scenes, tmp, quiet)
                    payload = {"key": key, "recipe": recipe_json(recipe), **report.to_json(),
                               "render_seconds": round(scenes.render_seconds - render_before, 2)}
                    (tmp / REPORT).write_text(json.dumps(payload, indent=2) + "\n")
                    if folder.exists():  # a stale, incomplete folder from a killed run
                        shutil.rmtree(folder)
                    os.replace(tmp, folder)
                finally:
                    shutil.rmtree(tmp, ignore_errors=True)
                models.trained.append(stage)
        models.reports[stage] = json.loads((folder / REPORT).read_text())
        models.paths[stage] = folder / ARTIFACTS[stage]
        models.seconds[stage] = time.perf_counter() - t0
        verb = "trained" if stage in models.trained else "reused"
        log(f"{stage}: {verb} {models.paths[stage]} in {models.seconds[stage]:.1f} s"
            + (f" (training took {models.reports[stage]['seconds']:.1f} s)" if verb == "reused" else ""))
    return models
