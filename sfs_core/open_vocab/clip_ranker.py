"""CLIP (open_clip) ranking of mask crops against names.

Image side: one forward for all crops of a call. Text side: prompts are encoded in batches with
the context trimmed to the longest prompt (for CLIP's causal text tower this gives the same
embedding as the full 77-token context, several times faster), memoised in memory, and whole
vocabularies are cached on disk by :class:`~sfs_core.open_vocab.text_cache.TextEmbeddingCache`.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections import OrderedDict
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from sfs_core.open_vocab.crops import normalize
from sfs_core.open_vocab.text_cache import TextEmbeddingCache


def _size(value) -> int:
    if isinstance(value, (tuple, list)):
        if len(set(value)) != 1:
            raise ValueError(f"non-square CLIP input {value} is not supported")
        return int(value[0])
    return int(value)


class ClipRanker:
    """An open_clip model that scores crops against names.

    Args:
        model_name: open_clip architecture, e.g. ``ViT-B-32`` or ``ViT-L-14``.
        pretrained: open_clip pretrained tag (``openai``) or a local checkpoint file.
        device: torch device for the model.
        prompt: template with one ``{}`` for the name, e.g. ``"a photo of a {}."``.
        cache: on-disk cache for :meth:`vocabulary_embeddings` (None: always compute).
        memo_size: how many name embeddings to keep in memory.

    >>> ranker = ClipRanker("ViT-B-32", "models/clip.safetensors")  # doctest: +SKIP
    >>> image_features = ranker.encode_images(crops)  # (N, 3, 224, 224) in [0, 255] -> (N, 512)  # doctest: +SKIP
    """

    def __init__(self, model_name: str, pretrained: str, device: str | torch.device = "cpu",
                 prompt: str = "a photo of a {}.", cache: TextEmbeddingCache | None = None, memo_size: int = 4096) -> None:
        import open_clip

        self.device = torch.device(device)
        self.model_name = model_name
        self.prompt = prompt
        self.cache = cache
        pretrained = os.path.expanduser(pretrained) if pretrained.startswith("~") else pretrained
        self.model = open_clip.create_model(model_name, pretrained=pretrained, device=self.device, require_pretrained=True)
        self.model.eval().requires_grad_(False)
        self.tokenizer = open_clip.get_tokenizer(model_name)
        cfg = open_clip.get_model_preprocess_cfg(self.model)
        self.input_size = _size(cfg["size"])
        self.mean = torch.tensor(cfg["mean"], dtype=torch.float32, device=self.device)
        self.std = torch.tensor(cfg["std"], dtype=torch.float32, device=self.device)
        self.logit_scale = float(self.model.logit_scale.exp().clamp(max=100.0))
        self.model_id = f"{model_name}:{self._text_digest()}"
        self._memo: OrderedDict[str, torch.Tensor] = OrderedDict()
        self._memo_size = memo_size
        self._lock = threading.Lock()
        self.texts_encoded = 0  # prompts run through the text tower by this instance

    # ---- images ---------------------------------------------------------------------------------
    @torch.inference_mode()
    def encode_images(self, crops: torch.Tensor) -> torch.Tensor:
        """``(N, 3, S, S)`` float32 RGB crops in ``[0, 255]`` (``S = input_size``) to ``(N, D)``
        L2-normalised float32 features on :attr:`device`, in one forward."""
        if crops.shape[0] == 0:
            return torch.zeros(0, self.embed_dim, device=self.device)
        x = normalize(crops.to(self.device, torch.float32), self.mean, self.std)
        return F.normalize(self.model.encode_image(x).float(), dim=-1)

    @property
    def embed_dim(self) -> int:
        proj = self.model.text_projection
        return int(proj.out_features if isinstance(proj, torch.nn.Linear) else proj.shape[1])

    # ---- texts ----------------------------------------------------------------------------------
    def encode_texts(self, names: Sequence[str]) -> torch.Tensor:
        """``(T, D)`` L2-normalised float32 embeddings of ``prompt.format(name)`` on
        :attr:`device`; names already seen come from memory."""
        with self._lock:
            found = {n: self._memo[n] for n in names if n in self._memo}
        missing = list(dict.fromkeys(n for n in names if n not in found))
        if missing:
            computed = self._encode_prompts([self.prompt.format(n) for n in missing])
            found.update(zip(missing, computed))
        self._remember(list(found), torch.stack(list(found.values())) if found else torch.zeros(0))
        if not names:
            return torch.zeros(0, self.embed_dim, device=self.device)
        return torch.stack([found[n] for n in names]).to(self.device)

    def vocabulary_embeddings(self, names: Sequence[str]) -> tuple[torch.Tensor, bool]:
        """``((V, D) embeddings on :attr:`device`, loaded_from_disk)`` for a whole vocabulary,
        through the disk cache; also seeds the in-memory memo with them."""
        compute = lambda ns: self._encode_prompts([self.prompt.format(n) for n in ns])  # noqa: E731
        if self.cache is None:
            embeddings, hit = compute(list(names)), False
        else:
            embeddings, hit = self.cache.get_or_compute(self.model_id, names, self.prompt, compute)
        self._remember(list(names), embeddings)
        return embeddings.to(self.device), hit

    @torch.inference_mode()
    def _encode_prompts(self, prompts: list[str], batch_size: int = 256) -> torch.Tensor:
        """``(T, D)`` normalised float32 on the CPU; context trimmed to the longest prompt."""
        out = []
        for start in range(0, len(prompts), batch_size):
            tokens = self.tokenizer(prompts[start : start + batch_size]).to(self.device)
            out.append(F.normalize(encode_text_trimmed(self.model, tokens).float(), dim=-1).cpu())
            self.texts_encoded += len(tokens)
        return torch.cat(out) if out else torch.zeros(0, self.embed_dim)

    def _remember(self, names: list[str], embeddings: torch.Tensor) -> None:
        with self._lock:
            for n, e in zip(names, embeddings.cpu()):
                self._memo[n] = e
                self._memo.move_to_end(n)
            while len(self._memo) > self._memo_size:
                self._memo.popitem(last=False)

    def _text_digest(self) -> str:
        """Digest of the text tower's weights: the model part of the cache key (~0.3 s for B/32)."""
        digest = hashlib.blake2b(digest_size=12)
        for name, param in self.model.named_parameters():
            if not name.startswith("visual."):
                digest.update(name.encode())
                digest.update(memoryview(param.detach().float().cpu().contiguous().reshape(-1).numpy()).cast("B"))
        return digest.hexdigest()

    # ---- ranking --------------------------------------------------------------------------------
    def rank(self, image_features: torch.Tensor, text_features: torch.Tensor, top_k: int,
             allowed: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Top-K names per crop by CLIP softmax probability.

        Args:
            image_features: ``(N, D)`` normalised.
            text_features: ``(T, D)`` normalised, same device.
            allowed: optional ``(N, T)`` bool; each crop's softmax runs over its allowed names only.

        Returns:
            ``(scores, indices)``, both ``(N, k)`` with ``k = min(top_k, T)``, best first; scores
            are probabilities (0 for disallowed names, which therefore rank last).
        """
        logits = self.logit_scale * image_features @ text_features.T
        if allowed is not None:
            logits = logits.masked_fill(~allowed, float("-inf"))
        probs = torch.nan_to_num(logits.softmax(dim=-1), nan=0.0)  # a row with nothing allowed
        return probs.topk(min(top_k, text_features.shape[0]), dim=-1)


def encode_text_trimmed(model: torch.nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """``model.encode_text(tokens)`` with the context cut after the longest prompt's end token.

    Valid for open_clip's ``CLIP`` text tower with a causal mask and ``argmax`` (end-token)
    pooling: later positions are padding that no earlier position attends to. Other towers fall
    back to the full ``encode_text``. ``tokens``: ``(T, L)`` int64; returns ``(T, D)`` unnormalised.
    """
    mask = getattr(model, "attn_mask", None)
    if getattr(model, "text_pool_type", None) != "argmax" or mask is None or not hasattr(model, "positional_embedding"):
        return model.encode_text(tokens)
    length = int(tokens.argmax(dim=-1).max()) + 1  # the end token has the largest id
    tokens = tokens[:, :length]
    cast_dtype = model.transformer.get_cast_dtype()
    x = model.token_embedding(tokens).to(cast_dtype) + model.positional_embedding[:length].to(cast_dtype)
    x = model.transformer(x, attn_mask=mask[:length, :length])
    x = model.ln_final(x)
    x = x[torch.arange(x.shape[0], device=x.device), tokens.argmax(dim=-1)]
    projection = model.text_projection
    if projection is None:
        return x
    return projection(x) if isinstance(projection, torch.nn.Linear) else x @ projection
