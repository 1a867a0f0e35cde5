"""The open-vocabulary labeler: names for mask crops, in ``clip`` or ``caption`` mode.

``caption`` (the paper): crop each mask at 1.6x for BLIP and caption the crops in batches, take
the captions' noun phrases, and rank the union of those phrases and the mask's closed-set
candidates with CLIP on a 1.2x crop. ``clip`` (faster, beyond the paper): rank the 1.2x crops
directly against a fixed vocabulary whose text embeddings are cached on disk.

Both modes return the top-K names with their CLIP softmax probabilities. Each call crops every
mask with one ``roi_align`` and runs one CLIP image forward for all of them.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from sfs_core.config import OpenVocabConfig
from sfs_core.open_vocab.clip_ranker import ClipRanker
from sfs_core.open_vocab.crops import crop_batch, mask_boxes, square_boxes
from sfs_core.open_vocab.noun_phrases import make_noun_phrase_extractor
from sfs_core.open_vocab.text_cache import TextEmbeddingCache
from sfs_core.open_vocab.vocabulary import resolve_vocabulary
from sfs_core.open_vocab_fusion import OpenVocabLabels
from sfs_core.vocabularies import normalize_label


class OpenVocabLabeler:
    """Open-vocabulary top-K names for masks.

    Input: one ``(H, W, 3)`` uint8 **RGB** frame, its ``(N, h, w)`` bool masks covering the whole
    frame at any resolution (``MaskResult.masks``), and optionally each mask's closed-set
    candidate names. Output: ``N`` :class:`~sfs_core.open_vocab_fusion.OpenVocabLabels`.
    Models run on ``open_vocab.device`` (empty: ``device``).

    Args:
        config: the ``open_vocab`` section.
        device: the pipeline's device, used when ``config.device`` is empty.
        cache_dir: root of the caches; text embeddings go to ``<cache_dir>/text_embeddings``.

    >>> labeler = OpenVocabLabeler(load_config("models/sfs.yaml").open_vocab)  # doctest: +SKIP
    >>> labeler.label(rgb, mask_result.masks)[0]  # doctest: +SKIP
    OpenVocabLabels(candidates=('person', 'man', 'bicycle'), scores=(0.71, 0.12, 0.05), caption='')
    """

    def __init__(self, config: OpenVocabConfig, device: str = "cpu", cache_dir: str | Path = "~/.cache/sfs_ros") -> None:
        t0 = time.perf_counter()
        self.config = config
        self.mode = config.mode
        self.device = torch.device(config.device or device)
        self.vocabulary = resolve_vocabulary(config.vocabulary)
        self.text_cache = TextEmbeddingCache(Path(cache_dir).expanduser() / "text_embeddings")
        self.ranker = ClipRanker(config.clip_model, config.clip_pretrained, self.device, config.prompt, self.text_cache)
        self.vocabulary_features = torch.zeros(0, self.ranker.embed_dim, device=self.device)
        self.vocabulary_from_disk = False
        if self.vocabulary:
            self.vocabulary_features, self.vocabulary_from_disk = self.ranker.vocabulary_embeddings(self.vocabulary)
        self.captioner = None
        self.noun_phrases = None
        if self.mode == "caption":
            from sfs_core.open_vocab.captioner import BlipCaptioner

            self.captioner = BlipCaptioner(config.caption_model, self.device, config.caption_max_tokens)
            self.noun_phrases = make_noun_phrase_extractor(config.noun_phrases, self.vocabulary)
        self.timings: dict[str, float] = {}
        self.load_seconds = time.perf_counter() - t0

    @property
    def batch_size(self) -> int:
        """Masks per :meth:`label` call that keep one call short (a caption batch in ``caption``
        mode; a whole snapshot's worth in ``clip`` mode)."""
        return self.config.caption_batch_size if self.mode == "caption" else self.config.max_masks_per_snapshot

    @torch.inference_mode()
    def label(self, image: np.ndarray, masks: torch.Tensor,
              closed_set_candidates: Sequence[Sequence[str]] | None = None) -> list[OpenVocabLabels]:
        """Top-K names for every mask (see the class docstring); ``timings`` gets the stage times."""
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got {image.shape} {image.dtype}")
        n = masks.shape[0]
        if closed_set_candidates is not None and len(closed_set_candidates) != n:
            raise ValueError(f"{n} masks but {len(closed_set_candidates)} closed-set candidate lists")
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        pixels = np.ascontiguousarray(image) if image.flags.writeable else image.copy()  # ROS buffers are read-only
        frame = torch.from_numpy(pixels).to(self.device).permute(2, 0, 1).float()
        masks = masks.to(self.device)
        boxes = mask_boxes(masks, image.shape[:2])
        foreground = masks if self.config.mask_background else None
        crops = crop_batch(frame, square_boxes(boxes, self.config.clip_crop_scale), self.ranker.input_size, foreground)
        timings["crop"] = _ms(t0)

        t0 = time.perf_counter()
        features = self.ranker.encode_images(crops)
        timings["clip_image"] = _ms(t0)
        if self.mode == "clip":
            t0 = time.perf_counter()
            scores, indices = self.ranker.rank(features, self.vocabulary_features, self.config.top_k)
            out = [_labels([self.vocabulary[j] for j in row], s) for row, s in zip(indices.tolist(), scores.tolist())]
            timings["rank"] = _ms(t0)
            self.timings = timings
            return out

        t0 = time.perf_counter()
        captions: list[str] = []
        size, step = self.captioner.input_size, self.config.caption_batch_size
        for start in range(0, n, step):
            part = slice(start, start + step)
            caption_crops = crop_batch(frame, square_boxes(boxes[part], self.config.caption_crop_scale), size,
                                       None if foreground is None else foreground[part])
            captions.extend(self.captioner.caption(caption_crops))
        timings["caption"] = _ms(t0)

        t0 = time.perf_counter()
        closed = closed_set_candidates or [[] for _ in range(n)]
        candidates = [self.noun_phrases(c) + [normalize_label(name) for name in names] for c, names in zip(captions, closed)]
        out = self.rank_candidates(features, candidates, captions)
        timings["rank"] = _ms(t0)
        self.timings = timings
        return out

    def rank_candidates(self, features: torch.Tensor, candidates: Sequence[Sequence[str]],
                        captions: Sequence[str] | None = None) -> list[OpenVocabLabels]:
        """Rank each crop's own candidate names (``caption`` mode); a crop without candidates is
        ranked against the vocabulary. ``features``: ``(N, D)`` from ``ranker.encode_images``."""
        lists = [list(dict.fromkeys(c)) or self.vocabulary for c in candidates]
        union = list(dict.fromkeys(name for names in lists for name in names))
        captions = captions or [""] * len(lists)
        if not union:
            return [OpenVocabLabels((), (), caption) for caption in captions]
        column = {name: j for j, name in enumerate(union)}
        allowed = torch.zeros(len(lists), len(union), dtype=torch.bool)
        for i, names in enumerate(lists):
            allowed[i, [column[name] for name in names]] = True
        text = self.ranker.encode_texts(union)
        scores, indices = self.ranker.rank(features, text, self.config.top_k, allowed.to(features.device))
        out = []
        for row, s, names, caption in zip(indices.tolist(), scores.tolist(), lists, captions):
            k = min(len(names), len(row))  # disallowed names have probability 0 and rank last
            out.append(_labels([union[j] for j in row[:k]], s[:k], caption))
        return out


def _labels(names: list[str], scores: list[float], caption: str = "") -> OpenVocabLabels:
    return OpenVocabLabels(tuple(names), tuple(float(s) for s in scores), caption)


def _ms(t0: float) -> float:
    return (time.perf_counter() - t0) * 1e3
