"""``sfs models init-synthetic DIR``: trained synthetic models plus data to run them on.

Writes, under ``DIR``:

* ``models/``: copies of the cached models (``fastsam-synthetic.pt``, ``segformer-synthetic/``,
  ``clip-synthetic/``), so the folder stays valid when the cache is cleaned;
* ``val/``: held-out scenes in the Cityscapes layout with ``classes.yaml``
  (:mod:`sfs_core.synthetic.datasets`);
* ``synthetic_bag/``: a rosbag2 video with an image and a ground-truth topic
  (:mod:`sfs_core.synthetic.bag`);
* ``calibration/``: training-distribution scenes for the int8 calibration of the mask model
  (``calibration_images``; on the sample photos, one ring track in the bag was mislabelled);
* ``sfs.yaml``: the ROS-parameter config using the models (``offline: true``);
* ``README.txt``: what is where and the commands that use it.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import yaml

from sfs_core.synthetic.accuracy import VALIDATION_CONFIG, validation_scenes
from sfs_core.synthetic.bag import BagTopics, write_synthetic_bag
from sfs_core.synthetic.cache import SyntheticModels, ensure_models
from sfs_core.synthetic.clip_model import WEIGHTS_FILE, clip_model_name
from sfs_core.synthetic.datasets import LABEL_SPACE_FILE, write_cityscapes_layout
from sfs_core.synthetic.recipes import SyntheticRecipe, validation_seed
from sfs_core.synthetic.scenes import render, sample_scene, sample_sequence
from sfs_core.synthetic.shapes import BACKGROUND, SHAPE_CLASSES

MODEL_NAMES = {"masks": "fastsam-synthetic.pt", "closed_set": "segformer-synthetic", "clip": "clip-synthetic"}
SEGMENTER = "shapes"
BAG_SEED = validation_seed(1_000_000)
TOP_K = 3  # CLIP candidates that can confirm a closed-set label (see synthetic_params)


@dataclass(frozen=True)
class InitOptions:
    """What ``init-synthetic`` writes besides the models."""

    val_scenes: int = 40
    calibration_scenes: int = 16
    bag_frames: int = 60
    bag_rate_hz: float = 10.0


@dataclass
class InitResult:
    config: Path
    models: SyntheticModels
    seconds: dict[str, float] = field(default_factory=dict)


def synthetic_params(folder: Path, recipe: SyntheticRecipe) -> dict:
    """The ``sfs_node: ros__parameters`` tree for the models copied under ``folder/models``.

    Paths of the mask and closed-set models are ``./``-relative (resolved against the YAML's
    folder by :func:`sfs_core.config.load_config`); ``open_vocab.clip_model`` is absolute,
    because the config does not resolve ``local-dir:`` names (see the README's hook note).

    Choices, measured on held-out scenes other than the accuracy tests' (seed offset 5000):

    * masks at ``imgsz`` 320, the training scale (384 gave +0.01 known mIoU on these scenes and
      -0.05 on the test scenes: noise at 40 scenes), NMS IoU 0.7 (0.9 keeps ~3 duplicates per object);
    * ``background`` is in the CLIP vocabulary (the CLIP model learned it from background crops),
      so spurious masks on background are confirmed as background instead of named as shapes;
    * ``top_k: 3`` (the paper's K) and ``min_score: 0.8``: a confident closed-set label among
      CLIP's top three is kept (rule 1), and CLIP's top-1 replaces an unsure or contradicted one
      only when its probability is 0.8 or more (rule 2); novel shapes, which the closed set calls
      ``background``, get CLIP's top-1. With the upsampled closed set, fusion all-class mIoU
      0.776 -> 0.795 and known 0.769 -> 0.792 against K=2 and 0.5 on 100 of these scenes (a grid
      over K 2/3, min_score 0.5-0.9 and min_confidence 0.5-0.8; min_confidence stays 0.5, as
      0.6 costs the closed set alone 0.01);
    * ``fill_uncovered: true`` with ``fill_classes: [background]``: pixels no mask covers take the
      closed-set pixel label when it is background (background IoU 0.93 instead of 0). The
      shapes come from masks only: filled with every class, the tiny segmenter's pixel map paints
      shapes onto textured background, where the mask generator rightly finds nothing
      (closed-set known mIoU 0.804 -> 0.818 and fusion all-class 0.795 -> 0.802 on 100 of these
      scenes);
    * ``mask_background`` as the CLIP model was trained (off: known mIoU drops to 0.20);
    * the closed set averages its scores over the four quarter turns of its input
      (``test_augmentation: rot90``), the group it was trained with: closed-set known mIoU 0.741 ->
      0.800 on these scenes (0.783 on 100 of them), background unchanged; 4 forwards of the tiny model.
    * ``upsample: 4``: its scores are upsampled bilinearly to its input's resolution before the
      argmax (transformers' post-processing), a 128x128 class map instead of 32x32 for the vote and
      the fill: closed-set known mIoU 0.783 -> 0.804 on 100 of these scenes, +0.3 ms a frame.
    """
    clip = (folder / "models" / MODEL_NAMES["clip"]).resolve()
    vocabulary = [BACKGROUND, *SHAPE_CLASSES] if recipe.clip.background_crops else list(SHAPE_CLASSES)
    return {"sfs_node": {"ros__parameters": {
        "device": "cpu",
        "offline": True,
        "calibration_images": "./calibration",
        "masks": {"model": f"./models/{MODEL_NAMES['masks']}", "imgsz": 320, "conf": 0.25, "iou": 0.7, "max_masks": 100,
                  "retina": True},
        "closed_set": {"segmenters": [SEGMENTER],
                       SEGMENTER: {"model": f"./models/{MODEL_NAMES['closed_set']}", "input_size": recipe.closed_set.input_size,
                                   "test_augmentation": "rot90", "upsample": 4}},
        "fusion": {"min_confidence": 0.5, "fill_uncovered": True, "fill_classes": [BACKGROUND]},
        "open_vocab": {
            "enabled": True, "mode": "clip", "clip_model": clip_model_name(clip),
            "clip_pretrained": f"./models/{MODEL_NAMES['clip']}/{WEIGHTS_FILE}",
            "vocabulary": vocabulary, "prompt": recipe.clip.prompt, "top_k": TOP_K,
            "clip_crop_scale": recipe.clip.crop_scale, "mask_background": recipe.clip.mask_background,
            "min_score": 0.8, "fallback_min_score": 0.3,
        },
    }}}


def _copy(source: Path, target: Path) -> None:
    """Replace ``target`` with a copy of the file or folder ``source``."""
    if target.is_dir():
        shutil.rmtree(target)
    elif target.exists():
        target.unlink()
    if source.is_dir():
        shutil.copytree(source, target)
    else:
        shutil.copy2(source, target)


def _readme(folder: Path, models: SyntheticModels, topics: BagTopics) -> str:
    config = folder / "sfs.yaml"
    return f"""Synthetic world for sfs_ros: models trained on coloured shapes, and data to run them on.
Outputs are meaningful on these synthetic scenes only. Model set {models.key}
(stage keys: {', '.join(f'{s} {k}' for s, k in models.keys.items())}).

models/              trained models (copied from the cache)
val/                 held-out scenes, Cityscapes layout; classes in val/{LABEL_SPACE_FILE}
synthetic_bag/       rosbag2: {topics.image} (rgb8) and {topics.ground_truth} (mono8 class ids)
calibration/         training-distribution scenes for the mask model's int8 calibration
sfs.yaml             config using the models (offline)

sfs segment val/leftImg8bit/val/synthetic/*.png --config {config} --out /tmp/sfs-synthetic-segment
sfs replay {folder / 'synthetic_bag'} --out /tmp/sfs-synthetic-replay --config {config} \\
    --gt-topic {topics.ground_truth} --label-map {folder / 'val' / LABEL_SPACE_FILE}
"""


def init_synthetic(folder: str | os.PathLike, cache: str | os.PathLike | None = None,
                   recipe: SyntheticRecipe = SyntheticRecipe(), options: InitOptions = InitOptions(),
                   log: Callable[[str], None] = print, quiet: bool = True) -> InitResult:
    """Train or reuse the models of ``recipe`` and write ``folder`` (see the module docstring).

    Re-running replaces the data and config (they are deterministic) and reuses the models.
    ``log`` gets one line per stage with its wall time.
    """
    folder = Path(folder).expanduser().resolve()
    folder.mkdir(parents=True, exist_ok=True)
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    models = ensure_models(recipe, cache, log=log, quiet=quiet)
    seconds.update({f"model.{stage}": s for stage, s in models.seconds.items()})

    t = time.perf_counter()
    (folder / "models").mkdir(exist_ok=True)
    for stage, path in models.paths.items():
        _copy(path, folder / "models" / MODEL_NAMES[stage])
    seconds["copy_models"] = time.perf_counter() - t

    t = time.perf_counter()
    val = folder / "val"
    shutil.rmtree(val, ignore_errors=True)
    write_cityscapes_layout(val, validation_scenes(options.val_scenes))
    seconds["validation_set"] = time.perf_counter() - t
    log(f"validation set: {options.val_scenes} scenes in {val} ({seconds['validation_set']:.1f} s)")

    t = time.perf_counter()
    bag = folder / "synthetic_bag"
    if bag.is_dir() and (bag / "metadata.yaml").exists():
        shutil.rmtree(bag)
    topics = BagTopics()
    frames = (render(spec) for spec in sample_sequence(BAG_SEED, options.bag_frames, VALIDATION_CONFIG))
    write_synthetic_bag(bag, frames, options.bag_rate_hz, topics)
    seconds["bag"] = time.perf_counter() - t
    log(f"bag: {options.bag_frames} frames in {bag} ({seconds['bag']:.1f} s)")

    calibration = folder / "calibration"
    shutil.rmtree(calibration, ignore_errors=True)
    calibration.mkdir()
    for i in range(options.calibration_scenes):  # training scenes: the frames the models were made for
        scene = render(sample_scene(recipe.data.scene_seed(i), recipe.data.scene))
        cv2.imwrite(str(calibration / f"{i:03d}.png"), cv2.cvtColor(scene.image, cv2.COLOR_RGB2BGR))

    config = folder / "sfs.yaml"
    header = f"# sfs_ros config for the synthetic world (models {models.key}); written by `sfs models init-synthetic`\n"
    config.write_text(header + yaml.safe_dump(synthetic_params(folder, recipe), sort_keys=False))
    (folder / "README.txt").write_text(_readme(folder, models, topics))
    seconds["total"] = time.perf_counter() - t0
    log(f"wrote {config} (total {seconds['total']:.1f} s)")
    return InitResult(config=config, models=models, seconds=seconds)
