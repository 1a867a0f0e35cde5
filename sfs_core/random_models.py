"""Random-weight checkpoints of the real architectures, built offline.

The outputs of these models are MEANINGLESS. They exist so that smoke tests, benchmarks and CI
exercise the real loading and inference code without downloading weights.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from sfs_core.vocabularies import ADE20K_150

WARNING = (
    "WARNING: these checkpoints have RANDOM weights. Every mask and label they produce is "
    "meaningless; they only exercise the real code paths. Use real weights for real results."
)


def build_fastsam(path: Path, scale: str = "s", seed: int = 0) -> Path:
    """FastSAM-``scale`` (YOLOv8``scale``-seg, one class) saved as an ultralytics ``.pt``."""
    import torch
    from ultralytics.nn.tasks import SegmentationModel

    torch.manual_seed(seed)
    model = SegmentationModel(f"yolov8{scale}-seg.yaml", nc=1, verbose=False)
    model.names = {0: "object"}
    model.args = {"task": "segment", "imgsz": 1024}
    torch.save({"model": model.half(), "train_args": {"task": "segment", "imgsz": 1024}}, path)
    return path


def build_segformer(folder: Path, labels=ADE20K_150, seed: int = 0) -> Path:
    """A SegFormer-B0-sized model with ``labels`` as its ``id2label``, saved with ``save_pretrained``."""
    import torch
    from transformers import SegformerConfig, SegformerForSemanticSegmentation, SegformerImageProcessor

    torch.manual_seed(seed)
    config = SegformerConfig(  # B0: the defaults of nvidia/mit-b0
        num_labels=len(labels),
        id2label={i: n for i, n in enumerate(labels)},
        label2id={n: i for i, n in enumerate(labels)},
        hidden_sizes=[32, 64, 160, 256],
        decoder_hidden_size=256,
        depths=[2, 2, 2, 2],
    )
    SegformerForSemanticSegmentation(config).eval().save_pretrained(folder)
    SegformerImageProcessor(size={"height": 512, "width": 512}).save_pretrained(folder)
    return folder


def init_random(folder: str | Path, seed: int = 0) -> Path:
    """Write FastSAM-s and SegFormer-B0 (ADE20K names) and ``sfs.yaml`` pointing at them."""
    folder = Path(folder).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    fastsam = folder / "FastSAM-s.pt"
    if not fastsam.exists():
        build_fastsam(fastsam, "s", seed)
    segformer = folder / "segformer-b0-ade20k"
    if not (segformer / "config.json").exists():
        build_segformer(segformer, seed=seed)
    params = {
        "sfs_node": {
            "ros__parameters": {
                "offline": True,
                "masks": {"model": str(fastsam), "imgsz": 640, "conf": 0.01, "iou": 0.9, "max_masks": 100},
                "closed_set": {"segmenters": ["ade20k"], "ade20k": {"model": str(segformer), "input_size": 512}},
                # Random weights spread votes evenly; a low threshold keeps closed-set labels visible.
                "fusion": {"min_confidence": 0.05, "fill_uncovered": True},
            }
        }
    }
    config = folder / "sfs.yaml"
    config.write_text("# " + WARNING + "\n" + yaml.safe_dump(params, sort_keys=False))
    (folder / "README.txt").write_text(WARNING + "\n")
    return config
