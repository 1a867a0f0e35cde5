"""Reports people can read: JSON (NaN-free), latency percentiles and a per-class IoU bar chart."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

PERCENTILES = (50, 90, 95, 99)


def percentile_summary(samples: Iterable[float]) -> dict[str, float | int | None]:
    """``count, mean, p50, p90, p95, p99, max`` of some samples (milliseconds, masks; ``None`` when empty)."""
    values = np.asarray(list(samples), dtype=np.float64)
    if values.size == 0:
        return {"count": 0, "mean": None, **{f"p{p}": None for p in PERCENTILES}, "max": None}
    quantiles = np.percentile(values, PERCENTILES)
    return {
        "count": int(values.size),
        "mean": round(float(values.mean()), 3),
        **{f"p{p}": round(float(q), 3) for p, q in zip(PERCENTILES, quantiles, strict=True)},
        "max": round(float(values.max()), 3),
    }


def stage_latencies(timings: Sequence[Mapping[str, float]]) -> dict[str, dict]:
    """:func:`percentile_summary` per stage name over a list of per-frame ``{stage: ms}`` dicts."""
    stages: dict[str, list[float]] = {}
    for frame in timings:
        for stage, ms in frame.items():
            stages.setdefault(stage, []).append(ms)
    return {stage: percentile_summary(values) for stage, values in stages.items()}


def _clean(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, np.generic):
        return _clean(value.item())
    if isinstance(value, Path):
        return str(value)
    return value


def write_json(path: str | os.PathLike, payload: Mapping) -> Path:
    """Write ``payload`` as indented JSON (NaN/inf become ``null``), atomically (tmp + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(_clean(dict(payload)), indent=2, allow_nan=False) + "\n")
    os.replace(tmp, path)
    return path


def plot_per_class_iou(per_class: Sequence[Mapping], miou: float | None, path: str | os.PathLike, title: str) -> Path:
    """Horizontal bar chart of per-class IoU (in %, dataset order) with the mIoU as a line.

    ``per_class`` holds ``{"name", "iou"}`` rows (``iou`` ``None`` = absent from ground truth
    and prediction: drawn as a grey "n/a" so the class list stays complete).
    """
    import matplotlib
    from matplotlib.figure import Figure  # no pyplot: no global state, no GUI backend (Agg canvas)

    names = [row["name"] for row in per_class]
    ious = np.array([np.nan if row["iou"] is None else 100.0 * row["iou"] for row in per_class])
    height = max(3.0, (0.22 if len(names) <= 40 else 0.15) * len(names) + 1.2)
    fig = Figure(figsize=(7.5, height), dpi=110, layout="constrained")
    ax = fig.subplots()
    y = np.arange(len(names))
    present = ~np.isnan(ious)
    colours = matplotlib.colormaps["RdYlGn"](np.nan_to_num(ious, nan=0.0) / 100.0)
    ax.barh(y[present], ious[present], color=colours[present], edgecolor="black", linewidth=0.4)
    for yi in y[~present]:
        ax.text(0.5, yi, "n/a (absent)", va="center", ha="left", fontsize=7, color="grey")
    for yi, value in zip(y[present], ious[present], strict=True):
        ax.text(min(value + 0.8, 92.0), yi, f"{value:.1f}", va="center", ha="left", fontsize=7)
    if miou is not None:
        ax.axvline(100.0 * miou, color="navy", linestyle="--", linewidth=1.2, label=f"mIoU {100.0 * miou:.2f}%")
        ax.legend(loc="lower right", fontsize=8)
    ax.set_yticks(y, names, fontsize=8 if len(names) <= 40 else 6)
    ax.set_ylim(len(names) - 0.5, -0.5)  # first class on top, no empty margins
    ax.set_xlim(0, 100)
    ax.set_xlabel("IoU (%)")
    ax.set_title(title, fontsize=10)
    ax.grid(axis="x", linestyle=":", linewidth=0.6)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path
