"""Tiny random-weight Mask2Former and OneFormer checkpoints (real architectures, small sizes),
so tests can show that the config's model type alone selects the segmenter."""

from __future__ import annotations

import gzip
from pathlib import Path

LABELS = ("wall", "person", "car", "kite")


def _swin():
    from transformers import SwinConfig

    return SwinConfig(embed_dim=32, depths=[1, 1, 1, 1], num_heads=[1, 2, 4, 8], out_features=["stage1", "stage2", "stage3", "stage4"])


def _common() -> dict:
    return dict(
        backbone_config=_swin(), use_pretrained_backbone=False, num_labels=len(LABELS),
        id2label=dict(enumerate(LABELS)), label2id={n: i for i, n in enumerate(LABELS)},
        hidden_dim=64, num_queries=20, encoder_layers=1, decoder_layers=2, encoder_feedforward_dim=128,
        dim_feedforward=128, num_attention_heads=4,
    )


def clip_tokenizer():
    """CLIP BPE tokenizer built from open_clip's bundled vocabulary (no download)."""
    from open_clip.tokenizer import bytes_to_unicode, default_bpe
    from transformers import CLIPTokenizer

    merges = [tuple(m.split()) for m in gzip.open(default_bpe()).read().decode("utf-8").split("\n")[1 : 49152 - 256 - 2 + 1]]
    vocab = list(bytes_to_unicode().values())
    vocab += [v + "</w>" for v in vocab] + ["".join(m) for m in merges] + ["<|startoftext|>", "<|endoftext|>"]
    return CLIPTokenizer(vocab={t: i for i, t in enumerate(vocab)}, merges=merges)


def build_mask2former(folder: Path) -> Path:
    import torch
    from transformers import Mask2FormerConfig, Mask2FormerForUniversalSegmentation

    torch.manual_seed(0)
    config = Mask2FormerConfig(mask_feature_size=64, feature_size=64, **_common())
    Mask2FormerForUniversalSegmentation(config).eval().save_pretrained(folder)
    return folder


def build_oneformer(folder: Path) -> Path:
    import torch
    from transformers import OneFormerConfig, OneFormerForUniversalSegmentation

    torch.manual_seed(0)
    config = OneFormerConfig(
        mask_dim=64, conv_dim=64, text_encoder_width=64, text_encoder_num_layers=1, text_encoder_proj_layers=1,
        text_encoder_context_length=77, task_seq_len=77, text_encoder_vocab_size=49408, **_common(),
    )
    OneFormerForUniversalSegmentation(config).eval().save_pretrained(folder)
    clip_tokenizer().save_pretrained(folder)
    return folder
