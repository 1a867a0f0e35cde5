"""Random-weight checkpoints of the real architectures, built offline.

The outputs of these models are MEANINGLESS. They exist so that smoke tests, benchmarks and CI
exercise the real loading and inference code without downloading weights.
"""

from __future__ import annotations

import os
import shutil
import threading
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


def _atomic_path(final: Path) -> Path:
    """A temporary sibling of ``final``: build there, then ``os.replace`` (concurrent builders
    never see a half-written model)."""
    return final.with_name(f".{final.name}.tmp-{os.getpid()}-{threading.get_ident()}")


def build_clip(path: Path, model_name: str = "ViT-B-32", seed: int = 0) -> Path:
    """An open_clip ``model_name`` with random weights, saved as a float16 ``.safetensors`` state
    dict (~300 MB for ViT-B-32). Load it with ``open_clip.create_model(model_name, pretrained=path)``
    or ``open_vocab.clip_pretrained: <path>``."""
    import open_clip
    import torch
    from safetensors.torch import save_file

    torch.manual_seed(seed)
    model = open_clip.create_model(model_name, pretrained=None)
    state = {k: v.detach().half().contiguous() for k, v in model.state_dict().items()}
    tmp = _atomic_path(path)
    save_file(state, str(tmp), metadata={"warning": WARNING, "model": model_name})
    os.replace(tmp, path)
    return path


BLIP_SIZES = {
    # Salesforce/blip-image-captioning-{base,large}: ViT-B/16 or ViT-L/16 at 384 px, BERT-base decoder.
    "base": {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072},
    "large": {"hidden_size": 1024, "num_hidden_layers": 24, "num_attention_heads": 16, "intermediate_size": 4096},
}


def blip_vocab(size: int = 30524) -> dict[str, int]:
    """A BERT-layout WordPiece vocabulary of ``size`` entries: BERT's special tokens at their ids,
    real words (class names and common caption words) next, ``tok<i>`` fillers, and BLIP's
    ``[DEC]`` (bos, 30522) and ``[ENC]`` at the end. Random-weight captions decode to these."""
    from sfs_core.vocabularies import ADE20K_150, COCO_PANOPTIC_133, normalize_label

    tokens = ["[PAD]"] + [f"[unused{i}]" for i in range(1, 100)] + ["[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    caption_words = "a an the of on in with and is are there man woman people street sitting standing riding near next to".split()
    words = dict.fromkeys(caption_words + [w for n in COCO_PANOPTIC_133 + ADE20K_150 for w in normalize_label(n).split()])
    tokens += [w for w in words if w not in tokens]
    tokens += [f"tok{i}" for i in range(len(tokens), size - 2)]
    tokens += ["[DEC]", "[ENC]"]
    return {t: i for i, t in enumerate(tokens)}


def build_blip(folder: Path, size: str = "base", seed: int = 0) -> Path:
    """A BLIP captioner (``BlipForConditionalGeneration``) of the ``base`` or ``large`` size with
    random weights, plus its processor (``BlipImageProcessor`` at 384 px and a BERT tokenizer),
    saved with ``save_pretrained`` in float16 (~450 MB for base)."""
    import torch
    from transformers import BertTokenizer, BlipConfig, BlipForConditionalGeneration, BlipImageProcessor, BlipProcessor

    torch.manual_seed(seed)
    vision = BLIP_SIZES[size]
    config = BlipConfig(
        vision_config={**vision, "image_size": 384, "patch_size": 16},
        text_config={"vocab_size": 30524, "hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
                     "intermediate_size": 3072, "encoder_hidden_size": vision["hidden_size"]},
    )
    model = BlipForConditionalGeneration(config).eval()
    tokenizer = BertTokenizer(vocab=blip_vocab(), bos_token="[DEC]", model_max_length=512)
    processor = BlipProcessor(image_processor=BlipImageProcessor(), tokenizer=tokenizer)
    tmp = _atomic_path(folder)
    model.half().save_pretrained(tmp)
    processor.save_pretrained(tmp)
    (tmp / "README.txt").write_text(WARNING + "\n")
    try:
        os.replace(tmp, folder)
    except OSError:  # another process finished first
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def init_random(folder: str | Path, seed: int = 0, open_vocab: bool = True) -> Path:
    """Write FastSAM-s and SegFormer-B0 (ADE20K names), with ``open_vocab`` also CLIP ViT-B-32 and
    BLIP-base, and ``sfs.yaml`` pointing at them (the open-vocabulary branch disabled)."""
    folder = Path(folder).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    fastsam = folder / "FastSAM-s.pt"
    if not fastsam.exists():
        build_fastsam(fastsam, "s", seed)
    segformer = folder / "segformer-b0-ade20k"
    if not (segformer / "config.json").exists():
        build_segformer(segformer, seed=seed)
    clip, blip = folder / "clip-vit-b-32.safetensors", folder / "blip-base"
    if open_vocab and not clip.exists():
        build_clip(clip, "ViT-B-32", seed)
    if open_vocab and not (blip / "config.json").exists():
        build_blip(blip, "base", seed)
    params = {
        "sfs_node": {
            "ros__parameters": {
                "offline": True,
                "masks": {"model": str(fastsam), "imgsz": 640, "conf": 0.01, "iou": 0.9, "max_masks": 100},
                "closed_set": {"segmenters": ["ade20k"], "ade20k": {"model": str(segformer), "input_size": 512}},
                # Random weights spread votes evenly; a low threshold keeps closed-set labels visible.
                "fusion": {"min_confidence": 0.05, "fill_uncovered": True},
                # Random CLIP scores are near-uniform: zero thresholds let open-vocab labels win.
                "open_vocab": {
                    "enabled": False, "mode": "clip", "clip_model": "ViT-B-32", "clip_pretrained": str(clip),
                    "caption_model": str(blip), "min_score": 0.0, "fallback_min_score": 0.0, "max_rate": 2.0,
                },
            }
        }
    }
    config = folder / "sfs.yaml"
    config.write_text("# " + WARNING + "\n" + yaml.safe_dump(params, sort_keys=False))
    (folder / "README.txt").write_text(WARNING + "\n")
    return config
