"""``sfs models init-synthetic DIR``: train or reuse the synthetic-world models (see
:mod:`sfs_core.synthetic`). ``sfs_core.cli`` adds the parser with :func:`add_init_synthetic_parser`
and dispatches to :func:`init_synthetic_command`."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path


def add_init_synthetic_parser(subparsers) -> argparse.ArgumentParser:
    """Add ``init-synthetic`` to the ``sfs models`` sub-commands."""
    parser = subparsers.add_parser(
        "init-synthetic",
        help="train (or reuse from the cache) tiny models of a synthetic shapes world; write them, "
             "a validation set, a bag and sfs.yaml to FOLDER",
    )
    parser.add_argument("folder", type=Path)
    parser.add_argument("--cache", type=Path,
                        help="model cache root (default: $SFS_SYNTHETIC_CACHE or ~/.cache/sfs_ros/synthetic)")
    parser.add_argument("--val-scenes", type=int, default=40, help="held-out scenes written to FOLDER/val (default 40)")
    parser.add_argument("--bag-frames", type=int, default=60, help="frames in FOLDER/synthetic_bag (default 60)")
    parser.add_argument("--verbose", action="store_true", help="show the trainers' progress output")
    return parser


def init_synthetic_command(args: argparse.Namespace) -> int:
    """Run ``sfs models init-synthetic``; prints one line per stage with its wall time."""
    from sfs_core.runtime import configure_runtime

    configure_runtime(offline=True, cache_dir="~/.cache/sfs_ros")  # before ultralytics/transformers are imported
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s", stream=sys.stderr)
    from sfs_core.synthetic.init import InitOptions, init_synthetic

    if args.val_scenes < 1 or args.bag_frames < 1:
        print("error: --val-scenes and --bag-frames must be >= 1", file=sys.stderr)
        return 2
    options = InitOptions(val_scenes=args.val_scenes, bag_frames=args.bag_frames)
    result = init_synthetic(args.folder, cache=args.cache, options=options, log=print, quiet=not args.verbose)
    timings = ", ".join(f"{k} {v:.1f} s" for k, v in result.seconds.items())
    print(f"timings: {timings}")
    print(f"config: {result.config}")
    return 0
