"""``sfs replay`` and ``sfs evaluate``: offline evaluation subcommands (registered on import)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from sfs_core.cli import add_config_arguments, command, config_from_args


def _add_mapping_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("label mapping (our labels -> dataset classes)")
    group.add_argument("--clip-mapping", choices=("auto", "on", "off"), default="auto",
                       help="CLIP text similarity as the last mapping rule, with the configured open_vocab.clip_model/"
                            "clip_pretrained; auto: only when open_vocab.enabled (default auto)")
    group.add_argument("--clip-threshold", type=float, default=0.85, help="minimum cosine similarity to map by CLIP (default 0.85)")


def _mapper(space, args: argparse.Namespace, config):
    """A :class:`LabelMapper`; with CLIP similarity when ``--clip-mapping`` asks for it."""
    from sfs_core.evaluation.label_mapping import LabelMapper, encoder_text_similarity

    open_vocab = getattr(config, "open_vocab", None)
    use_clip = args.clip_mapping == "on" or (args.clip_mapping == "auto" and open_vocab is not None and open_vocab.enabled)
    similarity = None
    if use_clip:
        if open_vocab is None:
            raise ValueError("--clip-mapping on needs open_vocab.clip_model in the config")
        from sfs_core.open_vocab.clip_ranker import ClipRanker
        from sfs_core.runtime import configure_runtime

        configure_runtime(config.offline, config.cache_dir, config.threads)
        similarity = encoder_text_similarity(ClipRanker(open_vocab.clip_model, open_vocab.clip_pretrained, config.device))
    return LabelMapper(space, similarity=similarity, threshold=args.clip_threshold)


def _log_to_stderr() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    logging.getLogger("sfs_core.evaluation.label_mapping").setLevel(logging.INFO)


# ---- sfs replay -------------------------------------------------------------------------------
def _replay_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bag", type=Path, help="input rosbag2 (folder with metadata.yaml, or a .mcap/.db3 file)")
    parser.add_argument("--out", type=Path, required=True, help="output bag folder (must not exist unless --force)")
    parser.add_argument("--image-topic", help="input image topic (needed when the bag has several)")
    parser.add_argument("--limit", type=int, help="process at most N frames (after --every)")
    parser.add_argument("--every", type=int, default=1, metavar="N", help="take every N-th frame")
    parser.add_argument("--realtime", action="store_true",
                        help="simulate the live node: frames arrive at the bag's rate, latest-frame-only drops what a robot would drop")
    parser.add_argument("--storage", choices=("mcap", "sqlite3"), help="output storage (default: the input's)")
    parser.add_argument("--gt-topic", help="ground-truth label topic (mono8/mono16 class ids, same stamps as the images)")
    parser.add_argument("--label-map", help="class names of the ground-truth ids: cityscapes, ade20k, or a YAML file (see docs)")
    parser.add_argument("--report", type=Path, help="report JSON path (default: <OUT>.report.json, with <OUT>.report.txt)")
    parser.add_argument("--no-overlay", action="store_true", help="do not write /sfs/overlay")
    parser.add_argument("--no-color", action="store_true", help="do not write /sfs/semantic_color")
    parser.add_argument("--no-warmup", action="store_true", help="time the first frame too (default: one untimed warm-up frame)")
    parser.add_argument("--force", action="store_true", help="replace an existing output bag")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_mapping_arguments(parser)
    add_config_arguments(parser)


@command("replay", _replay_arguments)
def replay(args: argparse.Namespace) -> int:
    """Run the pipeline over a rosbag2 and write /sfs/* topics to a new bag, with a report."""
    from sfs_core.bags import BagError
    from sfs_core.evaluation.label_mapping import load_label_space
    from sfs_core.evaluation.report import write_json
    from sfs_core.pipeline import Pipeline
    from sfs_core.replay import ReplayOptions, format_summary
    from sfs_core.replay import replay as run_replay

    _log_to_stderr()
    if bool(args.gt_topic) != bool(args.label_map):
        print("error: --gt-topic and --label-map go together", file=sys.stderr)
        return 2
    config = config_from_args(args)
    try:
        mapper = _mapper(load_label_space(args.label_map), args, config) if args.label_map else None
        options = ReplayOptions(
            image_topic=args.image_topic, gt_topic=args.gt_topic, mapper=mapper, limit=args.limit, every=args.every,
            realtime=args.realtime, storage=args.storage, color=not args.no_color, overlay=not args.no_overlay,
            overwrite=args.force, warmup=not args.no_warmup, progress=not args.quiet,
        )
        options.check()
        # Offline runs label synchronously (reproducible); --realtime keeps the node's worker thread.
        pipeline = Pipeline(config, synchronous_open_vocab=not args.realtime)
        try:
            report = run_replay(pipeline, args.bag, args.out, options)
        finally:
            pipeline.close()
    except (BagError, FileNotFoundError, FileExistsError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    report["config"] = config.to_params()
    report["model_load_s"] = round(pipeline.load_seconds, 3)
    report_path = args.report or args.out.with_name(args.out.name + ".report.json")
    summary = format_summary(report)
    write_json(report_path, report)
    report_path.with_suffix(".txt").write_text(summary + "\n")
    print(summary)
    print(f"report: {report_path}")
    return 0


# ---- sfs evaluate -----------------------------------------------------------------------------
def _evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", choices=("cityscapes", "ade20k"), required=True)
    parser.add_argument("--root", type=Path, required=True, help="dataset folder (or its parent)")
    parser.add_argument("--out", type=Path, required=True, help="output folder: predictions/, report.json, per_class_iou.png")
    parser.add_argument("--limit", type=int, help="first N images (sorted by name)")
    parser.add_argument("--label-map", help="YAML with 'base: <dataset>' and 'aliases: {our label: class or null}' to extend the mapping")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_mapping_arguments(parser)
    add_config_arguments(parser)


@command("evaluate", _evaluate_arguments)
def evaluate(args: argparse.Namespace) -> int:
    """mIoU on Cityscapes val or ADE20K val (mmseg protocol); resumable; JSON report and IoU plot."""
    from sfs_core.evaluation.datasets import open_dataset
    from sfs_core.evaluation.label_mapping import builtin_label_space, load_label_space
    from sfs_core.evaluation.runner import evaluate as run_evaluate
    from sfs_core.evaluation.runner import format_summary
    from sfs_core.pipeline import Pipeline

    _log_to_stderr()
    if args.limit is not None and args.limit < 1:
        print(f"error: --limit must be >= 1, got {args.limit}", file=sys.stderr)
        return 2
    config = config_from_args(args)
    try:
        dataset = open_dataset(args.dataset, args.root)
        space = load_label_space(args.label_map) if args.label_map else builtin_label_space(args.dataset)
        if tuple(space.classes) != tuple(dataset.classes):
            raise ValueError(f"--label-map classes differ from {args.dataset}'s; use 'base: {args.dataset}' and add aliases")
        mapper = _mapper(space, args, config)
        report = run_evaluate(dataset, args.out, lambda: Pipeline(config, independent_frames=True), mapper, args.limit, progress=not args.quiet,
                              extra={"config": config.to_params()})
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_summary(report))
    print(f"report: {args.out / 'report.json'}, plot: {args.out / 'per_class_iou.png'}")
    return 0
