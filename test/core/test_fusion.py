"""Fusion rules on hand-made masks and label maps with known answers."""

import torch

from sfs_core.fusion import decide_closed_set, label_instances, paint_instances, paint_order, vote
from sfs_core.labels import UNIDENTIFIED_ID, UNLABELED_ID, LabelSource


def masks_from(*boxes, size=(4, 6)):
    """Bool masks (N, h, w) from (y0, y1, x0, x1) boxes."""
    out = torch.zeros(len(boxes), *size, dtype=torch.bool)
    for i, (y0, y1, x0, x1) in enumerate(boxes):
        out[i, y0:y1, x0:x1] = True
    return out


def test_majority_vote_picks_largest_share():
    masks = masks_from((0, 2, 0, 4))  # 8 pixels
    class_map = torch.full((4, 6), 9)
    class_map[0, 0:4] = 5  # 4 px of class 5
    class_map[1, 0:3] = 7  # 3 px of class 7, 1 px of class 9
    votes = vote(masks, class_map, num_classes=10)
    assert votes.labels.tolist() == [5]
    assert votes.shares.tolist() == [0.5]
    assert votes.counts[0, [5, 7, 9]].tolist() == [4.0, 3.0, 1.0]


def test_vote_handles_empty_masks_and_many_masks_at_once():
    masks = masks_from((0, 1, 0, 1), (0, 4, 0, 6), (0, 0, 0, 0))
    class_map = torch.arange(24).reshape(4, 6) % 3
    votes = vote(masks, class_map, num_classes=3)
    assert votes.labels[0] == 0 and votes.shares[0] == 1.0
    assert torch.isclose(votes.shares[1], torch.tensor(8 / 24))
    assert votes.shares[2] == 0.0  # empty mask: no confidence


def test_low_confidence_mask_becomes_unidentified():
    masks = masks_from((0, 4, 0, 6))
    class_map = torch.arange(24).reshape(4, 6) % 4  # four classes, 25 % each
    votes = vote(masks, class_map, num_classes=4)
    unsure = decide_closed_set([votes], min_confidence=0.3)
    assert unsure.class_ids.tolist() == [UNIDENTIFIED_ID]
    assert unsure.sources.tolist() == [LabelSource.UNIDENTIFIED]
    sure = decide_closed_set([votes], min_confidence=0.25)
    assert sure.class_ids.tolist() != [UNIDENTIFIED_ID]
    assert sure.sources.tolist() == [LabelSource.CLOSED_SET]


def test_two_segmenters_disagreeing_more_confident_wins():
    masks = masks_from((0, 2, 0, 6), (2, 4, 0, 6))
    coco = torch.zeros(4, 6, dtype=torch.long)
    coco[0, :] = 3  # mask 0: 50 % class 3 (coco) ...
    coco[1, :] = 2
    coco[2:, :] = 4  # mask 1: 100 % class 4 (coco)
    ade = torch.full((4, 6), 8)  # ... but 100 % class 8 for ADE; mask 1: 100 % class 8 too
    votes = [vote(masks, coco, 10), vote(masks, ade, 10)]
    decision = decide_closed_set(votes, min_confidence=0.4)
    assert decision.class_ids.tolist() == [8, 4]  # mask 0: ADE is surer; mask 1: tie -> first segmenter
    assert decision.segmenter.tolist() == [1, 0]
    assert decision.confidences.tolist() == [1.0, 1.0]


def test_overlap_is_won_by_the_more_confident_mask():
    masks = masks_from((0, 4, 0, 4), (0, 4, 2, 6))  # overlap in columns 2..3
    rank = paint_order(torch.tensor([0.9, 0.6]), masks.sum((1, 2)))
    instances = paint_instances(masks, rank)
    assert instances[:, 2:4].unique().tolist() == [1]  # mask 0 (0.9) on top
    rank = paint_order(torch.tensor([0.5, 0.6]), masks.sum((1, 2)))
    assert paint_instances(masks, rank)[:, 2:4].unique().tolist() == [2]


def test_equal_confidence_puts_the_smaller_mask_on_top():
    masks = masks_from((0, 4, 0, 6), (1, 3, 1, 3))
    rank = paint_order(torch.tensor([0.8, 0.8]), masks.sum((1, 2)))
    instances = paint_instances(masks, rank)
    assert instances[1, 1].item() == 2 and instances[0, 0].item() == 1


def test_uncovered_pixels_follow_fill_policy():
    masks = masks_from((0, 2, 0, 3))
    instances = paint_instances(masks, torch.tensor([0]))
    class_ids = torch.tensor([7])
    closed_set = torch.full((4, 6), 4)
    filled = label_instances(instances, class_ids, closed_set)
    unfilled = label_instances(instances, class_ids, None)
    assert filled[0, 0] == 7 and unfilled[0, 0] == 7
    assert filled[3, 5] == 4  # uncovered -> closed-set prediction
    assert unfilled[3, 5] == UNLABELED_ID  # uncovered -> unlabeled
    assert (instances[2:] == 0).all()


def test_no_masks_gives_empty_instance_map():
    masks = torch.zeros(0, 4, 6, dtype=torch.bool)
    assert paint_instances(masks, torch.zeros(0, dtype=torch.long)).sum() == 0
    votes = vote(masks, torch.zeros(4, 6, dtype=torch.long), 3)
    assert votes.labels.numel() == 0
