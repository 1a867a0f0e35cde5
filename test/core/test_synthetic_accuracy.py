"""End-to-end accuracy in the synthetic world, with the tiny models trained by the default recipe.

The models are trained once per machine (``sfs models init-synthetic``'s cache: about 15 minutes
on 2 CPU cores, see the README) and reused afterwards. Scores are measured on held-out scenes
through the real run-time code (:mod:`sfs_core.synthetic.accuracy`); each threshold sits a small
margin below what the default recipe measured (see the README's "Synthetic world" section).

The last tests break one rule of the pipeline at a time (voting, fusion, tracking) and check that
the same measurement then falls below its threshold, so the thresholds can catch a regression.
"""

from __future__ import annotations

import pytest

from sfs_core.synthetic.recipes import DataRecipe

pytestmark = pytest.mark.slow

NOVEL = DataRecipe().novel_classes
SCENES = 40
# Measured with the default recipe on the 40 held-out scenes (README, "Synthetic world"), and held
# here with a margin below. The known-shape level (0.802, issue target 0.8) comes with the closed
# set's rot90 views, 4x score upsampling and fusion.fill_classes [background]; on larger samples it
# is about 0.79 (README), so the threshold guards the measured level with room for numeric drift.
MASK_RECALL_50 = 0.95  # measured 0.972 (issue target 0.9)
KNOWN_MIOU_CLOSED_SET = 0.78  # measured 0.802 (issue target 0.8)
NOVEL_IOU_CLOSED_SET_MAX = 0.05  # measured 0.000
NOVEL_IOU_FUSION = 0.68  # measured 0.790 (issue target 0.5)
FUSION_GAIN_ALL = 0.15  # all-class mIoU, fusion minus closed set only: measured 0.811 - 0.591 = 0.220
REPLAY_MIOU = 0.6  # measured 0.711 over the 40-frame bag (crossed tracks: 0.355)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """``sfs models init-synthetic`` into a temporary folder (models from the shared cache)."""
    from sfs_core.runtime import configure_runtime
    from sfs_core.synthetic.init import InitOptions, init_synthetic

    configure_runtime(offline=True, cache_dir="~/.cache/sfs_ros")
    return init_synthetic(tmp_path_factory.mktemp("synthetic"), options=InitOptions(val_scenes=4, bag_frames=40),
                          log=print)


@pytest.fixture(scope="module")
def val():
    from sfs_core.synthetic.accuracy import validation_scenes

    return validation_scenes(SCENES)


def _pipeline(world, overrides=None):
    from sfs_core.config import load_config
    from sfs_core.pipeline import Pipeline

    return Pipeline(load_config(world.config, overrides or {}), independent_frames=True)


def _scores(world, val, overrides=None):
    from sfs_core.synthetic.accuracy import semantic_quality

    pipeline = _pipeline(world, overrides)
    try:
        return semantic_quality(pipeline, val, NOVEL)
    finally:
        pipeline.close()


@pytest.fixture(scope="module")
def closed_set_only(world, val):
    return _scores(world, val, {"open_vocab.enabled": False})


@pytest.fixture(scope="module")
def fusion(world, val):
    return _scores(world, val, {"open_vocab.enabled": True})


def test_models_train_within_the_budget(world):
    reports = world.models.reports
    seconds = sum(r["seconds"] for r in reports.values())
    print({stage: round(r["seconds"], 1) for stage, r in reports.items()}, f"total {seconds:.0f} s")
    assert seconds <= 15 * 60 * 1.5, "training took far longer than the 15-minute budget (machine loaded?)"


def test_mask_recall(world, val):
    from sfs_core.config import load_config
    from sfs_core.masks import MaskGenerator
    from sfs_core.synthetic.accuracy import mask_quality

    config = load_config(world.config)
    quality = mask_quality(MaskGenerator(config.masks, **config.runtime()), val)  # as the pipeline builds it
    print(quality.to_json())
    assert quality.recall_at_50 >= MASK_RECALL_50


def test_closed_set_only(closed_set_only):
    print(closed_set_only)
    assert closed_set_only["miou_known"] >= KNOWN_MIOU_CLOSED_SET
    assert closed_set_only["iou_novel"] <= NOVEL_IOU_CLOSED_SET_MAX  # the closed set cannot name them


def test_open_vocabulary_fusion_names_the_novel_classes(closed_set_only, fusion):
    print(fusion)
    assert fusion["iou_novel"] >= NOVEL_IOU_FUSION
    assert fusion["miou_all"] >= closed_set_only["miou_all"] + FUSION_GAIN_ALL


def _replay(world, out):
    """``sfs replay --gt-topic`` over the synthetic bag: ``(mIoU, per-class IoU by name)``."""
    import json

    from sfs_core.cli import main
    from sfs_core.synthetic.bag import BagTopics
    from sfs_core.synthetic.datasets import LABEL_SPACE_FILE

    folder = world.config.parent
    report = out.with_suffix(".json")
    code = main(["replay", str(folder / "synthetic_bag"), "--out", str(out), "--config", str(world.config),
                 "--gt-topic", BagTopics().ground_truth, "--label-map", str(folder / "val" / LABEL_SPACE_FILE),
                 "--report", str(report), "--quiet", "--no-overlay", "--no-color"])
    assert code == 0
    metrics = json.loads(report.read_text())["evaluation"]["metrics"]
    return metrics["mIoU"], {c["name"]: c["iou"] for c in metrics["per_class"]}


def test_replay_with_ground_truth_topic(world, tmp_path):
    """The bag is a video: tracks carry their open-vocabulary labels from frame to frame."""
    miou, per_class = _replay(world, tmp_path / "replay")
    print(f"replay mIoU {miou:.3f}", per_class)
    assert miou >= REPLAY_MIOU


# ---- the thresholds catch broken rules -----------------------------------------------------------
# Each test breaks one rule with monkeypatch (a deliberate fault in the logic; the real models and
# pipeline run) and checks that the accuracy test's threshold then fails.


def test_broken_voting_fails_the_closed_set_threshold(world, val, monkeypatch):
    import torch

    from sfs_core import pipeline as pipeline_module
    from sfs_core.fusion import Votes, vote

    def minority_vote(*args, **kwargs):  # the least-voted class present instead of the majority
        votes = vote(*args, **kwargs)
        counts = votes.counts.masked_fill(votes.counts == 0, float("inf"))
        labels = counts.argmin(dim=1) if len(counts) else votes.labels
        return Votes(counts=votes.counts, labels=labels.to(torch.long), shares=votes.shares)

    monkeypatch.setattr(pipeline_module, "vote", minority_vote)
    broken = _scores(world, val, {"open_vocab.enabled": False})
    print(broken)
    assert broken["miou_known"] < KNOWN_MIOU_CLOSED_SET


def test_broken_fusion_fails_the_novel_threshold(world, val, monkeypatch):
    from sfs_core import tracking
    from sfs_core.open_vocab_fusion import fuse_labels

    def open_vocab_ignored(closed_set, open_vocab, thresholds, label_table):
        return fuse_labels(closed_set, None, thresholds, label_table)

    monkeypatch.setattr(tracking, "fuse_labels", open_vocab_ignored)
    broken = _scores(world, val, {"open_vocab.enabled": True})
    print(broken)
    assert broken["iou_novel"] < NOVEL_IOU_FUSION


def test_broken_tracking_fails_the_replay_threshold(world, tmp_path, monkeypatch):
    """Tracks matched to the wrong masks carry their labels onto the wrong objects."""
    from sfs_core import tracking

    real_match = tracking.match

    def crossed_match(iou, threshold):
        rows, cols = real_match(iou, threshold)
        return rows, cols[::-1].copy()

    monkeypatch.setattr(tracking, "match", crossed_match)
    miou, per_class = _replay(world, tmp_path / "replay")
    print(f"replay mIoU with crossed tracks {miou:.3f}", per_class)
    assert miou < REPLAY_MIOU


def test_ablation_rows_and_table(world, val):
    from sfs_core.synthetic.measure import ABLATION, ablation, ablation_table

    rows = ablation(world.config, val[:8], NOVEL)
    assert [r["row"] for r in rows] == list(ABLATION)
    assert rows[0]["iou_novel"] <= NOVEL_IOU_CLOSED_SET_MAX < rows[1]["iou_novel"]
    assert all(r["ms_per_frame"] > 0 for r in rows)
    table = ablation_table(rows).splitlines()
    assert len(table) == 2 + len(rows) and table[2].startswith("| closed set only")
