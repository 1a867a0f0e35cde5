"""The node's ROS parameters: declared from :class:`sfs_core.config.PipelineConfig`, plus the
node-only settings, each with a description, and read back into typed configuration.

Pipeline parameters are exactly ``PipelineConfig().to_params()``, so the node and the ``sfs`` CLI
read the same YAML the same way. Closed-set segmenters follow the nav2 plugin convention:
``closed_set.segmenters: [coco, ade20k]`` first, then ``closed_set.<name>.model`` and so on are
declared for each listed name.

Only the thresholds in :data:`RUNTIME_THRESHOLDS` can change while the node runs; every other
parameter is declared read-only (changing it needs a restart).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.exceptions import InvalidParameterException, InvalidParameterTypeException
from rclpy.node import Node
from rclpy.parameter import Parameter

from sfs_core.config import NODE_NAME, ConfigError, PipelineConfig
from sfs_ros.qos import RELIABILITY

#: Parameter name -> keyword of :meth:`sfs_core.pipeline.Pipeline.set_thresholds`.
RUNTIME_THRESHOLDS = {"masks.conf": "conf", "masks.iou": "iou", "fusion.min_confidence": "min_confidence"}

SEGMENTERS = "closed_set.segmenters"

#: Node-only parameters (the CLI ignores them) and their defaults.
NODE_DEFAULTS: dict[str, Any] = {
    "input.compressed": False,
    "qos.reliability": "best_effort",
    "qos.depth": 5,
    "output.overlay": True,
    "output.color": True,
    "diagnostics.period": 1.0,
}

_DESCRIPTIONS = {
    "device": "torch device: cpu, cuda, cuda:N or mps",
    "offline": "true: never touch the network (local model files only)",
    "cache_dir": "caches: ultralytics settings, exported models, text embeddings",
    "threads": "torch intra-op threads; 0 = torch default",
    "masks.model": "FastSAM checkpoint: an ultralytics release name (FastSAM-s.pt) or a path to a .pt",
    "masks.imgsz": "long side of the FastSAM input in pixels, a multiple of 32",
    "masks.conf": "minimum mask score in [0, 1]; changeable at run time",
    "masks.iou": "NMS IoU threshold in [0, 1]; changeable at run time",
    "masks.max_masks": "keep at most this many masks per frame (best scores first)",
    "masks.retina": "true: masks at full resolution (slower); false: prototype resolution",
    SEGMENTERS: "names of the closed-set segmenters; each is configured under closed_set.<name>.*",
    "fusion.min_confidence": "a mask whose majority closed-set label covers less than this share is 'unidentified'; "
                             "in [0, 1], changeable at run time",
    "fusion.fill_uncovered": "pixels no mask covers take the first segmenter's label (false: unlabeled)",
    "fusion.fill_classes": "the classes that fill may paint (e.g. stuff: road, sky); uncovered pixels of other "
                           "classes stay unlabeled. Empty = every class",
    "precision": "auto: fp16 on CUDA; on the CPU (OpenVINO) FastSAM in int8, calibrated on calibration_images, "
                 "and the closed set in bf16 where supported; half: the same without int8; f32: full precision everywhere",
    "calibration_images": "folder of frames like the camera's, to calibrate FastSAM's int8 quantization on "
                          "(empty: the ultralytics sample photos)",
    "masks.backend": "auto (OpenVINO on CPU, torch on GPU), torch, onnxruntime, openvino, or tensorrt (a FastSAM .engine on CUDA)",
    "tracking.iou_threshold": "least mask IoU for a mask to continue a track",
    "tracking.max_missed": "frames a track may go unseen before it expires",
    "tracking.max_side": "masks are compared at most this many pixels on their long side",
    "open_vocab.enabled": "run the asynchronous open-vocabulary branch (labels land on tracks a few frames later)",
    "open_vocab.mode": "clip: rank mask crops against the vocabulary; caption: BLIP captions, noun phrases, CLIP",
    "open_vocab.vocabulary": "built-in lists (coco, coco_things, ade20k, cityscapes), .txt files, or class names",
    "open_vocab.max_labels": "most names the open vocabulary may add to the label table; later new names are "
                             "not chosen (a confident closed-set label, else unidentified; candidates stay in ~/masks)",
    "max_input_pixels": "frames with more pixels are downscaled (aspect kept) before processing, and their "
                        "outputs are published at the downscaled size; 0 = no limit",
    "model_roots": "folders every model file must lie in (symlinks resolved); empty = anywhere. "
                   "When set, hub ids and release names (downloads) are refused",
    "input.compressed": "also subscribe to image/compressed (sensor_msgs/CompressedImage)",
    "qos.reliability": "input reliability: best_effort (sensor data) or reliable",
    "qos.depth": "input history depth; every frame that reaches the node but is not processed counts as dropped",
    "output.overlay": "publish ~/overlay (input blended with label colours and names)",
    "output.color": "publish ~/semantic_color (label colours)",
    "diagnostics.period": "seconds between /diagnostics messages",
}
_SEGMENTER_DESCRIPTIONS = {
    "model": "closed-set segmenter: a transformers checkpoint folder or hub id (SegFormer, Mask2Former, OneFormer)",
    "input_size": "segmenter input size in pixels (SegFormer: square side; Mask2Former/OneFormer: short side)",
    "backend": "auto (OpenVINO on CPU, torch on GPU), torch, onnxruntime or openvino",
    "test_augmentation": "none, hflip or rot90: scores averaged over 1, 2 or 4 views of the input",
    "upsample": "1 to 8: class scores upsampled bilinearly by this factor before the argmax (1: the network's output resolution, fastest)",
}
_TYPE_NAMES = {bool: "a boolean", int: "an integer", float: "a floating-point number (e.g. 1.0)", str: "a string"}


def describe(name: str) -> str:
    """The description of parameter ``name`` (segmenter parameters by their last part)."""
    if name in _DESCRIPTIONS:
        return _DESCRIPTIONS[name]
    prefix, _, field = name.rpartition(".")
    if prefix.startswith("closed_set.") and field in _SEGMENTER_DESCRIPTIONS:
        return f"{_SEGMENTER_DESCRIPTIONS[field]} (segmenter '{prefix[len('closed_set.'):]}')"
    return "pipeline parameter; see config/sfs.yaml"


@dataclass(frozen=True)
class NodeSettings:
    """The node-only parameters, validated."""

    compressed: bool
    reliability: str
    depth: int
    publish_overlay: bool
    publish_color: bool
    diagnostics_period: float

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> NodeSettings:
        """Read the :data:`NODE_DEFAULTS` keys; raise :class:`ConfigError` naming a bad one."""
        settings = cls(
            compressed=params["input.compressed"], reliability=params["qos.reliability"], depth=params["qos.depth"],
            publish_overlay=params["output.overlay"], publish_color=params["output.color"],
            diagnostics_period=params["diagnostics.period"],
        )
        if settings.reliability not in RELIABILITY:
            choices = ", ".join(RELIABILITY)
            raise ConfigError("qos.reliability", f"expected one of {choices}, got '{settings.reliability}'")
        if settings.depth < 1:
            raise ConfigError("qos.depth", f"must be >= 1, got {settings.depth}")
        if settings.diagnostics_period <= 0:
            raise ConfigError("diagnostics.period", f"must be positive, got {settings.diagnostics_period}")
        return settings


def params_files(argv: Sequence[str]) -> list[Path]:
    """The ``--params-file`` arguments inside ``--ros-args`` of ``argv``, in order."""
    files = []
    in_ros_args = False
    for index, arg in enumerate(argv):
        if arg == "--ros-args":
            in_ros_args = True
        elif arg == "--":
            in_ros_args = False
        elif in_ros_args and arg == "--params-file" and index + 1 < len(argv):
            files.append(Path(argv[index + 1]))
    return files


def params_file_dir(argv: Sequence[str]) -> Path | None:
    """Folder of the last ``--params-file`` in ``argv`` (None without one).

    Relative model paths (``./models/x``) resolve against it, as ``sfs --config FILE`` does.
    """
    files = params_files(argv)
    return files[-1].resolve().parent if files else None


def unmatched_section_warning(argv: Sequence[str], fully_qualified_name: str) -> str | None:
    """A warning when a params file configures plain ``sfs_node:`` but the node runs in a
    namespace: ROS applies that section to ``/sfs_node`` only, so the node would silently run
    on defaults. None when no file looks like that (or one also has a section that matches)."""
    if fully_qualified_name == f"/{NODE_NAME}":
        return None
    matching = {"/**", f"/**/{NODE_NAME}", fully_qualified_name, fully_qualified_name.lstrip("/")}
    for path in params_files(argv):
        try:
            sections = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError):
            continue  # rcl has parsed it already; nothing to add
        if isinstance(sections, dict) and {NODE_NAME, f"/{NODE_NAME}"} & set(sections) and not matching & set(sections):
            return (f"params file '{path}' configures '{NODE_NAME}:', which applies to /{NODE_NAME} only, not to "
                    f"{fully_qualified_name}, so its parameters are NOT used; key the section '/**:' (any node) or "
                    f"'{fully_qualified_name}:', or start the node with launch/sfs.launch.py")
    return None


def declare_parameters(node: Node, base_dir: str | os.PathLike) -> tuple[NodeSettings, PipelineConfig]:
    """Declare every parameter on ``node`` and read them back, validated.

    Raises :class:`ConfigError` naming the first bad parameter (wrong type, bad value, missing
    model file). Parameters given in a params file or on the command line that the node does
    not know are logged as warnings (a typo must not pass silently) and otherwise ignored.
    """
    names = _declare(node, SEGMENTERS, PipelineConfig().to_params()[SEGMENTERS])
    if not names or not all(isinstance(n, str) and n for n in names):
        raise ConfigError(SEGMENTERS, f"expected a non-empty list of names, got {names!r}")
    defaults = {**PipelineConfig.from_params({SEGMENTERS: list(names)}).to_params(), **NODE_DEFAULTS}
    del defaults[SEGMENTERS]
    values: dict[str, Any] = {SEGMENTERS: list(names)}
    for name, default in defaults.items():
        value = _declare(node, name, default)
        values[name] = list(value) if isinstance(value, (list, tuple)) else value
    for name in sorted(n for n in _overrides(node) if not node.has_parameter(n)):
        node.get_logger().warning(f"ignoring unknown parameter '{name}'")
    settings = NodeSettings.from_params({k: values.pop(k) for k in NODE_DEFAULTS})
    config = PipelineConfig.from_params(values, base_dir=base_dir).validate()
    return settings, config


def _declare(node: Node, name: str, default: Any) -> Any:
    """Declare one parameter (typed by ``default``) and return its value."""
    descriptor = ParameterDescriptor(description=describe(name), read_only=name not in RUNTIME_THRESHOLDS)
    try:
        if isinstance(default, list) and not default:  # rclpy cannot infer a type from []
            value = node.declare_parameter(name, Parameter.Type.STRING_ARRAY, descriptor).value
            return [] if value is None else value
        return node.declare_parameter(name, default, descriptor).value
    except InvalidParameterTypeException:
        given = _overrides(node)[name]
        expected = "a list of strings" if isinstance(default, list) else _TYPE_NAMES[type(default)]
        raise ConfigError(name, f"expected {expected}, got {given!r}") from None
    except InvalidParameterException as exc:
        raise ConfigError(name, f"not a valid parameter name ({exc})") from None


def _overrides(node: Node) -> dict[str, Any]:
    """Parameter values given at start-up (params files, ``-p``): rclpy keeps them per node."""
    return {name: parameter.value for name, parameter in node._parameter_overrides.items()}
