"""The whole per-frame path with the real architectures (random weights)."""

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest
from tiny_segmenters import build_mask2former

from sfs_core.config import ConfigError
from sfs_core.labels import UNLABELED_ID, LabelSource
from sfs_core.pipeline import Pipeline, instance_stats

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def pipeline(make_config):
    return Pipeline(make_config())


def check_consistent(result):
    """label_map, instance_map and the mask records describe the same pixels."""
    h, w = result.label_map.shape
    assert result.label_map.dtype == np.uint16 and result.instance_map.dtype == np.uint16
    assert result.instance_map.shape == (h, w)
    assert int(result.instance_map.max()) == len(result.masks)
    areas = np.bincount(result.instance_map.ravel(), minlength=len(result.masks) + 1)[1:]
    assert len({m.id for m in result.masks}) == len(result.masks)  # track ids, unique per frame
    for index, record in enumerate(result.masks):
        assert record.id >= 1
        assert record.area == areas[index] > 0
        x, y, bw, bh = record.bbox
        ys, xs = np.nonzero(result.instance_map == index + 1)
        assert (x, y, bw, bh) == (xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1)
        assert (result.label_map[ys, xs] == record.class_id).all()
        assert result.label_table.name_of(record.class_id) == record.label
        crop = result.mask_crop(index)
        assert crop.shape == (bh, bw) and crop.dtype == np.uint8 and int((crop == 255).sum()) == record.area


def test_process_contract(pipeline, rgb_640x480):
    result = pipeline.process(rgb_640x480)
    assert result.label_map.shape == (480, 640)
    assert len(result.masks) > 0
    check_consistent(result)
    assert {"masks_forward", "masks_post", "closed_set.ade20k", "fusion", "paint", "total"} <= set(result.timings)
    assert all(v >= 0 for v in result.timings.values())
    sources = {m.source for m in result.masks}
    assert sources <= {LabelSource.CLOSED_SET, LabelSource.UNIDENTIFIED}


def test_track_ids_are_stable_across_frames(pipeline, rgb_640x480):
    first = pipeline.process(rgb_640x480)
    second = pipeline.process(rgb_640x480)
    assert [m.id for m in first.masks] == [m.id for m in second.masks]
    shifted = pipeline.process(np.roll(rgb_640x480, 4, axis=1))
    assert len({m.id for m in shifted.masks} & {m.id for m in first.masks}) > 0


def test_odd_sizes_and_portrait_images(pipeline, photos):
    bus = cv2.cvtColor(cv2.imread(str(photos[0])), cv2.COLOR_BGR2RGB)  # 1080x810 portrait
    result = pipeline.process(bus)
    assert result.label_map.shape == bus.shape[:2]
    check_consistent(result)
    tiny = pipeline.process(np.full((2, 7, 3), 200, np.uint8))
    assert tiny.label_map.shape == (2, 7)


def test_fill_uncovered_policy(pipeline, rgb_640x480):
    pipeline.config.fusion.fill_uncovered = False
    try:
        result = pipeline.process(rgb_640x480)
    finally:
        pipeline.config.fusion.fill_uncovered = True
    uncovered = result.instance_map == 0
    assert uncovered.any()
    assert (result.label_map[uncovered] == UNLABELED_ID).all()
    filled = pipeline.process(rgb_640x480)
    assert (filled.label_map[uncovered] != UNLABELED_ID).any()


def test_fill_classes_limit_what_fills_uncovered_pixels(pipeline, make_config, rgb_640x480):
    full = pipeline.process(rgb_640x480)
    uncovered = full.instance_map == 0
    ids, counts = np.unique(full.label_map[uncovered], return_counts=True)
    assert len(ids) >= 3, "the random-weight segmenter should fill with several classes"
    allowed = [full.label_table.name_of(int(i)) for i in ids[np.argsort(counts)[-2:]]]  # the two commonest
    limited = Pipeline(make_config({"fusion.fill_classes": allowed}), label_table=full.label_table)
    result = limited.process(rgb_640x480)
    assert (result.instance_map == full.instance_map).all()
    allowed_ids = full.label_table.lookup(allowed)
    expected = np.where(np.isin(full.label_map, allowed_ids), full.label_map, UNLABELED_ID)
    assert (result.label_map[uncovered] == expected[uncovered]).all()
    assert (result.label_map[~uncovered] == full.label_map[~uncovered]).all()
    assert 0 < (result.label_map[uncovered] == UNLABELED_ID).sum() < uncovered.sum()


def test_fill_classes_must_be_classes_of_the_first_segmenter(make_config):
    with pytest.raises(ConfigError, match="'fusion.fill_classes'.*'no such class'.*first segmenter 'ade20k'"):
        Pipeline(make_config({"fusion.fill_classes": ["wall", "no such class"]}))


def test_thresholds_change_between_frames(pipeline, rgb_640x480):
    before = pipeline.config.fusion.min_confidence
    pipeline.set_thresholds(min_confidence=1.0)
    try:
        result = pipeline.process(rgb_640x480)
    finally:
        pipeline.set_thresholds(min_confidence=before)
    assert all(m.source == LabelSource.UNIDENTIFIED and m.label == "unidentified" for m in result.masks if m.score < 1.0)
    with pytest.raises(ValueError):
        pipeline.set_thresholds(conf=2.0)


@pytest.mark.parametrize("bad", [np.zeros((0, 0, 3), np.uint8), np.zeros((4, 4), np.uint8), np.zeros((4, 4, 3), np.float32)])
def test_bad_frames_raise_value_error(pipeline, bad):
    with pytest.raises(ValueError):
        pipeline.process(bad)


def test_two_segmenters_share_one_label_table(make_config, tmp_path, rgb_640x480):
    m2f = build_mask2former(tmp_path / "m2f")
    cfg = make_config({"closed_set.segmenters": ["ade20k", "tiny"], "closed_set.tiny.model": str(m2f)})
    pipeline = Pipeline(cfg)
    table = pipeline.label_table
    assert len(table) == 2 + 150 + 1  # "kite" is the only tiny label ADE20K lacks
    assert table.id_of("person") == pipeline.lookups[1][1].item()  # same id from both models
    result = pipeline.process(rgb_640x480)
    check_consistent(result)
    assert "closed_set.tiny" in result.timings


def test_instance_stats_on_a_hand_made_map():
    import torch

    inst = torch.tensor([[0, 1, 1, 0], [0, 1, 2, 2], [0, 0, 2, 2]])
    stats = instance_stats(inst, 2)
    assert stats["area"].tolist() == [3, 4]
    assert stats["bbox"].tolist() == [[1, 0, 2, 2], [2, 1, 2, 2]]
    assert stats["centroid"].flatten().tolist() == pytest.approx([4 / 3, 1 / 3, 2.5, 1.5])


def test_cli_segment_end_to_end(random_config, photos, tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "sfs_core", "segment", *map(str, photos), "--out", str(out), "--config", str(random_config)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    table = json.loads((out / "labels.json").read_text())
    names = {entry["id"]: entry["name"] for entry in table["labels"]}
    for photo in photos:
        stem = photo.stem
        shape = cv2.imread(str(photo)).shape[:2]
        label = cv2.imread(str(out / f"{stem}_label.png"), cv2.IMREAD_UNCHANGED)
        instances = cv2.imread(str(out / f"{stem}_instances.png"), cv2.IMREAD_UNCHANGED)
        color = cv2.imread(str(out / f"{stem}_color.png"), cv2.IMREAD_UNCHANGED)
        overlay = cv2.imread(str(out / f"{stem}_overlay.png"), cv2.IMREAD_UNCHANGED)
        assert label.dtype == np.uint16 and label.shape == shape
        assert instances.dtype == np.uint16 and instances.shape == shape
        assert color.dtype == np.uint8 and color.shape == (*shape, 3)
        assert overlay.dtype == np.uint8 and overlay.shape == (*shape, 3)
        assert set(np.unique(label).tolist()) <= set(names)
        record = json.loads((out / f"{stem}.json").read_text())
        assert "total" in record["timings_ms"] and "masks_forward" in record["timings_ms"]
        assert instances.max() == len(record["masks"])
        for index, mask in enumerate(record["masks"]):
            pixels = instances == index + 1
            assert pixels.sum() == mask["area"]
            assert (label[pixels] == mask["class_id"]).all()
            assert names[mask["class_id"]] == mask["label"]
            x, y, w, h = mask["bbox"]
            assert not pixels[:y].any() and not pixels[y + h :].any() and not pixels[:, :x].any() and not pixels[:, x + w :].any()


def test_cli_reports_unreadable_image(random_config, tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"nope")
    proc = subprocess.run(
        [sys.executable, "-m", "sfs_core", "segment", str(bad), "--out", str(tmp_path / "o"), "--config", str(random_config)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 1 and "cannot read image" in proc.stderr


def test_cli_bad_parameter_is_one_clear_error(tmp_path, photos):
    proc = subprocess.run(
        [sys.executable, "-m", "sfs_core", "segment", str(photos[0]), "--out", str(tmp_path), "--set", "masks.conf=-1"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("error: parameter 'masks.conf'")
