"""sfs_core.evaluation.datasets and .runner: official layouts, label preprocessing, resumable evaluate."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from fixtures_eval import FakePipeline, camera_frames, make_ade20k, make_cityscapes, synthetic_labels

from sfs_core.evaluation.datasets import ADE20K, CITYSCAPES_ID_TO_TRAIN_ID, Cityscapes, open_dataset, reduce_zero_label
from sfs_core.evaluation.label_mapping import LabelMapper, builtin_label_space
from sfs_core.evaluation.metrics import ConfusionMatrix
from sfs_core.evaluation.runner import PredictionStore, dataset_prediction, evaluate, format_summary


@pytest.fixture(scope="module")
def cityscapes_root(tmp_path_factory):
    return make_cityscapes(tmp_path_factory.mktemp("cityscapes"), count=3)


@pytest.fixture(scope="module")
def ade_root(tmp_path_factory):
    return make_ade20k(tmp_path_factory.mktemp("ade"), count=3)


def test_cityscapes_layout(cityscapes_root):
    dataset = open_dataset("cityscapes", cityscapes_root)
    samples = dataset.samples()
    assert [s.id for s in samples] == ["aachen/aachen_000000_000019", "aachen/aachen_000002_000019", "zurich/zurich_000001_000019"]
    assert [s.id for s in dataset.samples(limit=2)] == [s.id for s in samples[:2]]
    image, labels = dataset.load_image(samples[0]), dataset.load_label(samples[0])
    assert image.shape == (64, 128, 3) and labels.shape == (64, 128) and labels.dtype == np.uint8
    assert np.array_equal(labels, synthetic_labels(camera_frames(1, (128, 64))[0], 19))


def test_root_may_be_the_parent_folder(tmp_path):
    make_cityscapes(tmp_path / "cityscapes", count=1)
    assert len(open_dataset("cityscapes", tmp_path).samples()) == 1


def test_cityscapes_label_ids_fallback(tmp_path):
    root = make_cityscapes(tmp_path, count=1, label_ids=True)
    (sample,) = Cityscapes(root).samples()
    assert sample.label.name.endswith("_gtFine_labelIds.png")
    expected = synthetic_labels(camera_frames(1, (128, 64))[0], 19)
    assert np.array_equal(Cityscapes(root).load_label(sample), expected)
    assert CITYSCAPES_ID_TO_TRAIN_ID[[0, 7, 26, 33, 34, 255]].tolist() == [255, 0, 13, 18, 255, 255]


def test_ade20k_layout_and_reduce_zero_label(ade_root):
    for root in (ade_root, ade_root / "ADEChallengeData2016"):
        dataset = open_dataset("ade20k", root)
        assert [s.id for s in dataset.samples()] == ["ADE_val_00000001", "ADE_val_00000002", "ADE_val_00000003"]
    sample = dataset.samples()[0]
    raw = cv2.imread(str(sample.label), cv2.IMREAD_UNCHANGED)
    labels = dataset.load_label(sample)
    assert np.array_equal(labels[raw == 0], np.full((raw == 0).sum(), 255))
    assert np.array_equal(labels[raw > 0], raw[raw > 0] - 1)
    assert reduce_zero_label(np.array([0, 1, 150, 255], np.uint8)).tolist() == [255, 0, 149, 255]


def test_missing_data_errors(tmp_path, cityscapes_root):
    with pytest.raises(FileNotFoundError, match="leftImg8bit/val/<city>"):
        Cityscapes(tmp_path).samples()
    with pytest.raises(FileNotFoundError, match="ADEChallengeData2016/images/validation"):
        ADE20K(tmp_path).samples()
    with pytest.raises(ValueError, match="unknown dataset 'coco'"):
        open_dataset("coco", tmp_path)
    root = make_cityscapes(tmp_path / "broken", count=1)
    next((root / "gtFine").rglob("*.png")).unlink()
    with pytest.raises(FileNotFoundError, match="no ground truth for"):
        Cityscapes(root).samples()


class CountingFactory:
    def __init__(self):
        self.calls = 0

    def __call__(self):
        self.calls += 1
        return FakePipeline(grow_at=1)


def test_evaluate_end_to_end_resume_and_rescore(cityscapes_root, tmp_path):
    dataset = open_dataset("cityscapes", cityscapes_root)
    factory = CountingFactory()
    out = tmp_path / "eval"
    report = evaluate(dataset, out, factory, LabelMapper(builtin_label_space("cityscapes")), limit=2, progress=False)
    assert factory.calls == 1 and (report["images"], report["predicted_now"], report["resumed"]) == (2, 2, 0)
    assert (out / "predictions" / "aachen" / "aachen_000000_000019_label.png").exists()
    assert (out / "per_class_iou.png").stat().st_size > 10_000
    on_disk = json.loads((out / "report.json").read_text())
    assert on_disk["metrics"]["mIoU"] == report["metrics"]["mIoU"]
    mapping = {e["label"]: (e["class_name"], e["method"]) for e in on_disk["label_mapping"]["entries"]}
    assert mapping["tree"] == ("vegetation", "synonym") and mapping["kite"] == (None, "unmapped")

    # independent recomputation: the fake pipeline's label maps mapped by hand
    pipeline, expected = FakePipeline(grow_at=1), ConfusionMatrix(19)
    by_name = {"road": 0, "car": 13, "person": 11, "tree": 8, "sky": 10}
    for sample in dataset.samples(2):
        result = pipeline.process(dataset.load_image(sample))
        lut = np.array([by_name.get(n, 255) for n in result.label_table.names])
        expected.update(lut[result.label_map], dataset.load_label(sample))
    assert report["metrics"]["mIoU"] == pytest.approx(expected.miou(), abs=1e-12)
    assert report["metrics"]["aAcc"] == pytest.approx(expected.aacc(), abs=1e-12)

    # resume: nothing to predict, no model loaded, same numbers; then one more image
    again = evaluate(dataset, out, factory, LabelMapper(builtin_label_space("cityscapes")), limit=2, progress=False)
    assert factory.calls == 1 and again["resumed"] == 2 and again["metrics"] == report["metrics"]
    more = evaluate(dataset, out, factory, LabelMapper(builtin_label_space("cityscapes")), progress=False)
    assert factory.calls == 2 and (more["predicted_now"], more["resumed"]) == (1, 2)
    assert "mIoU" in format_summary(more) and "3 images (1 predicted now, 2 resumed)" in format_summary(more)


def test_half_written_prediction_is_redone(cityscapes_root, tmp_path):
    dataset = open_dataset("cityscapes", cityscapes_root)
    store = PredictionStore(tmp_path / "predictions")
    sample = dataset.samples(1)[0]
    store.save(sample, FakePipeline().process(dataset.load_image(sample)))
    assert store.has(sample.id)
    store.paths(sample.id)[1].write_text("{ truncated")
    assert not store.has(sample.id)


def test_prediction_with_unnamed_ids_is_rejected(cityscapes_root, tmp_path):
    dataset = open_dataset("cityscapes", cityscapes_root)
    store = PredictionStore(tmp_path)
    sample = dataset.samples(1)[0]
    store.save(sample, FakePipeline().process(dataset.load_image(sample)))
    prediction = store.load(sample.id)
    prediction.names.pop(2)
    with pytest.raises(ValueError, match=r"label ids \[2\] have no name"):
        dataset_prediction(prediction, LabelMapper(builtin_label_space("cityscapes")))


def test_evaluate_ade20k_layout(ade_root, tmp_path):
    report = evaluate(open_dataset("ade20k", ade_root), tmp_path, CountingFactory(), LabelMapper(builtin_label_space("ade20k")), progress=False)
    assert report["protocol"]["reduce_zero_label"] and report["protocol"]["num_classes"] == 150
    assert len(report["metrics"]["per_class"]) == 150
    assert (tmp_path / "per_class_iou.png").exists()
