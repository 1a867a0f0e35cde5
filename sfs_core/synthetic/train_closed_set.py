"""Train the closed-set model: a tiny SegFormer (transformers) on the known classes only.

Novel shapes are in the training images but labelled ``background``: to this model they are
unannotated stuff, as unknown objects are in a real closed-set dataset. The output folder is a
regular ``save_pretrained`` checkpoint with an image processor, so
:class:`sfs_core.closed_set.ClosedSetSegmenter` loads it like any hub model.

Training choices that matter at this size (measured on the synthetic world):

* PyTorch's default (fan-in scaled) initialisation instead of transformers' ``N(0, 0.02)``,
  which at 16-64 channels shrinks activations layer after layer and stalls learning.
* The loss is computed at the logits' resolution (1/4 of the input; the segmenter arg-maxes
  there at run time too), plus an object term: cross-entropy of each object's mask-averaged
  logits (:func:`object_loss`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from sfs_core.synthetic.recipes import ClosedSetRecipe, DataRecipe
from sfs_core.synthetic.scenes import Scene
from sfs_core.synthetic.shapes import CLASS_NAMES
from sfs_core.synthetic.training import StageReport, deterministic, log_every

log = logging.getLogger(__name__)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
MAX_OBJECTS = 64  # per image, for the object term's segment ids


def closed_set_targets(semantic_map: np.ndarray, known: Sequence[str]) -> np.ndarray:
    """World class ids -> closed-set ids: known classes by position in ``known`` (which starts
    with background), everything else -> 0 (background). uint8, same shape.

    >>> closed_set_targets(np.array([0, 1, 4, 6]), ("background", "circle", "star")).tolist()
    [0, 1, 2, 0]
    """
    lut = np.zeros(len(CLASS_NAMES), np.uint8)
    for i, name in enumerate(known):
        lut[CLASS_NAMES.index(name)] = i
    return lut[semantic_map]


def training_arrays(scenes: Sequence[Scene], known: Sequence[str], size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Images ``(N, S, S, 3)`` uint8, targets ``(N, S, S)`` uint8 and instance maps ``(N, S, S)``
    uint8, square-resized as :class:`~sfs_core.closed_set.ClosedSetSegmenter` resizes its input
    (bilinear for images, nearest for labels)."""
    resize = lambda a, interp: cv2.resize(a, (size, size), interpolation=interp)  # noqa: E731
    images = np.stack([resize(s.image, cv2.INTER_LINEAR) for s in scenes])
    targets = np.stack([resize(closed_set_targets(s.semantic_map, known), cv2.INTER_NEAREST) for s in scenes])
    instances = np.stack([resize(np.minimum(s.instance_map, MAX_OBJECTS - 1).astype(np.uint8), cv2.INTER_NEAREST) for s in scenes])
    return images, targets, instances


def build_segformer(recipe: ClosedSetRecipe, labels: Sequence[str]):
    """An untrained ``SegformerForSemanticSegmentation`` of the recipe's size, with PyTorch's
    default initialisation of every convolution and linear layer (see the module docstring)."""
    import torch
    from transformers import SegformerConfig, SegformerForSemanticSegmentation

    config = SegformerConfig(
        num_labels=len(labels), id2label=dict(enumerate(labels)), label2id={n: i for i, n in enumerate(labels)},
        hidden_sizes=list(recipe.hidden_sizes), depths=list(recipe.depths), num_attention_heads=list(recipe.num_attention_heads),
        sr_ratios=list(recipe.sr_ratios), decoder_hidden_size=recipe.decoder_hidden_size, num_encoder_blocks=len(recipe.depths),
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, classifier_dropout_prob=0.0, drop_path_rate=0.0,
    )
    model = SegformerForSemanticSegmentation(config)
    for module in model.modules():
        if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)):
            module.reset_parameters()
    return model


def object_loss(logits, instances, targets):
    """Cross-entropy of every object's mask-averaged logits against its class.

    Args:
        logits: ``(B, C, h, w)``.
        instances: ``(B, h, w)`` int64 object ids (0 = background, not an object).
        targets: ``(B, h, w)`` int64 classes (constant over each object).
    """
    import torch
    import torch.nn.functional as F

    batch, classes = logits.shape[:2]
    segment = (instances + MAX_OBJECTS * torch.arange(batch)[:, None, None]).reshape(-1)
    size = batch * MAX_OBJECTS
    sums = torch.zeros(size, classes, dtype=logits.dtype).index_add_(0, segment, logits.permute(0, 2, 3, 1).reshape(-1, classes))
    counts = torch.bincount(segment, minlength=size)
    labels = torch.zeros(size, dtype=torch.long).index_put_((segment,), targets.reshape(-1))
    valid = (counts > 0) & (torch.arange(size) % MAX_OBJECTS > 0)
    if not bool(valid.any()):
        return logits.sum() * 0.0
    return F.cross_entropy(sums[valid] / counts[valid, None], labels[valid])


def train_closed_set(scenes: Sequence[Scene], data: DataRecipe, recipe: ClosedSetRecipe, out_dir: Path) -> StageReport:
    """Train and ``save_pretrained`` into ``out_dir`` (model + ``SegformerImageProcessor``).

    Deterministic for a given recipe, scenes and torch build. Returns the stage report.
    """
    import torch
    import torch.nn.functional as F
    from transformers import SegformerImageProcessor, get_cosine_schedule_with_warmup

    report = StageReport("closed_set")
    t0, cpu0 = time.perf_counter(), time.process_time()
    known = data.known_classes
    images, targets, instances = training_arrays(scenes, known, recipe.input_size)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1) * 255
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) * 255
    weights = torch.tensor([recipe.background_weight] + [1.0] * (len(known) - 1))
    with deterministic(recipe.seed):
        model = build_segformer(recipe, known).train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
        schedule = get_cosine_schedule_with_warmup(optimizer, max(1, recipe.steps // 20), recipe.steps)
        rng = np.random.default_rng(recipe.seed)
        period = log_every(recipe.steps)
        for step in range(1, recipe.steps + 1):
            index = rng.choice(len(images), size=min(recipe.batch, len(images)), replace=False)
            x = torch.from_numpy(images[index]).permute(0, 3, 1, 2).float()
            maps = torch.from_numpy(np.stack([targets[index], instances[index]], axis=1)).long()  # (B, 2, S, S)
            turns = int(rng.integers(4))  # shapes are rotation-invariant; aspect is square here
            x, maps = torch.rot90(x, turns, (2, 3)), torch.rot90(maps, turns, (2, 3))
            logits = model(pixel_values=(x - mean) / std).logits
            maps = F.interpolate(maps.float(), size=logits.shape[2:], mode="nearest").long()
            loss = F.cross_entropy(logits, maps[:, 0], weight=weights)
            if recipe.object_loss_weight > 0:
                loss = loss + recipe.object_loss_weight * object_loss(logits, maps[:, 1], maps[:, 0])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            report.losses.append(loss.item())
            if step % period == 0 or step == recipe.steps:
                log.info("closed_set step %d/%d loss %.4f", step, recipe.steps, loss.item())
    model.eval().save_pretrained(out_dir)
    size = recipe.input_size
    SegformerImageProcessor(size={"height": size, "width": size}, image_mean=list(IMAGENET_MEAN), image_std=list(IMAGENET_STD),
                            do_reduce_labels=False).save_pretrained(out_dir)
    report.steps = recipe.steps
    report.seconds = time.perf_counter() - t0
    report.extra = {"cpu_seconds": round(time.process_time() - cpu0, 1), "classes": list(known), "input_size": size,
                    "parameters": sum(p.numel() for p in model.parameters())}
    return report
