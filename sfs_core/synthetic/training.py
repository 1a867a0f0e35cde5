"""What the three trainers share: the training scenes, deterministic torch state, timing.

Training scenes are rendered once per process (:class:`TrainingScenes`) and handed to each
trainer; :func:`deterministic` seeds every generator and switches torch to deterministic
algorithms for the duration of a ``with`` block, restoring the previous state after it.
"""

from __future__ import annotations

import contextlib
import os
import random
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from sfs_core.synthetic.recipes import DataRecipe
from sfs_core.synthetic.scenes import Scene, render, sample_scene


class TrainingScenes(Sequence[Scene]):
    """The ``recipe.train_scenes`` training scenes, rendered on first access and kept in memory
    (about 0.5 MB per 320x240 scene)."""

    def __init__(self, recipe: DataRecipe) -> None:
        self.recipe = recipe
        self._scenes: list[Scene] | None = None
        self.render_seconds = 0.0

    def _all(self) -> list[Scene]:
        if self._scenes is None:
            t0 = time.perf_counter()
            self._scenes = [render(sample_scene(self.recipe.scene_seed(i), self.recipe.scene)) for i in range(self.recipe.train_scenes)]
            self.render_seconds = time.perf_counter() - t0
        return self._scenes

    def __len__(self) -> int:
        return self.recipe.train_scenes

    def __getitem__(self, index):  # type: ignore[override]
        return self._all()[index]

    def __iter__(self) -> Iterator[Scene]:
        return iter(self._all())


@contextlib.contextmanager
def deterministic(seed: int) -> Iterator[None]:
    """Seed python, numpy and torch; use deterministic torch algorithms inside the block."""
    import torch

    previous = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous[0], warn_only=previous[1])


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


@contextlib.contextmanager
def all_cpu_threads() -> Iterator[int]:
    """Run torch on every available CPU inside the block (restoring the count after it).

    Needed because importing ultralytics sets ``OMP_NUM_THREADS`` to ``cpu_count - 1``, which
    torch adopts if it had not started its thread pool yet: half the speed on 2 cores.
    """
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(available_cpus())
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(previous)


@dataclass
class StageReport:
    """What one training stage did: wall seconds, steps and its last losses."""

    stage: str
    seconds: float = 0.0
    steps: int = 0
    losses: list[float] = field(default_factory=list)
    extra: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"stage": self.stage, "seconds": round(self.seconds, 2), "steps": self.steps,
                "final_loss": round(self.losses[-1], 4) if self.losses else None, **self.extra}


def log_every(total: int, count: int = 10) -> int:
    """A logging period giving about ``count`` lines over ``total`` steps."""
    return max(1, total // count)
