"""Train the open-vocabulary model: a tiny open_clip CLIP, contrastively, on object crops.

Crops are cut exactly as the open-vocabulary labeler cuts them at run time (square boxes around
the mask, ``roi_align`` resampling, :mod:`sfs_core.open_vocab.crops`), with jittered box scale
and centre. Each crop is paired with a text naming its shape, sometimes its colour, in several
templates, including the run-time prompt (``"a photo of a {}."``) for every class in every batch.

The loss is a multi-positive CLIP loss over the batch's distinct texts: a crop's positives are
all texts that describe it ("star", "a red star", "a photo of a star."), so texts shared by
several crops are not pushed apart as the standard one-to-one CLIP loss would. Every shape class
is learned here, including the ones the closed-set model never sees: naming them is this
model's job.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sfs_core.synthetic.clip_model import OPENAI_MEAN, OPENAI_STD, build_clip, save_clip_folder
from sfs_core.synthetic.recipes import ClipRecipe
from sfs_core.synthetic.scenes import Scene
from sfs_core.synthetic.shapes import BACKGROUND, SHAPE_CLASSES
from sfs_core.synthetic.training import StageReport, deterministic, log_every

log = logging.getLogger(__name__)
TEMPLATES = ("{shape}", "a {shape}", "a {color} {shape}", "a photo of a {shape}.", "a photo of a {color} {shape}.",
             "a {color} {shape} on a background")
NO_COLOR = "none"  # the colour of background crops: only templates without ``{color}`` describe them


@dataclass(frozen=True)
class Caption:
    """A training text and what it claims: a shape, and a colour or ``None``."""

    text: str
    shape: str
    color: str | None

    def describes(self, shape: str, color: str) -> bool:
        return self.shape == shape and self.color in (None, color)


def caption(template: str, shape: str, color: str) -> Caption:
    """``template`` filled in; the caption claims the colour only if the template names it.
    Background crops (colour :data:`NO_COLOR`) take the first colourless template instead."""
    if color == NO_COLOR and "{color}" in template:
        template = TEMPLATES[0]
    return Caption(template.format(shape=shape, color=color), shape, color if "{color}" in template else None)


@dataclass
class CropSet:
    """Training crops: ``crops`` ``(M, 3, S, S)`` uint8 RGB, with each crop's shape and colour."""

    crops: torch.Tensor  # noqa: F821
    shapes: list[str]
    colors: list[str]


def jittered_boxes(boxes, scale: float, rng: np.random.Generator, copies: int):
    """``copies`` square boxes per tight box: side ``scale * long side`` times U(0.85, 1.25),
    centre moved by up to 8 % of the side. ``(N, 4)`` xyxy in, ``(N * copies, 4)`` out."""
    import torch

    boxes = boxes.repeat_interleave(copies, dim=0)
    n = boxes.shape[0]
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    side = (boxes[:, 2:] - boxes[:, :2]).amax(dim=1) * scale
    side = (side * torch.from_numpy(rng.uniform(0.85, 1.25, n)).float()).clamp(min=16.0)
    centre = centre + side[:, None] * torch.from_numpy(rng.uniform(-0.08, 0.08, (n, 2))).float()
    half = side[:, None].expand(n, 2) / 2
    return torch.cat([centre - half, centre + half], dim=1)


def degraded_masks(masks, rng: np.random.Generator):
    """``masks`` (``(N, H, W)`` bool) as a mask generator working at 1/3-1/6 resolution would
    return them: area-downsampled by a random factor, upsampled bilinearly, thresholded at a
    random level (rounded corners, slightly grown or shrunk)."""
    import torch.nn.functional as F

    factor, level = rng.uniform(3, 6), rng.uniform(0.35, 0.65)
    height, width = masks.shape[1:]
    small = F.interpolate(masks[:, None].float(), size=(max(1, round(height / factor)), max(1, round(width / factor))), mode="area")
    return F.interpolate(small, size=(height, width), mode="bilinear", align_corners=False)[:, 0] > level


def object_crops(scenes: Sequence[Scene], recipe: ClipRecipe, rng: np.random.Generator, min_pixels: int = 30) -> CropSet:
    """``recipe.crops_per_object`` crops of every visible object of every scene, each cut around
    a jittered box of the ground-truth mask or (``recipe.degraded_masks`` of the time) of a
    degraded copy of it, which also hides the background when ``recipe.mask_background``; plus
    ``recipe.background_crops`` crops of :func:`background_regions` per scene, named
    ``background``."""
    import torch

    from sfs_core.open_vocab.crops import crop_batch, mask_boxes

    crops, shapes, colors = [], [], []
    for scene in scenes:
        masks = torch.from_numpy(scene.instance_masks())
        keep = (masks.flatten(1).sum(1) >= min_pixels).nonzero().flatten().tolist()
        if not keep:
            continue
        frame = torch.from_numpy(scene.image).permute(2, 0, 1).float()
        for _ in range(recipe.crops_per_object):
            shown = masks[keep]
            if rng.random() < recipe.degraded_masks:
                shown = degraded_masks(shown, rng)
            boxes = jittered_boxes(mask_boxes(shown, scene.image.shape[:2]), recipe.crop_scale, rng, 1)
            foreground = shown if recipe.mask_background else None
            crops.append(crop_batch(frame, boxes, recipe.image_size, foreground).round().clamp(0, 255).to(torch.uint8))
            shapes += [scene.objects[i].shape for i in keep]
            colors += [scene.objects[i].color for i in keep]
        regions = background_regions(scene, recipe.background_crops, rng, min_pixels)
        if len(regions):
            boxes = jittered_boxes(mask_boxes(regions, scene.image.shape[:2]), recipe.crop_scale, rng, 1)
            crops.append(crop_batch(frame, boxes, recipe.image_size, regions if recipe.mask_background else None)
                         .round().clamp(0, 255).to(torch.uint8))
            shapes += [BACKGROUND] * len(regions)
            colors += [NO_COLOR] * len(regions)
    return CropSet(torch.cat(crops), shapes, colors)


def background_regions(scene: Scene, count: int, rng: np.random.Generator, min_pixels: int = 30):
    """Up to ``count`` masks ``(M, H, W)`` bool of background only: an ellipse or a box of an
    object's size around a random background pixel, minus every object. They stand for the
    spurious masks a mask generator returns on textured background."""
    import torch

    height, width = scene.instance_map.shape
    free = scene.instance_map == 0
    ys, xs = np.nonzero(free)
    if len(ys) == 0:
        return torch.zeros((0, height, width), dtype=torch.bool)
    yy, xx = np.mgrid[:height, :width]
    out = []
    for _ in range(count):
        i = int(rng.integers(len(ys)))
        ry, rx = rng.uniform(0.08, 0.25, 2) * min(height, width)
        if rng.random() < 0.5:
            region = ((yy - ys[i]) / ry) ** 2 + ((xx - xs[i]) / rx) ** 2 <= 1
        else:
            region = (np.abs(yy - ys[i]) <= ry) & (np.abs(xx - xs[i]) <= rx)
        region &= free
        if region.sum() >= min_pixels:
            out.append(region)
    return torch.from_numpy(np.stack(out)) if out else torch.zeros((0, height, width), dtype=torch.bool)


def multi_positive_loss(logits, positives):
    """Mean of the image->text and text->image losses where each row's target is the set of
    ``positives`` (``(B, U)`` bool): ``-log`` of the softmax mass on the positives. Text columns
    without a positive in the batch are left out of the text->image term."""
    import torch

    def one_way(scores, targets):
        log_prob = scores.log_softmax(dim=-1)
        return -torch.logsumexp(log_prob.masked_fill(~targets, float("-inf")), dim=-1)

    image_to_text = one_way(logits, positives).mean()
    present = positives.any(dim=0)
    text_to_image = one_way(logits.T[present], positives.T[present]).mean()
    return (image_to_text + text_to_image) / 2


def _augment(crops, rng: np.random.Generator):
    """Random right-angle rotation and mirror per crop (shapes do not change under either)."""
    import torch

    turns, flips = rng.integers(4, size=len(crops)), rng.integers(2, size=len(crops))
    out = [torch.rot90(c, int(k), (1, 2)) for c, k in zip(crops, turns)]
    return torch.stack([c.flip(2) if f else c for c, f in zip(out, flips)])


def train_clip(scenes: Sequence[Scene], recipe: ClipRecipe, out_dir: Path) -> StageReport:
    """Train and save an open_clip ``local-dir:`` folder into ``out_dir``
    (:mod:`sfs_core.synthetic.clip_model`). Deterministic for a given recipe and scenes."""
    import open_clip
    import torch
    import torch.nn.functional as F
    from transformers import get_cosine_schedule_with_warmup

    from sfs_core.open_vocab.crops import normalize

    report = StageReport("clip")
    t0, cpu0 = time.perf_counter(), time.process_time()
    rng = np.random.default_rng(recipe.seed)
    data = object_crops(scenes, recipe, rng)
    tokenizer = open_clip.tokenize if recipe.context_length == 77 else open_clip.SimpleTokenizer(context_length=recipe.context_length)
    mean, std = torch.tensor(OPENAI_MEAN), torch.tensor(OPENAI_STD)
    names = (BACKGROUND, *SHAPE_CLASSES) if recipe.background_crops else SHAPE_CLASSES
    prompts = [Caption(recipe.prompt.format(shape), shape, None) for shape in names]
    total = recipe.steps
    with deterministic(recipe.seed):
        model = build_clip(recipe).train()
        decay = [p for p in model.parameters() if p.ndim >= 2]
        no_decay = [p for p in model.parameters() if p.ndim < 2]
        optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": recipe.weight_decay},
                                       {"params": no_decay, "weight_decay": 0.0}], lr=recipe.lr)
        schedule = get_cosine_schedule_with_warmup(optimizer, max(1, total // 10), total)
        period = log_every(total)
        for step in range(1, total + 1):
            index = rng.choice(len(data.shapes), size=min(recipe.batch, len(data.shapes)), replace=False)
            shapes, colors = [data.shapes[i] for i in index], [data.colors[i] for i in index]
            captions = [caption(TEMPLATES[int(rng.integers(len(TEMPLATES)))], s, c) for s, c in zip(shapes, colors)]
            texts = list({c.text: c for c in prompts + captions}.values())
            positives = torch.tensor([[t.describes(s, c) for t in texts] for s, c in zip(shapes, colors)])
            x = normalize(_augment(data.crops[index], rng).float(), mean, std)
            image_features = F.normalize(model.encode_image(x), dim=-1)
            text_features = F.normalize(model.encode_text(tokenizer([t.text for t in texts])), dim=-1)
            logits = model.logit_scale.exp().clamp(max=100) * image_features @ text_features.T
            loss = multi_positive_loss(logits, positives)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            report.losses.append(loss.item())
            if step % period == 0 or step == total:
                log.info("clip step %d/%d loss %.4f", step, total, loss.item())
    save_clip_folder(model.eval(), recipe, out_dir)
    report.steps = total
    report.seconds = time.perf_counter() - t0
    report.extra = {"cpu_seconds": round(time.process_time() - cpu0, 1), "crops": len(data.shapes),
                    "parameters": sum(p.numel() for p in model.parameters())}
    return report
