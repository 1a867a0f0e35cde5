"""On-disk cache of CLIP text embeddings for a vocabulary.

Encoding a vocabulary is the slow part of starting CLIP (~15 s for 200 prompts with ViT-B/32 on
two CPU cores), so it is done once and stored as ``<folder>/<key>.safetensors``. The key hashes
the model identity (architecture and a digest of its text-tower weights), the prompt template and
the ordered list of names, so a different model, prompt or vocabulary never reads a stale entry.
Writes are atomic (temporary file, then rename), so concurrent processes at worst compute twice.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

log = logging.getLogger(__name__)


def cache_key(model_id: str, names: Sequence[str], prompt: str) -> str:
    """Hex digest identifying ``(model, prompt, names)``; names are order-sensitive."""
    payload = json.dumps({"model": model_id, "prompt": prompt, "names": list(names)}, ensure_ascii=False)
    return hashlib.sha256(payload.encode()).hexdigest()[:32]


class TextEmbeddingCache:
    """Embeddings ``(V, D)`` float32 by key, in ``folder``. ``hits``/``misses`` count lookups of
    :meth:`get_or_compute` in this process (a hit means nothing was encoded).

    >>> cache = TextEmbeddingCache(tempfile.mkdtemp())
    >>> emb, hit = cache.get_or_compute("m", ["cat"], "{}", lambda names: torch.ones(len(names), 2))
    >>> emb.shape, hit, cache.get_or_compute("m", ["cat"], "{}", None)[1]
    (torch.Size([1, 2]), False, True)
    """

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(os.path.expanduser(str(folder)))
        self.hits = 0
        self.misses = 0

    def path(self, key: str) -> Path:
        return self.folder / f"{key}.safetensors"

    def load(self, key: str, names: Sequence[str]) -> torch.Tensor | None:
        """The stored embeddings for ``key`` if present, readable and for exactly ``names``."""
        from safetensors import safe_open

        path = self.path(key)
        if not path.is_file():
            return None
        try:
            with safe_open(str(path), framework="pt") as f:
                stored = json.loads((f.metadata() or {}).get("names", "null"))
                embeddings = f.get_tensor("embeddings")
        except Exception as err:  # corrupt or foreign file: recompute and overwrite
            log.warning("ignoring unreadable text-embedding cache %s: %s", path, err)
            return None
        if stored != list(names) or embeddings.ndim != 2 or embeddings.shape[0] != len(names):
            log.warning("ignoring text-embedding cache %s: it holds a different vocabulary", path)
            return None
        return embeddings.float()

    def save(self, key: str, names: Sequence[str], embeddings: torch.Tensor, meta: dict[str, str] | None = None) -> Path | None:
        """Store atomically; returns the path, or None when the folder is not writable."""
        from safetensors.torch import save_file

        metadata = {"names": json.dumps(list(names), ensure_ascii=False), **(meta or {})}
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.folder, suffix=".tmp")
            os.close(fd)
            save_file({"embeddings": embeddings.detach().float().cpu().contiguous()}, tmp, metadata=metadata)
            os.replace(tmp, self.path(key))
        except OSError as err:
            log.warning("cannot write text-embedding cache in %s: %s", self.folder, err)
            return None
        return self.path(key)

    def get_or_compute(
        self,
        model_id: str,
        names: Sequence[str],
        prompt: str,
        compute: Callable[[list[str]], torch.Tensor] | None,
    ) -> tuple[torch.Tensor, bool]:
        """``(embeddings (V, D) float32 on the CPU, hit)``: loaded from disk, or computed with
        ``compute(names)`` and stored."""
        key = cache_key(model_id, names, prompt)
        cached = self.load(key, names)
        if cached is not None:
            self.hits += 1
            return cached, True
        if compute is None:
            raise KeyError(f"no cached text embeddings for key {key}")
        self.misses += 1
        embeddings = compute(list(names)).detach().float().cpu()
        self.save(key, names, embeddings, {"model": model_id, "prompt": prompt})
        return embeddings, False
