"""Typed configuration, read from one ROS-parameter YAML by both the node and the CLI.

The YAML has the form ``sfs_node: {ros__parameters: {...}}``; nested keys flatten to the dotted
parameter names a ROS node sees (``masks.conf``). Closed-set segmenters follow the nav2 plugin
convention, because ROS parameters cannot hold lists of dicts::

    closed_set:
      segmenters: [coco, ade20k]
      coco:   {model: shi-labs/oneformer_coco_swin_large, input_size: 640}
      ade20k: {model: shi-labs/oneformer_ade20k_swin_large, input_size: 640}
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

NODE_NAME = "sfs_node"
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


class ConfigError(ValueError):
    """A bad parameter value; ``param`` names the parameter as the user wrote it."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(f"parameter '{param}': {message}")
        self.param = param


@dataclass
class MaskGeneratorConfig:
    model: str = "FastSAM-s.pt"
    imgsz: int = 640
    conf: float = 0.4
    iou: float = 0.9
    max_masks: int = 100
    retina: bool = False
    backend: str = "auto"


@dataclass
class ClosedSetConfig:
    name: str = "ade20k"
    model: str = "nvidia/segformer-b0-finetuned-ade-512-512"
    input_size: int = 512
    backend: str = "auto"
    #: Scores averaged over views of the network input (:data:`TEST_AUGMENTATIONS`).
    test_augmentation: str = "none"
    #: Scores are upsampled bilinearly by this factor before the argmax (1: at the network's output).
    upsample: int = 1


#: ``none``; ``hflip``: the input and its mirror image; ``rot90``: the input turned by 0, 90, 180
#: and 270 degrees, for rotation-invariant worlds (1, 2 or 4 forwards a frame).
TEST_AUGMENTATIONS = ("none", "hflip", "rot90")
#: Largest ``closed_set.<name>.upsample``: 4 brings SegFormer's stride-4 scores to its input size.
MAX_SCORE_UPSAMPLE = 8


@dataclass
class TrackerConfig:
    """``tracking.*``: ``iou_threshold``, least mask IoU for a match; ``max_missed``, consecutive
    frames a track may go unmatched and still be matched again (it expires on the next miss);
    ``max_side``, masks are compared at most this many pixels on their long side."""

    iou_threshold: float = 0.3
    max_missed: int = 5
    max_side: int = 160

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        if not 0.0 < self.iou_threshold <= 1.0:
            raise ConfigError("tracking.iou_threshold", f"must be in (0, 1], got {self.iou_threshold}")
        if self.max_missed < 0:
            raise ConfigError("tracking.max_missed", f"must be >= 0, got {self.max_missed}")
        if self.max_side < 8:
            raise ConfigError("tracking.max_side", f"must be >= 8, got {self.max_side}")


@dataclass
class FusionConfig:
    min_confidence: float = 0.4
    fill_uncovered: bool = True
    #: Classes the fill may paint (names of the first segmenter); empty: every class.
    fill_classes: list[str] = field(default_factory=list)


@dataclass
class OpenVocabConfig:
    """The asynchronous open-vocabulary branch (``open_vocab.*`` parameters).

    ``vocabulary`` entries are built-in list names (``coco``, ``ade20k``, ``cityscapes``), ``.txt``
    files with one name per line, or literal class names; ``mode: caption`` uses BLIP captions and
    ``mode: clip`` ranks crops against the vocabulary directly.
    """

    enabled: bool = False
    mode: str = "clip"
    clip_model: str = "ViT-B-32"
    clip_pretrained: str = "openai"
    caption_model: str = "Salesforce/blip-image-captioning-base"
    vocabulary: list[str] = field(default_factory=lambda: ["coco", "ade20k"])
    prompt: str = "a photo of a {}."
    noun_phrases: str = "auto"
    top_k: int = 3
    clip_crop_scale: float = 1.2
    caption_crop_scale: float = 1.6
    mask_background: bool = False
    caption_batch_size: int = 8
    caption_max_tokens: int = 20
    min_score: float = 0.3
    fallback_min_score: float = 0.1
    #: Most names the open vocabulary may add to the label table (beyond the closed sets' classes).
    max_labels: int = 4096
    max_rate: float = 1.0
    queue_size: int = 1
    max_masks_per_snapshot: int = 16
    max_snapshot_age: float = 5.0
    relabel_after: float = 0.0
    min_area: float = 0.001
    threads: int = 1
    duty_cycle: float = 0.25
    device: str = ""

    PREFIX = "open_vocab."

    @classmethod
    def from_params(cls, params: dict[str, Any], base_dir: str | os.PathLike | None = None) -> OpenVocabConfig:
        """Pop the ``open_vocab.*`` keys from ``params``; relative paths resolve against ``base_dir``."""
        cfg = _take(cls, params, cls.PREFIX)
        if base_dir is not None:
            cfg.clip_pretrained = resolve_model_path(cfg.clip_pretrained, base_dir)
            cfg.caption_model = resolve_model_path(cfg.caption_model, base_dir)
            cfg.vocabulary = [resolve_model_path(v, base_dir) if v.endswith(".txt") else v for v in cfg.vocabulary]
        return cfg

    def to_params(self) -> dict[str, Any]:
        return {self.PREFIX + k: (list(v) if isinstance(v, list) else v) for k, v in asdict(self).items()}

    def validate(self, offline: bool, check_files: bool = True) -> None:
        """Raise :class:`ConfigError` naming the first bad ``open_vocab.*`` parameter."""
        p = self.PREFIX
        choices = {"mode": ("clip", "caption"), "noun_phrases": ("auto", "spacy", "builtin")}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ConfigError(p + name, f"expected one of {', '.join(allowed)}, got '{getattr(self, name)}'")
        for name in ("min_score", "fallback_min_score", "min_area"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(p + name, f"must be in [0, 1], got {getattr(self, name)}")
        for name in ("top_k", "caption_batch_size", "caption_max_tokens", "queue_size", "max_masks_per_snapshot"):
            if getattr(self, name) < 1:
                raise ConfigError(p + name, f"must be >= 1, got {getattr(self, name)}")
        for name in ("clip_crop_scale", "caption_crop_scale"):
            if getattr(self, name) < 1.0:
                raise ConfigError(p + name, f"must be >= 1 (a crop at least as large as the mask), got {getattr(self, name)}")
        for name in ("max_rate", "max_snapshot_age"):
            if getattr(self, name) <= 0:
                raise ConfigError(p + name, f"must be positive, got {getattr(self, name)}")
        if self.max_labels < 0:
            raise ConfigError(p + "max_labels", f"must be >= 0, got {self.max_labels}")
        if self.relabel_after < 0:
            raise ConfigError(p + "relabel_after", f"must be >= 0 (0 = never relabel), got {self.relabel_after}")
        if self.threads < 0:
            raise ConfigError(p + "threads", f"must be >= 0 (0 = torch default), got {self.threads}")
        if not 0.0 < self.duty_cycle <= 1.0:
            raise ConfigError(p + "duty_cycle", f"must be in (0, 1], got {self.duty_cycle}")
        if self.prompt.count("{}") != 1:
            raise ConfigError(p + "prompt", f"needs exactly one '{{}}' for the class name, got '{self.prompt}'")
        if self.device and not re.fullmatch(r"cpu|cuda(:\d+)?|mps", self.device):
            raise ConfigError(p + "device", f"expected empty (pipeline's device), cpu, cuda, cuda:N or mps, got '{self.device}'")
        if not self.vocabulary and self.mode == "clip":
            raise ConfigError(p + "vocabulary", "clip mode needs at least one vocabulary entry")
        if not (self.enabled and check_files):
            return
        for entry in self.vocabulary:
            if entry.endswith(".txt") and not Path(os.path.expanduser(entry)).is_file():
                raise ConfigError(p + "vocabulary", f"vocabulary file not found: {entry}")
        clip_is_tag = not looks_like_local_path(self.clip_pretrained)  # an open_clip tag such as "openai" downloads
        check_model_source(p + "clip_pretrained", self.clip_pretrained, offline, hub_ok=clip_is_tag)
        if self.mode == "caption":
            check_model_source(p + "caption_model", self.caption_model, offline, hub_ok=bool(_HUB_ID.match(self.caption_model)))


#: ``auto``: fp16 on CUDA; on the CPU with OpenVINO, FastSAM quantized to int8 (NNCF, see
#: :mod:`sfs_core.quantize`) and the closed set in bf16 where supported; on CPUs with native
#: bf16, FastSAM's mask-coefficient product in bf16. ``half``: the same without quantization.
#: ``f32``: full precision everywhere.
PRECISIONS = ("auto", "half", "f32")


@dataclass
class PipelineConfig:
    masks: MaskGeneratorConfig = field(default_factory=MaskGeneratorConfig)
    closed_set: list[ClosedSetConfig] = field(default_factory=lambda: [ClosedSetConfig()])
    fusion: FusionConfig = field(default_factory=FusionConfig)
    tracking: TrackerConfig = field(default_factory=TrackerConfig)
    open_vocab: OpenVocabConfig = field(default_factory=OpenVocabConfig)
    device: str = "cpu"
    offline: bool = False
    cache_dir: str = "~/.cache/sfs_ros"
    threads: int = 0
    precision: str = "auto"
    #: Folder of frames to calibrate FastSAM's int8 quantization on (precision auto, CPU); empty: sample photos.
    calibration_images: str = ""
    #: Frames with more pixels are downscaled (aspect kept) before processing; 0 = no limit.
    max_input_pixels: int = 8_294_400  # 3840 x 2160
    #: Folders model files must lie in (empty: anywhere); hub ids are refused when set.
    model_roots: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    # ---- flat ROS-parameter form -------------------------------------------------------------
    @classmethod
    def from_params(cls, params: Mapping[str, Any], base_dir: str | os.PathLike | None = None) -> PipelineConfig:
        """Build from flat dotted parameters; unknown keys are kept in :attr:`extra`.

        Relative model paths resolve against ``base_dir`` (the YAML file's folder).
        """
        params = dict(params)
        cfg = cls()
        cfg.masks = _take(MaskGeneratorConfig, params, "masks.")
        names = params.pop("closed_set.segmenters", [c.name for c in cfg.closed_set])
        if isinstance(names, str):
            names = [names]
        cfg.closed_set = []
        for name in names:
            seg = _take(ClosedSetConfig, params, f"closed_set.{name}.", skip=("name",))
            seg.name = name
            cfg.closed_set.append(seg)
        cfg.fusion = _take(FusionConfig, params, "fusion.")
        cfg.tracking = _take(TrackerConfig, params, "tracking.")
        cfg.open_vocab = OpenVocabConfig.from_params(params, base_dir)
        roots = string_list("model_roots", params.pop("model_roots", []), "folders")
        if not all(roots):
            raise ConfigError("model_roots", f"expected a list of folders, got {roots!r}")
        cfg.model_roots = [resolve_model_path(r, base_dir or Path.cwd()) for r in roots]
        for f in ("device", "offline", "cache_dir", "threads", "precision", "calibration_images", "max_input_pixels"):
            if f in params:
                setattr(cfg, f, _coerce(f, params.pop(f), type(getattr(cfg, f))))
        cfg.extra = params
        if base_dir is not None:
            cfg.masks.model = resolve_model_path(cfg.masks.model, base_dir)
            for seg in cfg.closed_set:
                seg.model = resolve_model_path(seg.model, base_dir)
            if cfg.calibration_images:
                cfg.calibration_images = resolve_model_path(cfg.calibration_images, base_dir)
        return cfg

    def to_params(self) -> dict[str, Any]:
        """Flat dotted parameters (the inverse of :meth:`from_params`)."""
        out: dict[str, Any] = {f"masks.{k}": v for k, v in asdict(self.masks).items()}
        out["closed_set.segmenters"] = [s.name for s in self.closed_set]
        for seg in self.closed_set:
            out.update({f"closed_set.{seg.name}.{k}": v for k, v in asdict(seg).items() if k != "name"})
        out.update({f"fusion.{k}": v for k, v in asdict(self.fusion).items()})
        out.update({f"tracking.{k}": v for k, v in asdict(self.tracking).items()})
        out.update(self.open_vocab.to_params())
        out.update(
            device=self.device, offline=self.offline, cache_dir=self.cache_dir, threads=self.threads, precision=self.precision,
            calibration_images=self.calibration_images, max_input_pixels=self.max_input_pixels, model_roots=list(self.model_roots),
        )
        out.update(self.extra)
        return out

    def runtime(self) -> dict[str, Any]:
        """Keyword arguments of every model stage (``MaskGenerator``, ``ClosedSetSegmenter``)."""
        return dict(device=self.device, cache_dir=self.cache_dir, threads=self.threads, precision=self.precision,
                    calibration_images=self.calibration_images)

    def validate(self, check_files: bool = True) -> PipelineConfig:
        """Raise :class:`ConfigError` naming the first bad parameter."""
        m = self.masks
        if m.imgsz <= 0 or m.imgsz % 32:
            raise ConfigError("masks.imgsz", f"must be a positive multiple of 32, got {m.imgsz}")
        for name, value in (("masks.conf", m.conf), ("masks.iou", m.iou), ("fusion.min_confidence", self.fusion.min_confidence)):
            if not 0.0 <= value <= 1.0:
                raise ConfigError(name, f"must be in [0, 1], got {value}")
        if m.max_masks <= 0:
            raise ConfigError("masks.max_masks", f"must be positive, got {m.max_masks}")
        if not self.closed_set:
            raise ConfigError("closed_set.segmenters", "needs at least one segmenter")
        if len({s.name for s in self.closed_set}) != len(self.closed_set):
            raise ConfigError("closed_set.segmenters", "names must be unique")
        for seg in self.closed_set:
            if seg.input_size <= 0:
                raise ConfigError(f"closed_set.{seg.name}.input_size", f"must be positive, got {seg.input_size}")
            if seg.test_augmentation not in TEST_AUGMENTATIONS:
                raise ConfigError(f"closed_set.{seg.name}.test_augmentation",
                                  f"expected one of {', '.join(TEST_AUGMENTATIONS)}, got '{seg.test_augmentation}'")
            if not 1 <= seg.upsample <= MAX_SCORE_UPSAMPLE:
                raise ConfigError(f"closed_set.{seg.name}.upsample", f"must be in [1, {MAX_SCORE_UPSAMPLE}], got {seg.upsample}")
        if not re.fullmatch(r"cpu|cuda(:\d+)?|mps", self.device):
            raise ConfigError("device", f"expected cpu, cuda, cuda:N or mps, got '{self.device}'")
        backends = ("auto", "torch", "onnxruntime", "openvino")
        if m.backend == "tensorrt":  # FastSAM only: a TensorRT .engine on an NVIDIA GPU
            if not self.device.startswith("cuda"):
                raise ConfigError("masks.backend", f"tensorrt runs on an NVIDIA GPU: set device cuda (got '{self.device}')")
        for name, backend in [("masks.backend", m.backend)] * (m.backend != "tensorrt") + [(f"closed_set.{s.name}.backend", s.backend) for s in self.closed_set]:
            if backend not in backends:
                hint = " (tensorrt: masks.backend only)" if backend == "tensorrt" else ""
                raise ConfigError(name, f"expected one of {', '.join(backends)}, got '{backend}'{hint}")
            if backend not in ("auto", "torch") and self.device != "cpu":
                raise ConfigError(name, f"the {backend} backend runs on the CPU; use backend torch with device {self.device}")
        if self.precision not in PRECISIONS:
            raise ConfigError("precision", f"expected one of {', '.join(PRECISIONS)}, got '{self.precision}'")
        if self.threads < 0:
            raise ConfigError("threads", f"must be >= 0 (0 = torch default), got {self.threads}")
        if self.max_input_pixels < 0:
            raise ConfigError("max_input_pixels", f"must be >= 0 (0 = no limit), got {self.max_input_pixels}")
        self.tracking.validate()
        self.open_vocab.validate(self.offline, check_files)
        self.check_model_roots()
        if check_files:
            check_model_source("masks.model", m.model, self.offline, hub_ok=is_ultralytics_asset(m.model))
            for seg in self.closed_set:
                check_model_source(f"closed_set.{seg.name}.model", seg.model, self.offline, hub_ok=bool(_HUB_ID.match(seg.model)))
        return self


    def model_sources(self) -> list[tuple[str, str]]:
        """``(parameter, model)`` of every model this configuration loads."""
        sources = [("masks.model", self.masks.model)]
        sources += [(f"closed_set.{s.name}.model", s.model) for s in self.closed_set]
        if self.open_vocab.enabled:
            sources.append(("open_vocab.clip_pretrained", self.open_vocab.clip_pretrained))
            if self.open_vocab.mode == "caption":
                sources.append(("open_vocab.caption_model", self.open_vocab.caption_model))
        return sources

    def check_model_roots(self) -> None:
        """With ``model_roots`` set, refuse every model outside those folders (symlinks resolved).

        Loading a checkpoint can run code (pickle), so a deployment can pin models to folders
        it controls. Hub ids, ultralytics release names and open_clip tags (``openai``) are
        downloads from outside any root: they are refused too while ``model_roots`` is set.
        """
        if not self.model_roots:
            return
        roots = [Path(os.path.expanduser(r)).resolve() for r in self.model_roots]
        for param, model in self.model_sources():
            if not looks_like_local_path(model) and not Path(os.path.expanduser(model)).exists():
                raise ConfigError(param, f"'{model}' is a download (hub id or release name), not a file inside "
                                         f"the folders of parameter 'model_roots' ({', '.join(map(str, roots))}); refused")
            path = Path(os.path.expanduser(model)).resolve()
            if not any(path == root or root in path.parents for root in roots):
                raise ConfigError(param, f"{model} is outside the folders of parameter 'model_roots' "
                                         f"({', '.join(map(str, roots))}); refused")


def string_list(name: str, value: Any, entries: str = "strings") -> list[str]:
    """A list-of-strings parameter; a single string is a one-entry list ("" an empty one)."""
    if isinstance(value, str):
        return [value] if value else []
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise ConfigError(name, f"expected a list of {entries}, got {value!r}")
    return list(value)


def _coerce(name: str, value: Any, kind: type) -> Any:
    if kind is list:
        return string_list(name, value)
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise ConfigError(name, f"expected a boolean, got {value!r}")
    if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if kind is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if kind is str and isinstance(value, str):
        return value
    raise ConfigError(name, f"expected {kind.__name__}, got {value!r}")


def _take(cls: type, params: dict[str, Any], prefix: str, skip: tuple[str, ...] = ()):
    obj = cls()
    for f in fields(cls):
        key = prefix + f.name
        if f.name not in skip and key in params:
            setattr(obj, f.name, _coerce(key, params.pop(key), type(getattr(obj, f.name))))
    return obj


def is_ultralytics_asset(model: str) -> bool:
    """A bare release name such as ``FastSAM-s.pt`` that ultralytics downloads on first use."""
    return os.sep not in model and not model.startswith(("~", ".")) and model.endswith(".pt")


def looks_like_local_path(model: str) -> bool:
    return model.startswith(("/", "./", "../", "~")) or os.sep in model and not _HUB_ID.match(model)


def resolve_model_path(model: str, base_dir: str | os.PathLike) -> str:
    """Make ``./x`` and ``../x`` relative to ``base_dir``; leave hub ids and absolute paths alone."""
    if model.startswith(("./", "../")):
        return str((Path(base_dir) / model).resolve())
    return os.path.expanduser(model)


def check_model_source(param: str, model: str, offline: bool, hub_ok: bool) -> None:
    path = Path(os.path.expanduser(model))
    if path.exists():
        return
    if looks_like_local_path(model) or not hub_ok:
        raise ConfigError(param, f"model file or folder not found: {model}")
    if offline:
        raise ConfigError(param, f"'{model}' is not a local path and offline is true, so it cannot be downloaded")


# ---- YAML ------------------------------------------------------------------------------------
def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


def load_params(path: str | os.PathLike, node_name: str = NODE_NAME) -> dict[str, Any]:
    """Flat parameters for ``node_name`` from a ROS 2 params file (``/**`` entries apply too)."""
    text = Path(path).read_text()
    tree = yaml.safe_load(text) or {}
    if not isinstance(tree, dict):
        raise ConfigError(str(path), "not a ROS parameter file (expected a mapping at the top)")
    params: dict[str, Any] = {}
    # "/**" first, then sections naming the node (plain, absolute, or in any namespace)
    keys = ["/**"] + [k for k in tree if isinstance(k, str) and (k == node_name or k.endswith(f"/{node_name}"))]
    for key in keys:
        section = tree.get(key)
        if isinstance(section, dict) and "ros__parameters" in section:
            params.update(flatten(section["ros__parameters"] or {}))
    if not params and tree:
        raise ConfigError(str(path), f"has no '{node_name}: ros__parameters:' section")
    return params


def load_config(path: str | os.PathLike | None = None, overrides: Mapping[str, Any] | None = None) -> PipelineConfig:
    """Config from a params file (or defaults), with optional flat overrides."""
    params = load_params(path) if path else {}
    params.update(overrides or {})
    base_dir = Path(path).resolve().parent if path else Path.cwd()
    return PipelineConfig.from_params(params, base_dir=base_dir)
