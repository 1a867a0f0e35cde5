"""Measure a synthetic model folder (from ``sfs models init-synthetic``) on held-out scenes.

``python -m sfs_core.synthetic.measure DIR [--scenes N] [--out report.json] [--ablation]`` prints
one JSON report: mask quality, closed-set-only and open-vocabulary-fusion semantic scores through
:class:`~sfs_core.pipeline.Pipeline` (frames independent, open vocabulary synchronous), and CLIP
top-1 accuracy, each with its wall time. ``--ablation`` adds the miniature of the paper's Table IV
(:data:`ABLATION`) and prints it as a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from sfs_core.synthetic.accuracy import clip_quality, mask_quality, semantic_quality, validation_scenes
from sfs_core.synthetic.recipes import DataRecipe

#: Table IV rows: name -> parameter overrides.
ABLATION: dict[str, dict] = {
    "closed set only (top-100 masks)": {"open_vocab.enabled": False, "masks.max_masks": 100},
    "full fusion (top-100 masks)": {"open_vocab.enabled": True, "masks.max_masks": 100},
    "full fusion (top-50 masks)": {"open_vocab.enabled": True, "masks.max_masks": 50},
    "full fusion (top-25 masks)": {"open_vocab.enabled": True, "masks.max_masks": 25},
}


def ablation(config_path: str | Path, val, novel: tuple[str, ...]) -> list[dict]:
    """One row per :data:`ABLATION` entry: the semantic scores and the median per-frame time
    (``Pipeline`` timings, open vocabulary synchronous, so it is included)."""
    from sfs_core.config import load_config
    from sfs_core.pipeline import Pipeline

    rows = []
    for name, overrides in ABLATION.items():
        pipeline = Pipeline(load_config(config_path, overrides), independent_frames=True)
        try:
            pipeline.process(val[0].image)  # warm-up
            times: list[float] = []
            scores = semantic_quality(pipeline, val, novel, times)
        finally:
            pipeline.close()
        rows.append({"row": name, "miou_all": scores["miou_all"], "miou_known": scores["miou_known"],
                     "iou_novel": scores["iou_novel"], "ms_per_frame": float(np.median(times))})
    return rows


def ablation_table(rows: list[dict]) -> str:
    """``rows`` of :func:`ablation` as a Markdown table."""
    lines = ["| configuration | mIoU all | mIoU known | IoU novel | ms/frame |", "|---|---|---|---|---|"]
    lines += [f"| {r['row']} | {r['miou_all']:.3f} | {r['miou_known']:.3f} | {r['iou_novel']:.3f} | {r['ms_per_frame']:.1f} |"
              for r in rows]
    return "\n".join(lines)


def measure(config_path: str | Path, scenes: int = 40, novel: tuple[str, ...] = DataRecipe().novel_classes,
            with_ablation: bool = False) -> dict:
    """The accuracy report of the models ``config_path`` uses (see the module docstring)."""
    from sfs_core.config import load_config
    from sfs_core.masks import MaskGenerator
    from sfs_core.open_vocab.clip_ranker import ClipRanker
    from sfs_core.pipeline import Pipeline
    from sfs_core.runtime import configure_runtime

    config = load_config(config_path)
    configure_runtime(config.offline, config.cache_dir, config.threads)
    val = validation_scenes(scenes)
    report: dict = {"config": str(config_path), "scenes": scenes, "novel_classes": list(novel), "seconds": {}}

    def timed(name, run):
        t0 = time.perf_counter()
        value = run()
        report["seconds"][name] = round(time.perf_counter() - t0, 2)
        return value

    generator = MaskGenerator(config.masks, **config.runtime())  # as the pipeline builds it (precision, calibration)
    report["masks"] = timed("masks", lambda: mask_quality(generator, val).to_json())
    for name, enabled in (("closed_set_only", False), ("open_vocab_fusion", True)):
        run_config = load_config(config_path, {"open_vocab.enabled": enabled})
        pipeline = Pipeline(run_config, independent_frames=True)
        try:
            report[name] = timed(name, lambda p=pipeline: semantic_quality(p, val, novel))
        finally:
            pipeline.close()
    ov = config.open_vocab
    ranker = ClipRanker(ov.clip_model, ov.clip_pretrained, config.device, ov.prompt)
    names = tuple(ov.vocabulary)
    report["clip"] = timed("clip", lambda: clip_quality(ranker, val, novel, ov.clip_crop_scale, ov.mask_background, names))
    if with_ablation:
        report["ablation"] = timed("ablation", lambda: ablation(config_path, val, novel))
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sfs_core.synthetic.measure", description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="folder written by `sfs models init-synthetic`")
    parser.add_argument("--scenes", type=int, default=40, help="held-out scenes (default 40)")
    parser.add_argument("--out", type=Path, help="also write the report here")
    parser.add_argument("--ablation", action="store_true", help="add the Table IV miniature (closed set only, fusion, top-N masks)")
    args = parser.parse_args(argv)
    report = measure(args.folder / "sfs.yaml", args.scenes, with_ablation=args.ablation)
    text = json.dumps(report, indent=2)
    if args.out:
        args.out.write_text(text + "\n")
    print(text)
    if args.ablation:
        print("\n" + ablation_table(report["ablation"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
