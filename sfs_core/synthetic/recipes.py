"""Typed training recipes of the tiny synthetic-world models, and their cache keys.

A recipe is a frozen dataclass of plain values. Its **key** is a SHA-256 over the recipe's JSON,
the source code of the modules that generate the data and train the model, and the versions of
the libraries that do the training; any change to one of those gives a new key, so a stale
cached model is never reused (see :mod:`sfs_core.synthetic.cache`).

Each model has its own key, so changing the CLIP recipe does not retrain the mask generator.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from sfs_core.synthetic.scenes import SceneConfig
from sfs_core.synthetic.shapes import BACKGROUND, SHAPE_CLASSES

_PACKAGE = Path(__file__).resolve().parent
#: Modules whose source is part of every key: the world itself and the recipe/key logic.
_SHARED_SOURCES = ("shapes.py", "textures.py", "scenes.py", "recipes.py")
_LIBRARIES = ("torch", "numpy", "opencv-python-headless")


@dataclass(frozen=True)
class DataRecipe:
    """The training scenes shared by all three models (validation scenes use other seeds)."""

    train_scenes: int = 1000
    seed: int = 0
    scene: SceneConfig = field(default_factory=SceneConfig)
    #: Shape classes the closed-set model never learns (they are labelled background for it).
    novel_classes: tuple[str, ...] = ("star", "cross")

    def __post_init__(self) -> None:
        unknown = set(self.novel_classes) - set(SHAPE_CLASSES)
        if unknown:
            raise ValueError(f"novel_classes {sorted(unknown)} are not shape classes {SHAPE_CLASSES}")
        if self.train_scenes < 1:
            raise ValueError(f"train_scenes must be >= 1, got {self.train_scenes}")

    @property
    def known_classes(self) -> tuple[str, ...]:
        """The closed set's vocabulary: background first, then the shapes it is trained on."""
        return (BACKGROUND, *(c for c in SHAPE_CLASSES if c not in self.novel_classes))

    def scene_seed(self, index: int) -> int:
        """Seed of training scene ``index`` (validation sets use :func:`validation_seed`)."""
        return self.seed * 1_000_003 + index


def validation_seed(index: int) -> int:
    """Seeds of held-out scenes: disjoint from every training seed below 10^9."""
    return 2_000_000_000 + index


@dataclass(frozen=True)
class MaskRecipe:
    """Class-agnostic YOLOv8-seg trained with ultralytics (FastSAM's architecture, shrunk).

    No mosaic: with a few epochs, training on whole scenes at their test-time scale converges
    faster than on mosaics (measured: recall@0.5 0.84 vs 0.58 after the same 15 epochs). Milder
    scale jitter and 16 epochs instead of 10: mean best-mask IoU 0.86 instead of 0.80.
    """

    depth: float = 0.33
    width: float = 0.125  # yolov8n is 0.25
    max_channels: int = 256
    imgsz: int = 256
    epochs: int = 16
    batch: int = 8
    mosaic: float = 0.0
    close_mosaic: int = 0
    optimizer: str = "AdamW"
    lr0: float = 0.004
    warmup_epochs: float = 1.0
    scale: float = 0.25  # ultralytics' random scale augmentation (+-)
    seed: int = 0


@dataclass(frozen=True)
class ClosedSetRecipe:
    """A SegFormer much smaller than B0, trained on the known classes only.

    Besides the per-pixel cross-entropy, an object term classifies each ground-truth object from
    its mask-averaged logits: the closed set is used through majority votes inside masks, and
    this term trains exactly that, several times faster. Background keeps full weight: at 0.3 the
    model paints shapes onto textured background (majority vote on ground-truth masks, known
    classes: mean IoU 0.83 at weight 0.3, 0.91 at 1.0).
    """

    hidden_sizes: tuple[int, ...] = (16, 32, 64, 128)
    depths: tuple[int, ...] = (1, 1, 1, 1)
    num_attention_heads: tuple[int, ...] = (1, 1, 2, 4)
    sr_ratios: tuple[int, ...] = (8, 4, 2, 1)
    decoder_hidden_size: int = 64
    input_size: int = 128
    steps: int = 2000
    batch: int = 16
    lr: float = 3e-3
    weight_decay: float = 0.01
    background_weight: float = 1.0
    object_loss_weight: float = 1.0
    seed: int = 0


@dataclass(frozen=True)
class ClipRecipe:
    """A tiny open_clip CLIP (ResNet or ViT image tower, causal text transformer), trained
    contrastively on object crops and on background crops named "background" (so that spurious
    masks on background are not named as shapes)."""

    image_size: int = 64
    vision: str = "resnet"  # "resnet" (open_clip ModifiedResNet) or "vit"
    resnet_layers: tuple[int, ...] = (1, 1, 1, 1)
    vision_width: int = 16  # ResNet stem width (features end at 32x this) or ViT width
    vision_layers: int = 4  # ViT only
    vision_head_width: int = 32
    patch_size: int = 8  # ViT only
    text_width: int = 128
    text_layers: int = 3
    text_heads: int = 4
    context_length: int = 16
    embed_dim: int = 128
    crop_scale: float = 1.2  # as open_vocab.clip_crop_scale
    mask_background: bool = True  # as open_vocab.mask_background: only the mask's pixels are shown
    degraded_masks: float = 0.7  # share of crops cut with a coarsened mask, as predicted masks look
    crops_per_object: int = 2  # jittered crops per training object
    background_crops: int = 1  # crops of background regions per scene, named "background"
    steps: int = 1000
    batch: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.05
    prompt: str = "a photo of a {}."  # as open_vocab.prompt; always among the training texts
    seed: int = 0

    def __post_init__(self) -> None:
        if self.vision not in ("resnet", "vit"):
            raise ValueError(f"vision must be 'resnet' or 'vit', got '{self.vision}'")
        if self.vision == "resnet" and self.image_size % 32:
            raise ValueError(f"a ResNet tower needs image_size divisible by 32, got {self.image_size}")


@dataclass(frozen=True)
class SyntheticRecipe:
    """All three models."""

    data: DataRecipe = field(default_factory=DataRecipe)
    masks: MaskRecipe = field(default_factory=MaskRecipe)
    closed_set: ClosedSetRecipe = field(default_factory=ClosedSetRecipe)
    clip: ClipRecipe = field(default_factory=ClipRecipe)


#: Model stage -> (recipe attribute, training module file).
STAGES: dict[str, tuple[str, str]] = {
    "masks": ("masks", "train_masks.py"),
    "closed_set": ("closed_set", "train_closed_set.py"),
    "clip": ("clip", "train_clip.py"),
}


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "absent"


_STAGE_LIBRARIES = {"masks": ("ultralytics-opencv-headless",), "closed_set": ("transformers",), "clip": ("open_clip_torch",)}


def stage_key(recipe: SyntheticRecipe, stage: str) -> str:
    """16 hex digits identifying the model of ``stage`` (``masks``, ``closed_set`` or ``clip``)."""
    if stage not in STAGES:
        raise ValueError(f"unknown stage '{stage}' (known: {', '.join(STAGES)})")
    attribute, module = STAGES[stage]
    digest = hashlib.sha256()
    payload = {"stage": stage, "data": asdict(recipe.data), "model": asdict(getattr(recipe, attribute)),
               "libraries": {name: _version(name) for name in _LIBRARIES + _STAGE_LIBRARIES[stage]}}
    digest.update(json.dumps(payload, sort_keys=True, default=list).encode())
    for source in (*_SHARED_SOURCES, module):
        digest.update(source.encode())
        digest.update((_PACKAGE / source).read_bytes())
    return digest.hexdigest()[:16]


def recipe_key(recipe: SyntheticRecipe) -> str:
    """16 hex digits over all stage keys: names one complete set of models."""
    return hashlib.sha256("".join(stage_key(recipe, s) for s in STAGES).encode()).hexdigest()[:16]


def recipe_json(recipe: SyntheticRecipe) -> dict:
    """The recipe as JSON-ready nested dicts."""
    return json.loads(json.dumps(asdict(recipe), default=list))
