"""Semantic-segmentation metrics from one accumulated confusion matrix (mmseg's protocol).

Conventions, identical to mmsegmentation's ``IoUMetric``:

* Pixels whose ground truth is ``ignore_index`` (255) are left out entirely.
* The matrix is accumulated over the whole dataset (not averaged per image).
* ``IoU_c = TP_c / (GT_c + Pred_c - TP_c)``; a class absent from both ground truth and
  prediction has ``0 / 0 = NaN`` and is **excluded** from the mean. A class that is predicted
  but absent from the ground truth has IoU 0 and counts.
* ``mIoU`` and ``mAcc`` are NaN-means over classes; ``aAcc`` is correct / valid pixels.
* A prediction outside ``[0, num_classes)`` (for example 255: "no dataset class", which is what
  an unmapped label becomes) is a miss for the ground-truth class of that pixel and a false
  positive for no class. It lives in an extra last column of the matrix.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np

IGNORE_INDEX = 255


class ConfusionMatrix:
    """Pixel counts ``[gt_class, predicted_class]`` of shape ``(C, C + 1)``, int64.

    Column ``C`` counts valid ground-truth pixels predicted as no class.

    >>> cm = ConfusionMatrix(2)
    >>> cm.update(np.array([[0, 1], [1, 255]]), np.array([[0, 1], [0, 1]]))
    >>> cm.iou().tolist(), cm.aacc()
    ([0.5, 0.3333333333333333], 0.5)
    """

    def __init__(self, num_classes: int, ignore_index: int = IGNORE_INDEX) -> None:
        if num_classes <= 0:
            raise ValueError(f"num_classes must be positive, got {num_classes}")
        if 0 <= ignore_index < num_classes:
            raise ValueError(f"ignore_index {ignore_index} is a valid class id (0..{num_classes - 1})")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.counts = np.zeros((num_classes, num_classes + 1), dtype=np.int64)

    def update(self, prediction: np.ndarray, ground_truth: np.ndarray) -> None:
        """Add one image. Both are integer arrays of the same shape.

        Raises ``ValueError`` on a shape mismatch, a non-integer array, or a ground-truth value
        that is neither a class id nor ``ignore_index`` (a corrupt or wrongly reduced label).
        """
        if prediction.shape != ground_truth.shape:
            raise ValueError(f"prediction {prediction.shape} and ground truth {ground_truth.shape} differ in shape")
        for name, array in (("prediction", prediction), ("ground truth", ground_truth)):
            if not np.issubdtype(array.dtype, np.integer):
                raise ValueError(f"{name} must be an integer array, got {array.dtype}")
        gt = ground_truth.reshape(-1).astype(np.int64, copy=False)
        pred = prediction.reshape(-1).astype(np.int64, copy=False)
        valid = gt != self.ignore_index
        gt, pred = gt[valid], pred[valid]
        if gt.size and (gt.min() < 0 or gt.max() >= self.num_classes):
            bad = gt[(gt < 0) | (gt >= self.num_classes)][0]
            raise ValueError(f"ground truth holds {bad}, outside 0..{self.num_classes - 1} and not ignore_index {self.ignore_index}")
        pred = np.where((pred >= 0) & (pred < self.num_classes), pred, self.num_classes)
        width = self.num_classes + 1
        self.counts += np.bincount(gt * width + pred, minlength=self.num_classes * width).reshape(self.num_classes, width)

    def merge(self, other: ConfusionMatrix) -> None:
        """Add another matrix of the same shape (for example from a parallel worker)."""
        if other.counts.shape != self.counts.shape or other.ignore_index != self.ignore_index:
            raise ValueError("cannot merge confusion matrices of different shapes or ignore indices")
        self.counts += other.counts

    # ---- per-class quantities -----------------------------------------------------------------
    def true_positives(self) -> np.ndarray:
        return np.diag(self.counts[:, : self.num_classes]).copy()

    def gt_pixels(self) -> np.ndarray:
        return self.counts.sum(axis=1)

    def predicted_pixels(self) -> np.ndarray:
        return self.counts[:, : self.num_classes].sum(axis=0)

    def iou(self) -> np.ndarray:
        """Per-class IoU, float64, NaN where the class is absent from ground truth and prediction."""
        tp = self.true_positives()
        union = self.gt_pixels() + self.predicted_pixels() - tp
        return _divide(tp, union)

    def accuracy(self) -> np.ndarray:
        """Per-class accuracy (recall) ``TP / GT``, NaN where the class is absent from ground truth."""
        return _divide(self.true_positives(), self.gt_pixels())

    # ---- summaries ----------------------------------------------------------------------------
    def miou(self) -> float:
        return _nanmean(self.iou())

    def macc(self) -> float:
        return _nanmean(self.accuracy())

    def aacc(self) -> float:
        total = int(self.gt_pixels().sum())
        return float(self.true_positives().sum() / total) if total else float("nan")

    def summary(self, class_names: Sequence[str]) -> dict:
        """JSON-ready metrics: ``mIoU``, ``mAcc``, ``aAcc`` (fractions, NaN as ``None``) and per class."""
        if len(class_names) != self.num_classes:
            raise ValueError(f"{len(class_names)} class names for {self.num_classes} classes")
        iou, acc = self.iou(), self.accuracy()
        gt, pred = self.gt_pixels(), self.predicted_pixels()
        per_class = [
            {"id": i, "name": name, "iou": _json_float(iou[i]), "acc": _json_float(acc[i]), "gt_pixels": int(gt[i]), "pred_pixels": int(pred[i])}
            for i, name in enumerate(class_names)
        ]
        return {
            "mIoU": _json_float(self.miou()),
            "mAcc": _json_float(self.macc()),
            "aAcc": _json_float(self.aacc()),
            "classes_counted": int(np.count_nonzero(~np.isnan(iou))),
            "valid_pixels": int(gt.sum()),
            "unmapped_prediction_pixels": int(self.counts[:, self.num_classes].sum()),
            "per_class": per_class,
        }


def _divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    out = np.full(numerator.shape, np.nan, dtype=np.float64)
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out


def _nanmean(values: np.ndarray) -> float:
    if np.isnan(values).all():
        warnings.warn("no class is present in ground truth or prediction; the mean is NaN", RuntimeWarning, stacklevel=3)
        return float("nan")
    return float(np.nanmean(values))


def _json_float(value: float) -> float | None:
    return None if np.isnan(value) else float(value)
