"""Map our open, growing label names onto a dataset's fixed classes.

Order of the rules, first match wins (the rule used is recorded per label):

1. ``reserved``: ``unlabeled`` and ``unidentified`` never map (they become ``ignore_index``).
2. ``alias``: user-given aliases (a YAML ``aliases:`` mapping; ``null`` forces "ignore").
3. ``exact``: the normalised name equals a dataset class name.
4. ``synonym``: the small curated table :data:`SYNONYMS` (COCO and ADE20K names into
   Cityscapes and ADE20K). It is conservative on purpose: ``person`` is never mapped to
   Cityscapes ``rider`` (the two differ by context, not by appearance), and ADE20K
   ``signboard`` is not ``traffic sign`` (shop signs are ``building`` in Cityscapes).
5. ``similarity``: a pluggable text-similarity function (CLIP text embeddings through
   :func:`encoder_text_similarity` and the pipeline's own ``ClipRanker``); the best class is
   taken if its score reaches the threshold. Used only when one is configured.
6. ``unmapped``: everything else becomes ``ignore_index``. A predicted pixel that is unmapped
   counts as a miss for its ground-truth class (see :mod:`sfs_core.evaluation.metrics`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import yaml

from sfs_core.evaluation.metrics import IGNORE_INDEX
from sfs_core.labels import UNIDENTIFIED, UNLABELED
from sfs_core.vocabularies import DATASET_VOCABULARIES, normalize_label

log = logging.getLogger(__name__)

#: ``(labels, classes) -> (len(labels), len(classes))`` similarity scores (cosine, higher = closer).
TextSimilarity = Callable[[Sequence[str], Sequence[str]], np.ndarray]

_ANIMALS = ("bird", "cat", "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe")
_FOODS = ("banana", "apple", "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "fruit")

#: Curated synonyms, keyed by dataset: normalised label -> dataset class name.
SYNONYMS: dict[str, dict[str, str]] = {
    "cityscapes": {
        "pavement": "sidewalk",
        "house": "building", "skyscraper": "building", "hovel": "building", "tower": "building",
        "streetlight": "pole",
        "stop sign": "traffic sign",
        "tree": "vegetation", "plant": "vegetation", "potted plant": "vegetation", "palm": "vegetation", "flower": "vegetation",
        "grass": "terrain", "earth": "terrain", "field": "terrain", "sand": "terrain", "dirt": "terrain", "land": "terrain",
        "van": "car",
        "minibike": "motorcycle",
    },
    "ade20k": {
        "tv": "television receiver", "couch": "sofa", "dining table": "table", "potted plant": "plant",
        "motorcycle": "minibike", "laptop": "computer", "window": "windowpane", "window blind": "blind",
        "floor wood": "floor", "wall brick": "wall", "wall stone": "wall", "wall tile": "wall", "wall wood": "wall",
        "pavement": "sidewalk", "dirt": "earth", "playingfield": "field", "sports ball": "ball", "teddy bear": "plaything",
        "backpack": "bag", "handbag": "bag", "wine glass": "glass", "stop sign": "signboard",
        **{name: "animal" for name in _ANIMALS},
        **{name: "food" for name in _FOODS},
    },
}


@dataclass(frozen=True)
class LabelSpace:
    """A ground-truth label space: class names by id, the ignore id and label preprocessing."""

    name: str
    classes: tuple[str, ...]
    ignore_index: int = IGNORE_INDEX
    reduce_zero_label: bool = False
    aliases: Mapping[str, str | None] = field(default_factory=dict)


def builtin_label_space(name: str) -> LabelSpace:
    if name == "ade20k":
        return LabelSpace("ade20k", DATASET_VOCABULARIES["ade20k"], reduce_zero_label=True)
    if name == "cityscapes":
        return LabelSpace("cityscapes", DATASET_VOCABULARIES["cityscapes"])
    raise ValueError(f"no built-in label space '{name}' (built in: ade20k, cityscapes)")


def load_label_space(spec: str | Path) -> LabelSpace:
    """A built-in name (``cityscapes``, ``ade20k``) or a YAML file::

        name: my_lab            # optional, default: the file stem
        classes: [floor, wall, person]   # ground-truth id i is classes[i]
        ignore_index: 255       # optional
        reduce_zero_label: false  # optional: 0 -> ignore, k -> k - 1 before scoring
        aliases: {sofa: couch, rug: floor, painting: null}   # optional: our label -> class (null = ignore)
        base: cityscapes        # optional: take classes etc. from a built-in space, add aliases
    """
    text = str(spec)
    if text in ("cityscapes", "ade20k"):
        return builtin_label_space(text)
    path = Path(text).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"label map '{spec}' is neither a built-in space (cityscapes, ade20k) nor a file")
    tree = yaml.safe_load(path.read_text()) or {}
    if not isinstance(tree, dict):
        raise ValueError(f"label map '{path}': expected a mapping at the top")
    base = builtin_label_space(tree["base"]) if "base" in tree else None
    classes = tree.get("classes", base.classes if base else None)
    if not classes or not all(isinstance(c, str) for c in classes):
        raise ValueError(f"label map '{path}': 'classes' must be a non-empty list of names")
    aliases = tree.get("aliases") or {}
    if not isinstance(aliases, dict):
        raise ValueError(f"label map '{path}': 'aliases' must be a mapping")
    unknown = sorted({v for v in aliases.values() if v is not None} - set(classes))
    if unknown:
        raise ValueError(f"label map '{path}': aliases point at unknown classes {unknown}")
    return LabelSpace(
        name=str(tree.get("name", base.name if base else path.stem)),
        classes=tuple(classes),
        ignore_index=int(tree.get("ignore_index", base.ignore_index if base else IGNORE_INDEX)),
        reduce_zero_label=bool(tree.get("reduce_zero_label", base.reduce_zero_label if base else False)),
        aliases={normalize_label(k): v for k, v in aliases.items()},
    )


@dataclass(frozen=True)
class MappingEntry:
    """How one of our labels maps: ``class_id`` is ``None`` when it is ignored."""

    label: str
    class_id: int | None
    class_name: str | None
    method: str  # reserved | alias | exact | synonym | similarity | unmapped
    score: float | None = None


class LabelMapper:
    """Cached label -> dataset-class mapping with a growing lookup table for label maps.

    >>> mapper = LabelMapper(builtin_label_space("cityscapes"))
    >>> [(e.class_name, e.method) for e in map(mapper.map, ["car", "van", "kite"])]
    [('car', 'exact'), ('car', 'synonym'), (None, 'unmapped')]
    >>> mapper.lookup(["unlabeled", "unidentified", "road", "tree"]).tolist()
    [255, 255, 0, 8]
    """

    def __init__(
        self,
        space: LabelSpace,
        synonyms: Mapping[str, str] | None = None,
        similarity: TextSimilarity | None = None,
        threshold: float = 0.85,
    ) -> None:
        self.space = space
        self.synonyms = dict(SYNONYMS.get(space.name, {}) if synonyms is None else synonyms)
        unknown = sorted(set(self.synonyms.values()) - set(space.classes))
        if unknown:
            raise ValueError(f"synonyms point at classes missing from '{space.name}': {unknown}")
        self.similarity = similarity
        self.threshold = threshold
        self._class_ids = {normalize_label(c): i for i, c in enumerate(space.classes)}
        self._entries: dict[str, MappingEntry] = {}
        self._logged: set[str] = set()

    def map(self, label: str) -> MappingEntry:
        """The mapping of ``label`` (computed once; logged the first time it is asked for here)."""
        entry = self._resolve([label])[0]
        if entry.label not in self._logged:
            self._logged.add(entry.label)
            log.info("%s", describe(entry))
        return entry

    def lookup(self, names: Sequence[str]) -> np.ndarray:
        """int64 array ``lut`` with ``lut[label_id] = dataset class id or ignore_index``, where
        ``names[label_id]`` is our label table; apply it as ``lut[label_map]``.

        Silent (a label table holds many labels that never appear); the similarity function is
        called once for all names that need it. Use :meth:`log_used` for what was predicted.
        """
        ids = [e.class_id for e in self._resolve(names)]
        return np.array([self.space.ignore_index if i is None else i for i in ids], dtype=np.int64)

    def log_used(self, labels: Iterable[str]) -> list[MappingEntry]:
        """Log (once each) and return the mappings of ``labels``, e.g. those that were predicted."""
        return [self.map(label) for label in labels]

    def _resolve(self, labels: Sequence[str]) -> list[MappingEntry]:
        keys = [normalize_label(label) for label in labels]
        pending = [k for k in dict.fromkeys(keys) if k not in self._entries]
        undecided = []
        for key in pending:
            entry = self._by_rules(key)
            if entry is None:
                undecided.append(key)
            else:
                self._entries[key] = entry
        if undecided:
            for key, entry in zip(undecided, self._by_similarity(undecided), strict=True):
                self._entries[key] = entry
        return [self._entries[k] for k in keys]

    def _by_rules(self, key: str) -> MappingEntry | None:
        if key in (UNLABELED, UNIDENTIFIED):
            return MappingEntry(key, None, None, "reserved")
        if key in self.space.aliases:
            return self._entry(key, self.space.aliases[key], "alias")
        if key in self._class_ids:
            return self._entry(key, self.space.classes[self._class_ids[key]], "exact")
        if key in self.synonyms:
            return self._entry(key, self.synonyms[key], "synonym")
        if self.similarity is None:
            return MappingEntry(key, None, None, "unmapped")
        return None

    def _by_similarity(self, keys: list[str]) -> list[MappingEntry]:
        expected = (len(keys), len(self.space.classes))
        scores = np.asarray(self.similarity(keys, list(self.space.classes)), dtype=np.float64)
        if scores.shape != expected:
            raise ValueError(f"similarity returned shape {scores.shape}, expected {expected}")
        entries = []
        for key, row in zip(keys, scores, strict=True):
            best = int(np.argmax(row))
            score = float(row[best])
            if score >= self.threshold:
                entries.append(MappingEntry(key, best, self.space.classes[best], "similarity", score))
            else:
                entries.append(MappingEntry(key, None, None, "unmapped", score))
        return entries

    def _entry(self, key: str, class_name: str | None, method: str) -> MappingEntry:
        if class_name is None:
            return MappingEntry(key, None, None, method)
        return MappingEntry(key, self.space.classes.index(class_name), class_name, method)

    def entries(self, labels: Iterable[str] | None = None) -> list[MappingEntry]:
        """The mappings of ``labels`` (default: every label resolved so far, first-seen order)."""
        if labels is None:
            return list(self._entries.values())
        return self._resolve(list(dict.fromkeys(labels)))

    def to_json(self, labels: Iterable[str] | None = None) -> dict:
        """Rules, threshold and the entries of ``labels`` (default: all resolved so far)."""
        return {
            "label_space": self.space.name,
            "rules": ["reserved", "alias", "exact", "synonym"] + (["similarity"] if self.similarity else []) + ["unmapped"],
            "similarity_threshold": self.threshold if self.similarity else None,
            "entries": [asdict(e) for e in self.entries(labels)],
        }


def describe(entry: MappingEntry) -> str:
    """One log line: ``label 'van' -> 'car' (13) [synonym]``."""
    target = f"'{entry.class_name}' ({entry.class_id})" if entry.class_id is not None else "ignore"
    score = f", score {entry.score:.3f}" if entry.score is not None else ""
    return f"label '{entry.label}' -> {target} [{entry.method}{score}]"


class TextEncoder(Protocol):
    """Anything that embeds names, e.g. :class:`sfs_core.open_vocab.clip_ranker.ClipRanker`."""

    def encode_texts(self, names: Sequence[str]) -> Any: ...  # (T, D) tensor or array


def encoder_text_similarity(encoder: TextEncoder) -> TextSimilarity:
    """Cosine similarity of label and class names under ``encoder`` (CLIP's text tower).

    Embeddings are re-normalised here, so any encoder works; class embeddings are computed once.
    """
    class_cache: dict[tuple[str, ...], np.ndarray] = {}

    def embed(names: Sequence[str]) -> np.ndarray:
        features = encoder.encode_texts(list(names))
        features = features.detach().float().cpu().numpy() if hasattr(features, "detach") else np.asarray(features, np.float64)
        return features / np.maximum(np.linalg.norm(features, axis=-1, keepdims=True), 1e-12)

    def similarity(labels: Sequence[str], classes: Sequence[str]) -> np.ndarray:
        key = tuple(classes)
        if key not in class_cache:
            class_cache[key] = embed(classes)
        return embed(labels) @ class_cache[key].T

    return similarity
