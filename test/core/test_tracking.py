"""Tracker: hand-made masks with known answers (ids, expiry, late labels, resolutions)."""

import math
import threading
import time

import pytest
import torch

from sfs_core.labels import UNIDENTIFIED_ID, LabelSource, LabelTable
from sfs_core.open_vocab_fusion import FusionRule, FusionThresholds, OpenVocabLabels
from sfs_core.tracking import Tracker, TrackerConfig, mask_iou, match

H, W = 48, 64


def box(y0, x0, y1, x1, size=(H, W)):
    mask = torch.zeros(size, dtype=torch.bool)
    mask[y0:y1, x0:x1] = True
    return mask


def frame(*masks, size=(H, W)):
    return torch.stack(masks) if masks else torch.zeros((0, *size), dtype=torch.bool)


@pytest.fixture
def table():
    return LabelTable(["person", "car", "bird"])


@pytest.fixture
def tracker(table):
    return Tracker(TrackerConfig(iou_threshold=0.3, max_missed=2), table, FusionThresholds(0.4, 0.3, 0.1))


def test_mask_iou_matrix_matches_hand_computed_values():
    a = frame(box(0, 0, 10, 10), box(20, 20, 30, 30))
    b = frame(box(0, 5, 10, 15), box(40, 40, 48, 64), torch.zeros(H, W, dtype=torch.bool))
    iou = mask_iou(a, b)
    assert iou.shape == (2, 3) and iou.dtype == torch.float32
    torch.testing.assert_close(iou, torch.tensor([[50 / 150, 0.0, 0.0], [0.0, 0.0, 0.0]]))


def test_hungarian_match_prefers_the_global_optimum_and_respects_the_threshold():
    # Greedy would pair row 0 with column 0 (0.6) and leave row 1 with 0.1; the optimum is crossed.
    iou = torch.tensor([[0.6, 0.5], [0.55, 0.1]])
    rows, cols = match(iou, threshold=0.3)
    assert dict(zip(rows.tolist(), cols.tolist())) == {0: 1, 1: 0}
    rows, cols = match(torch.tensor([[0.2]]), threshold=0.3)
    assert rows.size == 0 and cols.size == 0


def test_moving_mask_keeps_its_id(tracker):
    ids = [tracker.update(frame(box(10, 10 + 3 * t, 30, 30 + 3 * t))).track_ids.tolist() for t in range(6)]
    assert ids == [[1]] * 6
    assert tracker.get(1).hits == 6


def test_new_object_gets_a_new_id_and_old_ones_keep_theirs(tracker):
    first = tracker.update(frame(box(0, 0, 20, 20), box(25, 40, 45, 60)))
    assert first.track_ids.tolist() == [1, 2] and first.new.tolist() == [True, True]
    # Same objects in swapped order, slightly moved, plus a new one in between.
    second = tracker.update(frame(box(26, 41, 46, 61), box(0, 25, 10, 35), box(1, 1, 21, 21)))
    assert second.track_ids.tolist() == [2, 3, 1]
    assert second.new.tolist() == [False, True, False]


def test_expired_track_is_dropped_and_its_id_never_reused(tracker):
    tracker.update(frame(box(0, 0, 20, 20)))
    for _ in range(2):  # max_missed = 2: two missed frames are tolerated
        result = tracker.update(frame())
        assert result.expired == [] and tracker.get(1) is not None
    assert tracker.update(frame()).expired == [1]
    assert tracker.get(1) is None and len(tracker) == 0
    assert tracker.update(frame(box(0, 0, 20, 20))).track_ids.tolist() == [2]


def test_track_missed_within_max_missed_is_matched_again(tracker):
    tracker.update(frame(box(0, 0, 20, 20)))
    tracker.update(frame())
    tracker.update(frame())
    assert tracker.update(frame(box(1, 1, 21, 21))).track_ids.tolist() == [1]
    assert tracker.get(1).missed == 0


def test_late_open_vocab_label_lands_on_the_right_track(tracker, table):
    car = table.id_of("car")
    tracker.update(frame(box(0, 0, 20, 20), box(25, 40, 45, 60)), class_ids=[car, car], confidences=[0.2, 0.2])
    stamp = 100.0
    # The objects move and swap order while the label is being computed.
    tracker.update(frame(box(26, 42, 46, 62), box(2, 2, 22, 22)), class_ids=[car, car], confidences=[0.2, 0.2])
    assert tracker.apply_open_vocab(2, OpenVocabLabels(("kite", "bird"), (0.8, 0.1)), stamp)
    result = tracker.update(frame(box(3, 3, 23, 23), box(27, 43, 47, 63)), class_ids=[car, car], confidences=[0.2, 0.2])
    assert result.track_ids.tolist() == [1, 2]
    assert [label.name for label in result.labels] == ["unidentified", "kite"]
    assert result.labels[1].source == LabelSource.OPEN_VOCAB and result.labels[1].class_id == table.id_of("kite")
    assert result.labels[1].candidates == ("kite", "bird")
    assert math.isnan(result.open_vocab_stamps[0]) and result.open_vocab_stamps[1] == stamp


def test_late_label_for_an_expired_track_is_dropped(tracker):
    tracker.update(frame(box(0, 0, 20, 20)))
    for _ in range(3):
        tracker.update(frame())
    assert not tracker.apply_open_vocab(1, OpenVocabLabels(("kite",), (0.9,)), 1.0)
    assert not tracker.apply_open_vocab(99, OpenVocabLabels(("kite",), (0.9,)), 1.0)


def test_refresh_brings_labels_applied_after_update(tracker):
    tracks = tracker.update(frame(box(0, 0, 20, 20), box(25, 40, 45, 60)))
    tracker.apply_open_vocab(2, OpenVocabLabels(("kite",), (0.9,)), stamp=5.0)
    fresh = tracker.refresh(tracks)
    assert [label.name for label in fresh.labels] == ["unidentified", "kite"]
    assert math.isnan(fresh.open_vocab_stamps[0]) and fresh.open_vocab_stamps[1] == 5.0
    assert tracks.labels[1].name == "unidentified"  # the original is left alone


def test_older_result_does_not_overwrite_a_newer_one(tracker):
    tracker.update(frame(box(0, 0, 20, 20)))
    assert tracker.apply_open_vocab(1, OpenVocabLabels(("kite",), (0.9,)), stamp=2.0)
    assert not tracker.apply_open_vocab(1, OpenVocabLabels(("bird",), (0.9,)), stamp=1.0)
    assert tracker.get(1).label.name == "kite"


def test_closed_set_label_is_fused_every_frame(tracker, table):
    person = table.id_of("person")
    confident = tracker.update(frame(box(0, 0, 20, 20)), class_ids=[person], confidences=[0.9])
    assert confident.labels[0].name == "person" and confident.labels[0].rule == FusionRule.CLOSED_SET
    unsure = tracker.update(frame(box(0, 0, 20, 20)), class_ids=[person], confidences=[0.1])
    assert unsure.labels[0].class_id == UNIDENTIFIED_ID and unsure.labels[0].source == LabelSource.UNIDENTIFIED
    assert unsure.class_ids().tolist() == [UNIDENTIFIED_ID]


def test_empty_masks_get_no_track(tracker, table):
    empty = torch.zeros(H, W, dtype=torch.bool)
    person = table.id_of("person")
    for _ in range(3):
        result = tracker.update(frame(empty, box(0, 0, 20, 20)), class_ids=[person, person], confidences=[0.9, 0.9])
        assert result.track_ids.tolist() == [0, 1] and not result.new[0]
    assert len(tracker) == 1
    assert result.labels[0].name == "person" and math.isnan(result.open_vocab_stamps[0])  # still labelled


def test_masks_of_another_resolution_are_resized_with_the_same_aspect(tracker):
    tracker.update(frame(box(8, 8, 32, 40)))
    big = box(32, 32, 128, 160, size=(4 * H, 4 * W))  # the same object at 4x resolution
    result = tracker.update(big[None])
    assert result.track_ids.tolist() == [1]
    assert result.areas[0] == pytest.approx((24 * 32) / (H * W))


def test_large_masks_are_compared_at_max_side():
    tracker = Tracker(TrackerConfig(max_side=80))
    result = tracker.update(box(0, 0, 240, 320, size=(480, 640))[None])
    assert tracker.get(1).mask.shape == (60, 80)
    assert result.areas[0] == pytest.approx(0.25)


def test_masks_of_another_aspect_ratio_are_rejected_until_reset(tracker):
    tracker.update(frame(box(0, 0, 20, 20)))
    with pytest.raises(ValueError, match="aspect ratio"):
        tracker.update(box(0, 0, 20, 20, size=(64, 64))[None])
    tracker.reset()
    assert tracker.update(box(0, 0, 20, 20, size=(64, 64))[None]).track_ids.tolist() == [2]


def test_bad_inputs_raise(tracker):
    with pytest.raises(ValueError, match="bool"):
        tracker.update(torch.zeros(1, H, W))
    with pytest.raises(ValueError, match="class ids"):
        tracker.update(frame(box(0, 0, 5, 5)), class_ids=[2, 3], confidences=[0.5, 0.5])
    with pytest.raises(ValueError):
        TrackerConfig(max_missed=-1)


def test_many_masks_are_matched_in_one_vectorised_pass():
    """A 15 x 15 grid of disjoint boxes shifted by one pixel keeps all 225 ids, in a shuffled order."""
    ys, xs = torch.arange(240)[None, :, None], torch.arange(320)[None, None, :]
    y0 = torch.arange(15).repeat_interleave(15) * 16
    x0 = torch.arange(15).repeat(15) * 21
    def grid(dx):
        top, left = y0[:, None, None], x0[:, None, None] + dx
        return (ys >= top) & (ys < top + 12) & (xs >= left) & (xs < left + 16)

    tracker = Tracker(TrackerConfig(iou_threshold=0.5, max_side=320))
    first = tracker.update(grid(0))
    order = torch.randperm(225, generator=torch.Generator().manual_seed(0))
    second = tracker.update(grid(1)[order])
    assert first.track_ids.tolist() == list(range(1, 226))
    assert second.track_ids.tolist() == (order + 1).tolist()


def test_update_and_late_labels_from_two_threads(tracker):
    stop = threading.Event()
    errors = []

    def labeller():
        while not stop.is_set():
            try:
                tracker.apply_open_vocab(1, OpenVocabLabels(("kite",), (0.9,)), 1.0)
            except Exception as err:  # pragma: no cover - reported below
                errors.append(err)
            time.sleep(0.0002)

    thread = threading.Thread(target=labeller)
    thread.start()
    try:
        for t in range(200):
            shift = abs(t % 20 - 10)  # back and forth, one pixel a frame
            tracker.update(frame(box(10, shift, 30, 20 + shift)))
    finally:
        stop.set()
        thread.join(5)
    assert not errors and tracker.get(1).label.name == "kite"
