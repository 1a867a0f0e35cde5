"""Batched mask crops for CLIP and BLIP: one ``roi_align`` call crops and resizes every mask.

Geometry follows Semantic Segment Anything: a mask's box is enlarged around its centre (1.2x for
CLIP, 1.6x for captioning), made square so the object is not squashed, and resampled to the
model's input size. Image areas outside the frame, and the background when masking is on, take
a fill colour (CLIP's mean colour, which normalises to ~0).
"""

from __future__ import annotations

import torch
from torchvision.ops import roi_align

CLIP_MEAN_RGB = (0.48145466, 0.4578275, 0.40821073)


def mask_boxes(masks: torch.Tensor, image_size: tuple[int, int]) -> torch.Tensor:
    """Tight boxes of low-resolution masks, in image pixels.

    Args:
        masks: ``(N, h, w)`` bool covering the whole ``(H, W)`` image (``MaskResult.masks``).
        image_size: ``(H, W)``.

    Returns:
        ``(N, 4)`` float32 ``x1, y1, x2, y2`` (exclusive ends) on ``masks.device``; an empty mask
        gets the whole image.
    """
    n, h, w = masks.shape
    height, width = image_size
    rows, cols = masks.any(dim=2), masks.any(dim=1)  # (N, h), (N, w)
    y1 = rows.float().argmax(dim=1)
    y2 = h - rows.flip(1).float().argmax(dim=1)
    x1 = cols.float().argmax(dim=1)
    x2 = w - cols.flip(1).float().argmax(dim=1)
    boxes = torch.stack([x1, y1, x2, y2], dim=1).float()
    boxes = boxes * torch.tensor([width / w, height / h] * 2, device=masks.device)
    empty = ~rows.any(dim=1)
    boxes[empty] = torch.tensor([0.0, 0.0, float(width), float(height)], device=masks.device)
    return boxes


def square_boxes(boxes: torch.Tensor, scale: float, min_side: float = 16.0) -> torch.Tensor:
    """Square boxes with side ``scale * max(box width, box height)`` (at least ``min_side``)
    around each box's centre. ``(N, 4)`` float32 xyxy in, same out; may extend past the image."""
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    side = ((boxes[:, 2:] - boxes[:, :2]).amax(dim=1) * scale).clamp(min=min_side)
    half = torch.stack([side, side], dim=1) / 2
    return torch.cat([centre - half, centre + half], dim=1)


def crop_batch(
    image: torch.Tensor,
    boxes: torch.Tensor,
    size: int,
    masks: torch.Tensor | None = None,
    fill: tuple[float, float, float] = tuple(255 * c for c in CLIP_MEAN_RGB),
) -> torch.Tensor:
    """Crop and resize every box at once (bilinear, area-averaged when shrinking).

    Args:
        image: ``(3, H, W)`` float32 RGB in ``[0, 255]``.
        boxes: ``(N, 4)`` float32 xyxy in image pixels, same device.
        size: output side in pixels.
        masks: optional ``(N, h, w)`` bool masks covering the image; pixels outside the mask
            take ``fill`` (background masking).
        fill: RGB colour in ``[0, 255]`` for out-of-image and masked-out pixels.

    Returns:
        ``(N, 3, size, size)`` float32 in ``[0, 255]`` on ``image.device``.
    """
    n = boxes.shape[0]
    if n == 0:
        return image.new_zeros((0, 3, size, size))
    colour = torch.tensor(fill, dtype=image.dtype, device=image.device).view(1, 3, 1, 1)
    rois = torch.cat([boxes.new_zeros(n, 1), boxes], dim=1)
    # roi_align pads with zeros: shift the fill colour to zero so outside pixels come back as fill.
    crops = roi_align((image[None] - colour), rois, (size, size), 1.0, -1, True) + colour
    if masks is not None:
        _, h, w = masks.shape
        height, width = image.shape[1:]
        scale = torch.tensor([w / width, h / height] * 2, device=boxes.device)
        mask_rois = torch.cat([torch.arange(n, device=boxes.device, dtype=boxes.dtype)[:, None], boxes * scale], dim=1)
        inside = roi_align(masks[:, None].to(image.dtype), mask_rois, (size, size), 1.0, -1, True) > 0.5
        crops = torch.where(inside, crops, colour)
    return crops


def normalize(crops: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """``(N, 3, S, S)`` in ``[0, 255]`` to a model input: ``(x / 255 - mean) / std`` per channel
    (``mean``/``std`` are ``(3,)`` in ``[0, 1]`` units)."""
    return (crops / 255.0 - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1)
