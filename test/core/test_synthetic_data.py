"""Synthetic datasets are read back by our own evaluation and replay code.

An oracle pipeline that answers with the ground truth must score mIoU 1.0 through
``sfs_core.evaluation.runner.evaluate`` (the ``sfs evaluate`` engine) and through
``sfs_core.replay.replay`` with a ground-truth topic (``sfs replay --gt-topic``).
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import yaml

from sfs_core.bags import BagReader
from sfs_core.evaluation.label_mapping import LabelMapper, load_label_space
from sfs_core.labels import LabelTable
from sfs_core.result import SemanticResult
from sfs_core.synthetic.bag import BagTopics, write_synthetic_bag
from sfs_core.synthetic.datasets import LABEL_SPACE_FILE, SyntheticShapes, write_cityscapes_layout
from sfs_core.synthetic.scenes import SceneConfig, render, sample_scene, sample_sequence
from sfs_core.synthetic.shapes import CLASS_NAMES
from sfs_core.synthetic.yolo_dataset import write_yolo_seg_dataset

SMALL = SceneConfig(sizes=((96, 128),))


class OraclePipeline:
    """Answers every frame with its ground truth (looked up by pixel content)."""

    def __init__(self, scenes) -> None:
        self.table = LabelTable(CLASS_NAMES)
        self.lut = self.table.lookup(CLASS_NAMES).astype(np.uint16)
        self.truth = {hashlib.sha1(s.image.tobytes()).hexdigest(): s for s in scenes}
        self.frames = 0

    def process(self, image: np.ndarray) -> SemanticResult:
        scene = self.truth[hashlib.sha1(np.ascontiguousarray(image).tobytes()).hexdigest()]
        self.frames += 1
        return SemanticResult(label_map=self.lut[scene.semantic_map], instance_map=np.zeros(scene.semantic_map.shape, np.uint16),
                              masks=[], label_table=self.table, timings={"total": 1.0})


@pytest.fixture(scope="module")
def scenes():
    return [render(sample_scene(seed, SMALL)) for seed in range(4)]


def test_cityscapes_layout_round_trip(tmp_path, scenes):
    root = write_cityscapes_layout(tmp_path / "val", scenes)
    dataset = SyntheticShapes(root)
    samples = dataset.samples()
    assert [s.id for s in samples] == [f"synthetic/synthetic_000000_{i:06d}" for i in range(4)]
    for sample, scene in zip(samples, scenes):
        assert np.array_equal(dataset.load_image(sample), scene.image)
        assert np.array_equal(dataset.load_label(sample), scene.semantic_map)
        assert np.array_equal(dataset.load_instances(sample), scene.instance_map)
    space = load_label_space(root / LABEL_SPACE_FILE)
    assert space.classes == CLASS_NAMES == dataset.classes and not space.reduce_zero_label


def test_evaluate_runner_scores_an_oracle_perfectly(tmp_path, scenes):
    from sfs_core.evaluation.runner import evaluate

    root = write_cityscapes_layout(tmp_path / "val", scenes)
    dataset = SyntheticShapes(root)
    mapper = LabelMapper(load_label_space(root / LABEL_SPACE_FILE), synonyms={})
    report = evaluate(dataset, tmp_path / "eval", lambda: OraclePipeline(scenes), mapper, progress=False)
    assert report["images"] == 4
    assert report["metrics"]["mIoU"] == pytest.approx(1.0)
    assert report["metrics"]["aAcc"] == pytest.approx(1.0)


def test_bag_replays_with_ground_truth_topic(tmp_path):
    from sfs_core.replay import ReplayOptions, replay

    frames = [render(spec) for spec in sample_sequence(5, 4, SMALL)]
    topics = BagTopics()
    assert write_synthetic_bag(tmp_path / "bag", frames, topics=topics) == 4
    with BagReader(tmp_path / "bag") as reader:
        assert reader.select_image_topic(exclude=(topics.ground_truth,)).name == topics.image
        stamps = [m.stamp_ns for m in reader.messages(topics.image)]
        labels = [m.labels() for m in reader.messages(topics.ground_truth)]
    assert stamps == sorted(stamps) and len(set(stamps)) == 4
    assert all(np.array_equal(a, f.semantic_map) for a, f in zip(labels, frames))
    space_file = tmp_path / "classes.yaml"
    space_file.write_text(yaml.safe_dump({"classes": list(CLASS_NAMES)}))
    options = ReplayOptions(gt_topic=topics.ground_truth, mapper=LabelMapper(load_label_space(space_file), synonyms={}),
                            progress=False, warmup=False, overlay=False)
    report = replay(OraclePipeline(frames), tmp_path / "bag", tmp_path / "out", options)
    assert report["evaluation"]["frames_with_gt"] == 4
    assert report["evaluation"]["metrics"]["mIoU"] == pytest.approx(1.0)


def test_yolo_dataset_layout(tmp_path, scenes):
    data = write_yolo_seg_dataset(tmp_path / "yolo", {"train": scenes})
    spec = yaml.safe_load(data.read_text())
    assert spec["names"] == {0: "object"} and spec["train"] == spec["val"] == "images/train"
    labels = sorted((tmp_path / "yolo" / "labels" / "train").glob("*.txt"))
    assert len(labels) == 4 and len(list((tmp_path / "yolo" / "images" / "train").glob("*.png"))) == 4
    for path, scene in zip(labels, scenes):
        lines = path.read_text().split("\n")[:-1]
        assert len(lines) == int((scene.visible_areas() > 0).sum())
        for line in lines:
            values = [float(v) for v in line.split()]
            assert values[0] == 0 and len(values) % 2 == 1 and len(values) >= 7
            assert 0.0 <= min(values[1:]) and max(values[1:]) <= 1.0


def test_clip_background_regions_cover_background_only(scenes):
    from sfs_core.synthetic.train_clip import background_regions

    for scene in scenes:
        regions = background_regions(scene, 3, np.random.default_rng(0), min_pixels=30)
        again = background_regions(scene, 3, np.random.default_rng(0), min_pixels=30)
        assert 1 <= len(regions) <= 3 and np.array_equal(regions.numpy(), again.numpy())
        assert not (regions.numpy() & (scene.instance_map > 0)[None]).any()
        assert (regions.flatten(1).sum(1) >= 30).all()
