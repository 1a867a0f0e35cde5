"""Batched crops (no model): boxes from low-resolution masks, square enlarged crops, fill, masking."""

import torch

from sfs_core.open_vocab.crops import crop_batch, mask_boxes, normalize, square_boxes

FILL = (10.0, 20.0, 30.0)


def test_mask_boxes_scale_low_resolution_masks_to_image_pixels():
    masks = torch.zeros(3, 120, 160, dtype=torch.bool)
    masks[0, 30:60, 40:50] = True
    masks[1, 0:1, 159:160] = True  # one corner cell
    boxes = mask_boxes(masks, (480, 640))
    assert boxes.dtype == torch.float32 and boxes.shape == (3, 4)
    assert boxes[0].tolist() == [160.0, 120.0, 200.0, 240.0]
    assert boxes[1].tolist() == [636.0, 0.0, 640.0, 4.0]
    assert boxes[2].tolist() == [0.0, 0.0, 640.0, 480.0]  # empty mask: the whole image


def test_square_boxes_enlarge_around_the_centre():
    boxes = square_boxes(torch.tensor([[100.0, 50.0, 140.0, 150.0], [0.0, 0.0, 2.0, 2.0]]), scale=1.2, min_side=16)
    torch.testing.assert_close(boxes[0], torch.tensor([60.0, 40.0, 180.0, 160.0]))  # side 1.2 * 100
    torch.testing.assert_close(boxes[1], torch.tensor([-7.0, -7.0, 9.0, 9.0]))  # at least 16 px


def test_crop_batch_resamples_each_box_and_fills_outside_the_image():
    image = torch.zeros(3, 40, 60)
    image[:, :20, :30] = 200.0  # bright top-left quadrant
    boxes = torch.tensor([[0.0, 0.0, 30.0, 20.0], [30.0, 20.0, 60.0, 40.0], [50.0, 30.0, 70.0, 50.0]])
    crops = crop_batch(image, boxes, size=8, fill=FILL)
    assert crops.shape == (3, 3, 8, 8) and crops.dtype == torch.float32
    # Inside each box the content is exact; bilinear sampling blends the last row/column a little.
    torch.testing.assert_close(crops[0][:, :7, :7], torch.full((3, 7, 7), 200.0))
    assert (crops[0] > 190).all()
    torch.testing.assert_close(crops[1][:, 1:, 1:], torch.zeros(3, 7, 7))
    # Box 2 hangs over the bottom-right corner by half its side: that part is fill colour
    # (the bin on the image edge is a blend).
    torch.testing.assert_close(crops[2][:, 5:, 5:], torch.tensor(FILL).view(3, 1, 1).expand(3, 3, 3))
    torch.testing.assert_close(crops[2][:, :4, :4], torch.zeros(3, 4, 4))


def test_crop_batch_masks_out_the_background():
    image = torch.full((3, 40, 40), 100.0)
    masks = torch.zeros(1, 10, 10, dtype=torch.bool)
    masks[0, :, :5] = True  # left half of the frame, at quarter resolution
    crops = crop_batch(image, torch.tensor([[0.0, 0.0, 40.0, 40.0]]), size=8, masks=masks, fill=FILL)
    torch.testing.assert_close(crops[0, :, :, :4], torch.full((3, 8, 4), 100.0))
    torch.testing.assert_close(crops[0, :, :, 4:], torch.tensor(FILL).view(3, 1, 1).expand(3, 8, 4))


def test_no_masks_give_no_crops_and_normalize_is_per_channel():
    assert crop_batch(torch.zeros(3, 8, 8), torch.zeros(0, 4), size=4).shape == (0, 3, 4, 4)
    x = torch.full((1, 3, 2, 2), 255.0)
    out = normalize(x, torch.tensor([0.5, 0.5, 0.5]), torch.tensor([0.5, 0.25, 1.0]))
    assert out[0, :, 0, 0].tolist() == [1.0, 2.0, 0.5]
