"""The ``sfs`` command line (no ROS needed). Subcommands register in :data:`COMMANDS`."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from sfs_core.cli_synthetic import add_init_synthetic_parser, init_synthetic_command
from sfs_core.config import ConfigError, load_config

COMMANDS: dict[str, tuple[Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]] = {}


def command(name: str, add_arguments: Callable[[argparse.ArgumentParser], None]):
    """Register ``run(args) -> exit code`` as ``sfs NAME``."""

    def register(run: Callable[[argparse.Namespace], int]):
        COMMANDS[name] = (add_arguments, run)
        return run

    return register


def parse_override(text: str) -> tuple[str, Any]:
    """``key=value`` with a YAML-typed value: ``masks.conf=0.3``, ``closed_set.segmenters=[a,b]``."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got '{text}'")
    return key.strip(), yaml.safe_load(value)


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="ROS-parameter YAML (sfs_node: ros__parameters: ...); default: built-in defaults")
    parser.add_argument("--set", dest="overrides", metavar="KEY=VALUE", type=parse_override, action="append", default=[],
                        help="override one parameter, e.g. --set masks.conf=0.3 (repeatable)")
    parser.add_argument("--device", help="cpu, cuda, cuda:N (overrides the config)")


def config_from_args(args: argparse.Namespace):
    overrides = dict(args.overrides)
    if args.device:
        overrides["device"] = args.device
    return load_config(args.config, overrides)


def write_json(path: Path, payload: dict) -> None:
    path.write_text(json.dumps(payload, indent=2) + "\n")


# ---- sfs segment ------------------------------------------------------------------------------
def _segment_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("images", nargs="+", type=Path, help="image files (any format OpenCV reads)")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    add_config_arguments(parser)


@command("segment", _segment_arguments)
def segment(args: argparse.Namespace) -> int:
    """Per image: <stem>_label.png (uint16 class ids), _instances.png (uint16, index + 1 into the JSON's masks),
    _color.png, _overlay.png and <stem>.json; plus labels.json."""
    import cv2
    from tqdm import tqdm

    from sfs_core.pipeline import Pipeline
    from sfs_core.visualize import colorize, overlay

    config = config_from_args(args)
    pipeline = Pipeline(config, independent_frames=True)
    args.out.mkdir(parents=True, exist_ok=True)
    failures = 0
    for path in tqdm(args.images, desc="segment", unit="img", disable=len(args.images) < 2):
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            print(f"error: cannot read image '{path}', skipped", file=sys.stderr)
            failures += 1
            continue
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        result = pipeline.process(rgb)
        stem = path.stem
        cv2.imwrite(str(args.out / f"{stem}_label.png"), result.label_map)
        cv2.imwrite(str(args.out / f"{stem}_instances.png"), result.instance_map)
        cv2.imwrite(str(args.out / f"{stem}_color.png"), cv2.cvtColor(colorize(result.label_map, result.label_table.palette()), cv2.COLOR_RGB2BGR))
        cv2.imwrite(str(args.out / f"{stem}_overlay.png"), cv2.cvtColor(overlay(rgb, result), cv2.COLOR_RGB2BGR))
        write_json(args.out / f"{stem}.json", {"image": str(path), **result.to_json()})
        total = result.timings["total"]
        print(f"{path.name}: {len(result.masks)} masks, {total:.0f} ms -> {args.out / stem}_*.png")
    write_json(args.out / "labels.json", pipeline.label_table.to_json())
    return 1 if failures else 0


# ---- sfs models -------------------------------------------------------------------------------
def _models_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="models_command", required=True)
    init = sub.add_parser("init-random", help="write random-weight checkpoints of the real architectures (outputs are MEANINGLESS)")
    init.add_argument("folder", type=Path)
    init.add_argument("--seed", type=int, default=0)
    export = sub.add_parser("export", help="export the configured FastSAM and SegFormer models for a CPU backend (cached), "
                                           "or static-shape ONNX files plus trtexec commands for TensorRT")
    add_config_arguments(export)
    export.add_argument("--backend", choices=("openvino", "onnxruntime", "tensorrt"), default="openvino")
    export.add_argument("--out", type=Path, help="tensorrt only: folder for the ONNX files (and later the engines)")
    export.add_argument("--image-size", default="640x480", help="tensorrt only: camera WxH the FastSAM engine is built for")
    export.add_argument("--no-fp16", dest="fp16", action="store_false", help="tensorrt only: build fp32 engines")
    add_init_synthetic_parser(sub)


@command("models", _models_arguments)
def models(args: argparse.Namespace) -> int:
    """Model files: random-weight checkpoints for tests (init-random), exports for fast CPU backends (export)."""
    if args.models_command == "export":
        return export_models(args)
    if args.models_command == "init-synthetic":
        return init_synthetic_command(args)
    from sfs_core.random_models import WARNING, init_random
    from sfs_core.runtime import configure_runtime

    configure_runtime(offline=True, cache_dir=args.folder / ".cache")
    print(WARNING, file=sys.stderr)
    config = init_random(args.folder, seed=args.seed)
    print(f"wrote random-weight models and {config}")
    print(WARNING, file=sys.stderr)
    return 0


from sfs_core import cli_eval  # noqa: E402,F401  (registers sfs replay and sfs evaluate)


def export_models(args: argparse.Namespace) -> int:
    """Load every exportable model with the chosen backend: the exports land in the cache and
    later starts reuse them (so a robot does not export on its first start)."""
    from sfs_core.pipeline import Pipeline

    config = config_from_args(args)
    if args.backend == "tensorrt":
        return export_tensorrt(config, args)
    config.device = "cpu"
    config.masks.backend = args.backend
    for seg in config.closed_set:
        seg.backend = args.backend
    pipeline = Pipeline(config)
    for runner in [pipeline.mask_generator.runner, *(s.runner for s in pipeline.segmenters)]:
        print(f"{args.backend}: {runner.path}")
    return 0


def export_tensorrt(config, args: argparse.Namespace) -> int:
    """Static-shape ONNX files and the trtexec commands that build engines (on the GPU machine)."""
    from sfs_core.runtime import configure_runtime
    from sfs_core.tensorrt import describe, export_for_tensorrt

    if args.out is None:
        print("error: --backend tensorrt needs --out FOLDER for the ONNX files", file=sys.stderr)
        return 2
    try:
        width, height = (int(v) for v in args.image_size.lower().split("x"))
    except ValueError:
        print(f"error: --image-size: expected WxH, got '{args.image_size}'", file=sys.stderr)
        return 2
    configure_runtime(config.offline, config.cache_dir)
    print(describe(*export_for_tensorrt(config, args.out, (height, width), args.fp16)))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sfs", description="Semantic-Fast-SAM: semantic segmentation of everything, without ROS.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (add_arguments, run) in COMMANDS.items():
        p = sub.add_parser(name, help=(run.__doc__ or "").strip().splitlines()[0] if run.__doc__ else None)
        add_arguments(p)
        p.set_defaults(run=run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
