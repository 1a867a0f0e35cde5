"""The open-vocabulary branch inside the per-frame path, with the real random-weight CLIP."""

import time

import pytest

from sfs_core.labels import LabelSource
from sfs_core.pipeline import Pipeline

pytestmark = pytest.mark.slow

CLIP_MODE = {"open_vocab.enabled": True, "open_vocab.mode": "clip", "open_vocab.vocabulary": ["coco"]}


def test_synchronous_branch_labels_masks_in_the_same_frame(make_config, rgb_640x480):
    pipeline = Pipeline(make_config(CLIP_MODE), independent_frames=True)
    size = len(pipeline.label_table)
    result = pipeline.process(rgb_640x480)
    open_vocab = [m for m in result.masks if m.source == LabelSource.OPEN_VOCAB]
    assert open_vocab, [m.source for m in result.masks]
    for mask in open_vocab:
        assert 1 <= len(mask.candidates) <= pipeline.config.open_vocab.top_k
        assert len(mask.candidate_scores) == len(mask.candidates)
        assert mask.label == mask.candidates[0]  # both open-vocab rules take the top suggestion
        assert pipeline.label_table.name_of(mask.class_id) == mask.label
    assert "open_vocab" in result.timings
    assert len(pipeline.label_table) >= size  # COCO names ADE20K lacks were appended
    assert pipeline.close()


def test_a_full_label_table_stops_growing_and_new_names_are_not_chosen(make_config, rgb_640x480):
    pipeline = Pipeline(make_config({**CLIP_MODE, "open_vocab.max_labels": 0}), independent_frames=True)
    size = len(pipeline.label_table)
    result = pipeline.process(rgb_640x480)
    assert len(pipeline.label_table) == size
    new_names = [m for m in result.masks if m.candidates and pipeline.label_table.id_of(m.candidates[0]) is None]
    assert new_names, [m.candidates[:1] for m in result.masks]  # CLIP's top-1 is a COCO name ADE20K lacks
    assert all(m.source != LabelSource.OPEN_VOCAB and m.label != m.candidates[0] for m in new_names)
    assert pipeline.label_table.refused >= len(new_names)
    assert pipeline.close()


def test_asynchronous_results_land_on_the_same_tracks_in_later_frames(make_config, rgb_640x480):
    pipeline = Pipeline(make_config({**CLIP_MODE, "open_vocab.max_rate": 10.0}))
    try:
        first = pipeline.process(rgb_640x480)
        assert all(m.source != LabelSource.OPEN_VOCAB for m in first.masks)  # nothing labelled yet
        ids = {m.id for m in first.masks}
        frame_ms = []
        deadline = time.monotonic() + 120
        labelled = []
        while not labelled and time.monotonic() < deadline:
            result = pipeline.process(rgb_640x480)
            frame_ms.append(result.timings["open_vocab"])
            labelled = [m for m in result.masks if m.source == LabelSource.OPEN_VOCAB]
        assert labelled, "no open-vocabulary label arrived within 120 s"
        assert {m.id for m in labelled} <= ids  # on the tracks of the first frame
        assert max(frame_ms) < 100  # the per-frame path only hands over a snapshot
        assert pipeline.open_vocab.stats().masks_labelled > 0
    finally:
        assert pipeline.close(timeout=30)
