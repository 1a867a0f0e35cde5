"""``sfs evaluate`` end to end on generated Cityscapes and ADE20K layouts (random weights)."""

from __future__ import annotations

import json

import pytest
from fixtures_eval import fast_cli_args, make_ade20k, make_cityscapes

from sfs_core.cli import main

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("dataset,make,classes", [("cityscapes", make_cityscapes, 19), ("ade20k", make_ade20k, 150)])
def test_sfs_evaluate(dataset, make, classes, random_models, tmp_path, capsys):
    root = make(tmp_path / "data", count=3)
    out = tmp_path / "eval"
    args = ["evaluate", "--dataset", dataset, "--root", str(root), "--out", str(out), "--quiet", *fast_cli_args(random_models)]
    assert main([*args, "--limit", "2"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["images"] == 2 and report["predicted_now"] == 2
    assert len(report["metrics"]["per_class"]) == classes and report["metrics"]["mIoU"] is not None
    assert report["timing"]["per_image_ms"]["total"]["count"] == 2 and report["timing"]["model_load_s"] > 0
    assert report["label_mapping"]["entries"] and report["config"]["masks.imgsz"] == 320
    assert (out / "per_class_iou.png").stat().st_size > 10_000
    assert len(list((out / "predictions").rglob("*_label.png"))) == 2
    assert "mIoU" in capsys.readouterr().out

    assert main(args) == 0  # resume: only the third image is predicted
    report = json.loads((out / "report.json").read_text())
    assert (report["images"], report["predicted_now"], report["resumed"]) == (3, 1, 2)


def test_sfs_evaluate_errors(tmp_path, capsys):
    assert main(["evaluate", "--dataset", "cityscapes", "--root", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "leftImg8bit/val/<city>" in capsys.readouterr().err
    labels = tmp_path / "map.yaml"
    labels.write_text("classes: [a, b]\n")
    make_cityscapes(tmp_path / "cs", count=1)
    assert main(["evaluate", "--dataset", "cityscapes", "--root", str(tmp_path / "cs"), "--out", str(tmp_path / "o"), "--label-map", str(labels)]) == 2
    assert "use 'base: cityscapes'" in capsys.readouterr().err
