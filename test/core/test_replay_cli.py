"""``sfs replay`` end to end with the real pipeline (random weights: only plumbing is checked)."""

from __future__ import annotations

import json

import pytest
from fixtures_eval import (
    CAMERA_TOPIC,
    GT_TOPIC,
    assert_masks_agree_with_semantic,
    camera_frames,
    fast_cli_args,
    read_output,
    stamp_ns,
    synthetic_labels,
    write_camera_bag,
)

from sfs_core.bags import BagReader
from sfs_core.cli import main

pytestmark = pytest.mark.slow
FRAMES = camera_frames(3, (160, 120))
PER_FRAME = ("/sfs/semantic", "/sfs/semantic_color", "/sfs/overlay", "/sfs/masks")


@pytest.mark.parametrize("storage,compressed", [("mcap", False), ("sqlite3", True)], ids=["mcap-raw", "sqlite3-compressed"])
def test_sfs_replay_round_trip(storage, compressed, random_models, tmp_path, capsys):
    gt = [synthetic_labels(f, 150) for f in FRAMES]
    bag = write_camera_bag(tmp_path / "in", FRAMES, storage, compressed, gt=gt)
    out = tmp_path / "out"
    code = main(["replay", str(bag), "--out", str(out), "--quiet", "--gt-topic", GT_TOPIC, "--label-map", "ade20k", *fast_cli_args(random_models)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "throughput" in printed and "mIoU" in printed

    with BagReader(bag) as reader:
        input_stamps = [m.stamp_ns for m in reader.messages(CAMERA_TOPIC)]
    output = read_output(out)
    for topic in PER_FRAME:
        assert [stamp_ns(m) for _, m in output[topic]] == input_stamps, topic
    assert len(output["/sfs/labels"]) >= 1
    assert_masks_agree_with_semantic(output)

    report = json.loads((tmp_path / "out.report.json").read_text())
    assert report["frames"]["processed"] == len(FRAMES) and report["output"]["storage"] == storage
    assert {"masks_forward", "total", "decode", "render"} <= set(report["latency_ms"])
    assert report["evaluation"]["frames_with_gt"] == len(FRAMES)
    assert report["config"]["masks.imgsz"] == 320
    assert (tmp_path / "out.report.txt").read_text().startswith("input")


def test_sfs_replay_realtime_and_errors(random_models, tmp_path, capsys):
    bag = write_camera_bag(tmp_path / "in", camera_frames(6, (160, 120)), "mcap", rate_hz=200.0)
    code = main(["replay", str(bag), "--out", str(tmp_path / "out"), "--realtime", "--quiet", "--no-overlay", *fast_cli_args(random_models)])
    assert code == 0
    report = json.loads((tmp_path / "out.report.json").read_text())
    frames = report["frames"]
    assert frames["selected"] == 6 and frames["processed"] + frames["dropped_realtime"] == 6
    assert 0 < report["realtime"]["processed_fraction"] < 1  # tens of ms per frame cannot keep up with 200 Hz
    assert "/sfs/overlay" not in report["output"]["topics"]
    assert report["output"]["topics"]["/sfs/semantic"] == frames["processed"]

    capsys.readouterr()
    assert main(["replay", str(bag), "--out", str(tmp_path / "out"), *fast_cli_args(random_models)]) == 2
    assert "use --force" in capsys.readouterr().err
    assert main(["replay", str(bag), "--out", str(tmp_path / "x"), "--gt-topic", GT_TOPIC]) == 2
    assert "go together" in capsys.readouterr().err
