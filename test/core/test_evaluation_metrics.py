"""sfs_core.evaluation.metrics: exact hand-computed IoU, and agreement with torchmetrics / mmseg."""

from __future__ import annotations

import numpy as np
import pytest

from sfs_core.evaluation.metrics import ConfusionMatrix

GT = np.array([
    [0, 0, 1, 1],
    [0, 255, 1, 3],
    [255, 255, 3, 3],
])
PRED = np.array([
    [0, 1, 1, 1],
    [2, 0, 255, 3],  # (1, 1): ground truth ignored; (1, 2): no class predicted (unmapped) -> miss for class 1
    [3, 0, 3, 0],    # (2, 0), (2, 1): ignored
])


def test_hand_computed_example_with_ignore_and_absent_classes():
    """Classes 0..4. Class 2 is predicted but absent from GT (IoU 0, counted); class 4 is
    absent from both (NaN, excluded from the mean)."""
    cm = ConfusionMatrix(5)
    cm.update(PRED, GT)
    # class 0: TP 1, GT 3, Pred 2 -> 1/4; class 1: TP 2, GT 3, Pred 3 -> 2/4; class 2: 0/1; class 3: TP 2, GT 3, Pred 2 -> 2/3
    iou = cm.iou()
    assert iou[:4].tolist() == [1 / 4, 2 / 4, 0.0, 2 / 3] and np.isnan(iou[4])
    assert cm.miou() == pytest.approx(17 / 48, abs=1e-15)
    assert cm.aacc() == pytest.approx(5 / 9, abs=1e-15)
    acc = cm.accuracy()
    assert acc[[0, 1, 3]].tolist() == [1 / 3, 2 / 3, 2 / 3] and np.isnan(acc[[2, 4]]).all()
    assert cm.macc() == pytest.approx(5 / 9, abs=1e-15)
    summary = cm.summary(["a", "b", "c", "d", "e"])
    assert summary["classes_counted"] == 4 and summary["valid_pixels"] == 9 and summary["unmapped_prediction_pixels"] == 1
    assert summary["per_class"][4] == {"id": 4, "name": "e", "iou": None, "acc": None, "gt_pixels": 0, "pred_pixels": 0}
    assert summary["per_class"][2]["iou"] == 0.0 and summary["per_class"][2]["pred_pixels"] == 1


def test_accumulates_over_images_not_per_image_mean():
    cm = ConfusionMatrix(2)
    cm.update(np.array([0, 0, 0, 0]), np.array([0, 0, 0, 0]))  # image 1: class 0 perfect
    cm.update(np.array([1]), np.array([0]))  # image 2: one miss
    assert cm.iou()[0] == pytest.approx(4 / 5) and cm.iou()[1] == 0.0


def test_out_of_range_predictions_are_misses_and_merge_adds():
    a, b = ConfusionMatrix(3), ConfusionMatrix(3)
    a.update(np.array([7, -1, 0]), np.array([0, 1, 2]))
    assert a.counts[:, 3].tolist() == [1, 1, 0] and a.iou().tolist() == [0.0, 0.0, 0.0]
    b.update(np.array([0]), np.array([0]))
    a.merge(b)
    assert a.iou()[0] == pytest.approx(1 / 3)


def test_errors():
    cm = ConfusionMatrix(3)
    with pytest.raises(ValueError, match="differ in shape"):
        cm.update(np.zeros((2, 2), int), np.zeros((2, 3), int))
    with pytest.raises(ValueError, match="outside 0..2 and not ignore_index 255"):
        cm.update(np.zeros(2, int), np.array([1, 3]))
    with pytest.raises(ValueError, match="integer"):
        cm.update(np.zeros(2), np.zeros(2, int))
    with pytest.raises(ValueError, match="is a valid class id"):
        ConfusionMatrix(3, ignore_index=1)
    with pytest.raises(ValueError, match="2 class names for 3 classes"):
        cm.summary(["a", "b"])
    with pytest.warns(RuntimeWarning, match="no class is present"):
        assert np.isnan(cm.miou())


def random_batch(rng, classes_used: int, shape=(3, 40, 50)):
    gt = rng.integers(0, classes_used, shape)
    gt[rng.random(shape) < 0.1] = 255
    pred = np.where(rng.random(shape) < 0.4, gt, rng.integers(0, classes_used, shape))
    pred[pred == 255] = 0
    return pred, gt


def test_matches_torchmetrics_on_random_data():
    torch = pytest.importorskip("torch")
    tm = pytest.importorskip("torchmetrics.classification")
    rng = np.random.default_rng(0)
    num_classes = 19
    ours = ConfusionMatrix(num_classes)
    per_class = tm.MulticlassJaccardIndex(num_classes, average=None, ignore_index=255)
    macro = tm.MulticlassJaccardIndex(num_classes, average="macro", ignore_index=255)
    accuracy = tm.MulticlassAccuracy(num_classes, average="micro", ignore_index=255)
    for _ in range(4):  # several images: both accumulate
        pred, gt = random_batch(rng, classes_used=16)  # classes 16..18 absent from both
        ours.update(pred, gt)
        for metric in (per_class, macro, accuracy):
            metric.update(torch.from_numpy(pred), torch.from_numpy(gt))
    iou = ours.iou()
    assert np.isnan(iou[16:]).all()
    np.testing.assert_allclose(iou[:16], per_class.compute().double().numpy()[:16], rtol=1e-6)
    assert ours.miou() == pytest.approx(float(macro.compute()), rel=1e-6)  # macro also skips absent classes
    assert ours.aacc() == pytest.approx(float(accuracy.compute()), rel=1e-6)


def mmseg_intersect_and_union(pred: np.ndarray, label: np.ndarray, num_classes: int, ignore_index: int = 255):
    """A numpy port of mmseg's ``IoUMetric.intersect_and_union`` (histogram based, not a
    confusion matrix): an independent reference, including predictions outside the classes."""
    mask = label != ignore_index
    pred, label = pred[mask], label[mask]
    intersect = pred[pred == label]
    area_intersect = np.histogram(intersect, bins=num_classes, range=(0, num_classes - 1))[0]
    area_pred = np.histogram(pred, bins=num_classes, range=(0, num_classes - 1))[0]
    area_label = np.histogram(label, bins=num_classes, range=(0, num_classes - 1))[0]
    return area_intersect, area_label + area_pred - area_intersect, area_label


def test_matches_mmseg_reference_with_unmapped_predictions():
    rng = np.random.default_rng(1)
    num_classes = 12
    ours = ConfusionMatrix(num_classes)
    totals = np.zeros((3, num_classes), np.int64)
    for _ in range(3):
        pred, gt = random_batch(rng, classes_used=10)
        pred[rng.random(pred.shape) < 0.15] = 255  # labels with no dataset class
        ours.update(pred, gt)
        totals += np.stack(mmseg_intersect_and_union(pred, gt, num_classes))
    intersect, union, label = totals
    with np.errstate(invalid="ignore", divide="ignore"):
        reference_iou = intersect / union
    np.testing.assert_array_equal(ours.iou(), reference_iou)  # NaN where NaN, bit-identical elsewhere
    assert ours.miou() == pytest.approx(np.nanmean(reference_iou), abs=1e-15)
    assert ours.aacc() == pytest.approx(intersect.sum() / label.sum(), abs=1e-15)
