"""Accuracy of the synthetic models on held-out scenes, measured through the real run-time code.

* :func:`mask_quality`: for every ground-truth object, the IoU of the best predicted mask of
  :class:`~sfs_core.masks.MaskGenerator` (masks upsampled to the image, nearest); the mean and
  the recall at IoU 0.5.
* :func:`semantic_quality`: per-class IoU of :meth:`Pipeline.process` label maps against the
  semantic maps, one confusion matrix over the set (mmseg's protocol,
  :class:`~sfs_core.evaluation.metrics.ConfusionMatrix`), labels mapped by name.
* :func:`clip_quality`: top-1 accuracy of :class:`~sfs_core.open_vocab.clip_ranker.ClipRanker`
  on ground-truth-mask crops (the labeler's crop geometry) against the shape names.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from sfs_core.synthetic.recipes import validation_seed
from sfs_core.synthetic.scenes import Scene, SceneConfig, render, sample_scene
from sfs_core.synthetic.shapes import BACKGROUND, CLASS_NAMES, SHAPE_CLASSES

#: Held-out scenes: the training world at 320x240 (the demo bag's size).
VALIDATION_CONFIG = SceneConfig(sizes=((240, 320),))


def validation_scenes(count: int, config: SceneConfig = VALIDATION_CONFIG, offset: int = 0) -> list[Scene]:
    """``count`` held-out scenes (seeds no training recipe uses), 320x240 by default."""
    return [render(sample_scene(validation_seed(offset + i), config)) for i in range(count)]


def _nanmean(values) -> float | None:
    values = [v for v in values if v is not None and not np.isnan(v)]
    return float(np.mean(values)) if values else None


@dataclass(frozen=True)
class MaskQuality:
    objects: int
    mean_best_iou: float
    recall_at_50: float
    masks_per_image: float

    def to_json(self) -> dict:
        return {"objects": self.objects, "mean_best_iou": round(self.mean_best_iou, 4),
                "recall_at_50": round(self.recall_at_50, 4), "masks_per_image": round(self.masks_per_image, 2)}


def best_ious(predicted, ground_truth):
    """``(G,)`` best IoU of each ground-truth mask over the predicted ones (0 without any);
    both ``(N, H, W)`` bool tensors of one image."""
    import torch

    if predicted.shape[0] == 0:
        return torch.zeros(ground_truth.shape[0])
    p, g = predicted.flatten(1).float(), ground_truth.flatten(1).float()
    inter = g @ p.T
    union = g.sum(1, keepdim=True) + p.sum(1)[None] - inter
    return (inter / union.clamp(min=1)).max(dim=1).values


def mask_quality(generator, scenes: Sequence[Scene], min_pixels: int = 1) -> MaskQuality:
    """Best-mask IoU per visible ground-truth object (``min_pixels`` or more) of ``scenes``."""
    import torch
    import torch.nn.functional as F

    best, counts = [], []
    for scene in scenes:
        result = generator(scene.image)
        masks = result.masks
        if tuple(masks.shape[1:]) != scene.instance_map.shape:
            masks = F.interpolate(masks[None].float(), size=scene.instance_map.shape, mode="nearest-exact")[0] > 0.5
        gt = torch.from_numpy(scene.instance_masks())
        gt = gt[gt.flatten(1).sum(1) >= min_pixels]
        best.append(best_ious(masks.cpu(), gt))
        counts.append(len(result))
    ious = torch.cat(best).numpy() if best else np.zeros(0)
    return MaskQuality(len(ious), float(ious.mean()) if len(ious) else 0.0, float((ious >= 0.5).mean()) if len(ious) else 0.0,
                       float(np.mean(counts)) if counts else 0.0)


def semantic_quality(pipeline, scenes: Sequence[Scene], novel: Sequence[str], times: list[float] | None = None) -> dict:
    """Per-class IoU of ``pipeline`` over ``scenes`` and the means that issue 8 asks for:
    ``miou_known`` (known shapes), ``iou_novel`` (novel shapes), ``miou_all`` (all classes with
    background), ``background``. Means skip classes absent from ground truth and prediction.
    ``times``, if given, receives each frame's ``timings["total"]`` (ms)."""
    from sfs_core.evaluation.label_mapping import LabelMapper, LabelSpace
    from sfs_core.evaluation.metrics import ConfusionMatrix

    mapper = LabelMapper(LabelSpace("synthetic_shapes", CLASS_NAMES), synonyms={})
    confusion = ConfusionMatrix(len(CLASS_NAMES))
    for scene in scenes:
        result = pipeline.process(scene.image)
        if times is not None:
            times.append(result.timings["total"])
        confusion.update(mapper.lookup(result.label_table.names)[result.label_map], scene.semantic_map)
    iou = dict(zip(CLASS_NAMES, (None if np.isnan(v) else float(v) for v in confusion.iou())))
    known = [c for c in SHAPE_CLASSES if c not in novel]
    return {
        "per_class_iou": {k: None if v is None else round(v, 4) for k, v in iou.items()},
        "miou_known": _nanmean(iou[c] for c in known),
        "iou_novel": _nanmean(iou[c] for c in novel),
        "miou_all": _nanmean(iou.values()),
        "background": iou[BACKGROUND],
    }


def clip_quality(ranker, scenes: Sequence[Scene], novel: Sequence[str], crop_scale: float = 1.2, mask_background: bool = True,
                 names: Sequence[str] = SHAPE_CLASSES, min_pixels: int = 30) -> dict:
    """Top-1 accuracy of ``ranker`` (a ``ClipRanker``) over crops of ground-truth masks, ranked
    against ``names`` with the ranker's prompt: on novel-class objects and on all objects.
    ``crop_scale`` and ``mask_background`` as in the ``open_vocab`` config."""
    import torch

    from sfs_core.open_vocab.crops import crop_batch, mask_boxes, square_boxes

    text = ranker.encode_texts(list(names))
    truth, predicted = [], []
    for scene in scenes:
        masks = torch.from_numpy(scene.instance_masks())
        keep = (masks.flatten(1).sum(1) >= min_pixels).nonzero().flatten().tolist()
        if not keep:
            continue
        boxes = square_boxes(mask_boxes(masks[keep], scene.image.shape[:2]), crop_scale)
        frame = torch.from_numpy(scene.image).permute(2, 0, 1).float()
        crops = crop_batch(frame, boxes, ranker.input_size, masks[keep] if mask_background else None)
        _, index = ranker.rank(ranker.encode_images(crops), text, 1)
        predicted += [names[i] for i in index[:, 0].tolist()]
        truth += [scene.objects[i].shape for i in keep]
    truth_a, predicted_a = np.array(truth), np.array(predicted)
    is_novel = np.isin(truth_a, list(novel))
    per_class = {c: float((predicted_a[truth_a == c] == c).mean()) for c in names if (truth_a == c).any()}
    return {
        "crops": len(truth),
        "top1_novel": float((predicted_a[is_novel] == truth_a[is_novel]).mean()) if is_novel.any() else None,
        "top1_all": float((predicted_a == truth_a).mean()) if len(truth) else None,
        "top1_per_class": {k: round(v, 4) for k, v in per_class.items()},
    }
