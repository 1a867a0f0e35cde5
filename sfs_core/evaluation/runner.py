"""``sfs evaluate``: predict every image once (resumable), then score against the ground truth.

Per image, predictions are stored as the pipeline produced them, not in dataset space:
``predictions/<id>_label.png`` (uint16 label-table ids) and ``predictions/<id>.json`` (the names
of the ids present, timings, mask count). The JSON is written last and marks the image done,
so an interrupted run resumes where it stopped, and a changed label mapping re-scores without
re-running the models.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from sfs_core.evaluation.datasets import Sample, SegmentationDataset
from sfs_core.evaluation.label_mapping import LabelMapper
from sfs_core.evaluation.metrics import ConfusionMatrix
from sfs_core.evaluation.report import percentile_summary, plot_per_class_iou, stage_latencies, write_json
from sfs_core.result import SemanticResult

MIOU_CONVENTION = (
    "mmseg IoUMetric: one confusion matrix over all images; pixels with ground truth == ignore_index "
    "are skipped; mIoU/mAcc average the classes whose IoU is defined (present in ground truth or "
    "prediction; classes absent from both are excluded); predicted pixels with no dataset class "
    "(unmapped labels) count as misses of the ground-truth class"
)


class FramePipeline(Protocol):
    """What evaluation and replay need from :class:`sfs_core.pipeline.Pipeline`."""

    def process(self, image: np.ndarray) -> SemanticResult: ...


@dataclass(frozen=True)
class StoredPrediction:
    label_map: np.ndarray  # (H, W) uint16 label-table ids
    names: dict[int, str]  # id -> label name, for every id present in label_map
    timings: dict[str, float]
    num_masks: int


class PredictionStore:
    """The ``predictions/`` folder of an evaluation run."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    def paths(self, sample_id: str) -> tuple[Path, Path]:
        return self.folder / f"{sample_id}_label.png", self.folder / f"{sample_id}.json"

    def has(self, sample_id: str) -> bool:
        png, sidecar = self.paths(sample_id)
        if not (png.exists() and sidecar.exists()):
            return False
        try:
            json.loads(sidecar.read_text())
        except (OSError, ValueError):
            return False
        return True

    def save(self, sample: Sample, result: SemanticResult) -> None:
        png, sidecar = self.paths(sample.id)
        png.parent.mkdir(parents=True, exist_ok=True)
        if not cv2.imwrite(str(png), result.label_map):
            raise OSError(f"cannot write '{png}'")
        present = np.flatnonzero(np.bincount(result.label_map.reshape(-1)))
        names = result.label_table.names
        write_json(sidecar, {
            "image": str(sample.image),
            "image_size": list(result.image_size),
            "labels": {str(i): names[i] for i in present.tolist()},
            "num_masks": len(result.masks),
            "timings_ms": {k: round(v, 3) for k, v in result.timings.items()},
        })

    def load(self, sample_id: str) -> StoredPrediction:
        png, sidecar = self.paths(sample_id)
        meta = json.loads(sidecar.read_text())
        label_map = cv2.imread(str(png), cv2.IMREAD_UNCHANGED)
        if label_map is None or label_map.ndim != 2:
            raise ValueError(f"prediction '{png}' is missing or not a one-channel image")
        names = {int(k): v for k, v in meta["labels"].items()}
        return StoredPrediction(label_map, names, meta.get("timings_ms", {}), int(meta.get("num_masks", 0)))


def dataset_prediction(prediction: StoredPrediction, mapper: LabelMapper) -> np.ndarray:
    """The stored label map in the dataset's class ids (``ignore_index`` where unmapped)."""
    size = max(prediction.names, default=0) + 1
    lut = np.full(max(size, int(prediction.label_map.max(initial=0)) + 1), mapper.space.ignore_index, dtype=np.int64)
    known = np.zeros(lut.size, dtype=bool)
    for label_id, name in prediction.names.items():
        class_id = mapper.map(name).class_id
        lut[label_id] = mapper.space.ignore_index if class_id is None else class_id
        known[label_id] = True
    present = np.unique(prediction.label_map)
    if not known[present].all():
        raise ValueError(f"label ids {present[~known[present]].tolist()} have no name in the prediction's JSON")
    return lut[prediction.label_map]


def evaluate(
    dataset: SegmentationDataset,
    out_dir: str | Path,
    pipeline_factory: Callable[[], FramePipeline],
    mapper: LabelMapper,
    limit: int | None = None,
    progress: bool = True,
    extra: dict | None = None,
) -> dict:
    """Predict the missing images, score all of them, write ``report.json`` and ``per_class_iou.png``.

    ``pipeline_factory`` is only called when at least one image still needs a prediction, so a
    fully resumed run loads no model. Returns the report (also written to ``out_dir``).
    """
    from tqdm import tqdm

    out_dir = Path(out_dir)
    store = PredictionStore(out_dir / "predictions")
    samples = dataset.samples(limit)
    todo = [s for s in samples if not store.has(s.id)]
    t_start = time.perf_counter()
    load_seconds = None
    if todo:
        t0 = time.perf_counter()
        pipeline = pipeline_factory()
        load_seconds = getattr(pipeline, "load_seconds", time.perf_counter() - t0)
        for sample in tqdm(todo, desc=f"predict {dataset.name}", unit="img", disable=not progress):
            store.save(sample, pipeline.process(dataset.load_image(sample)))
    predict_seconds = time.perf_counter() - t_start

    confusion = ConfusionMatrix(len(dataset.classes), dataset.ignore_index)
    timings, masks = [], []
    t0 = time.perf_counter()
    for sample in tqdm(samples, desc=f"score {dataset.name}", unit="img", disable=not progress):
        prediction = store.load(sample.id)
        confusion.update(dataset_prediction(prediction, mapper), dataset.load_label(sample))
        timings.append(prediction.timings)
        masks.append(prediction.num_masks)
    metrics = confusion.summary(dataset.classes)
    report = {
        "dataset": dataset.name,
        "root": str(dataset.root),
        "split": dataset.split,
        "images": len(samples),
        "predicted_now": len(todo),
        "resumed": len(samples) - len(todo),
        "protocol": {
            "num_classes": len(dataset.classes),
            "ignore_index": dataset.ignore_index,
            "reduce_zero_label": dataset.reduce_zero_label,
            "miou_convention": MIOU_CONVENTION,
        },
        "metrics": metrics,
        "timing": {
            "model_load_s": load_seconds,
            "predict_wall_s": round(predict_seconds, 3),
            "score_wall_s": round(time.perf_counter() - t0, 3),
            "per_image_ms": stage_latencies(timings),
            "note": "per-image timings are those stored with each prediction (resumed images keep theirs)",
        },
        "masks_per_image": percentile_summary(masks) | {"unit": "masks"},
        "label_mapping": mapper.to_json(),
        **(extra or {}),
    }
    write_json(out_dir / "report.json", report)
    miou = metrics["mIoU"]
    title = f"{dataset.name} {dataset.split}: per-class IoU over {len(samples)} images"
    title += f" (mIoU {100 * miou:.2f}%)" if miou is not None else ""
    plot_per_class_iou(metrics["per_class"], miou, out_dir / "per_class_iou.png", title)
    return report


def format_summary(report: dict) -> str:
    """A few lines for the terminal."""
    m = report["metrics"]
    pct = lambda v: "n/a" if v is None else f"{100 * v:.2f}%"  # noqa: E731
    total = report["timing"]["per_image_ms"].get("total", {})
    lines = [
        f"{report['dataset']} {report['split']}: {report['images']} images ({report['predicted_now']} predicted now, {report['resumed']} resumed)",
        f"mIoU {pct(m['mIoU'])} over {m['classes_counted']} classes | mAcc {pct(m['mAcc'])} | aAcc {pct(m['aAcc'])}",
        f"latency per image: p50 {total.get('p50')} ms, p90 {total.get('p90')} ms",
    ]
    mapped = [e for e in report["label_mapping"]["entries"] if e["class_id"] is not None]
    lines.append(f"label mapping: {len(mapped)} of {len(report['label_mapping']['entries'])} labels mapped into {report['dataset']} classes")
    return "\n".join(lines)
