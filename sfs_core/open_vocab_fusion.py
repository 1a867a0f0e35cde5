"""Fusion of a mask's closed-set label with its open-vocabulary (CLIP top-K) candidates.

The rules of the Semantic-Fast-SAM paper, applied per track, first match wins:

1. ``CLOSED_SET_CONFIRMED``: the closed-set label is confident (``confidence >=
   closed_set_min_confidence``) **and** appears in CLIP's top-K: keep it.
2. ``OPEN_VOCAB``: CLIP's top-1 clears ``min_score`` and the closed set is unsure (below its
   threshold) or contradicted (confident, but not in the top-K): take the top-1.
3. ``CLOSED_SET``: otherwise a confident closed-set label wins (this is also the rule before any
   open-vocabulary result has arrived).
4. ``OPEN_VOCAB_FALLBACK``: otherwise CLIP's top-1, if it clears ``fallback_min_score``.
5. ``UNIDENTIFIED``: otherwise.

Names match after :func:`~sfs_core.vocabularies.normalize_label`; a candidate also agrees with the
closed set when the closed-set name is its head ("red bicycle" agrees with "bicycle"). A chosen
open-vocabulary name that the :class:`~sfs_core.labels.LabelTable` does not know yet is appended
to it, so it gets a new, stable class id. Once the table is full (``open_vocab.max_labels``), a new
name cannot be chosen: rules 2 and 4 do not match, so a confident closed-set label or
``unidentified`` follows (the candidates are still published).

Everything here is plain Python on a handful of values per track: no tensors, no model imports.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from enum import Enum

from sfs_core.labels import UNIDENTIFIED, UNIDENTIFIED_ID, LabelSource, LabelTable, LabelTableFull
from sfs_core.vocabularies import normalize_label

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClosedSetLabel:
    """A mask's closed-set vote in one frame: the winning class (label-table id and name, even
    when its share is below the threshold) and its confidence (pixel share) in ``[0, 1]``."""

    class_id: int
    name: str
    confidence: float


@dataclass(frozen=True)
class OpenVocabLabels:
    """What the open-vocabulary labeler says about one mask.

    Attributes:
        candidates: up to top-K normalised names, best first.
        scores: CLIP softmax probabilities over the ranked names (the vocabulary in ``clip``
            mode; the caption's phrases plus the closed-set candidates in ``caption`` mode),
            same length as ``candidates``, descending.
        caption: the BLIP caption (``caption`` mode only).
    """

    candidates: tuple[str, ...]
    scores: tuple[float, ...]
    caption: str = ""

    def __post_init__(self) -> None:
        if len(self.candidates) != len(self.scores):
            raise ValueError(f"{len(self.candidates)} candidates but {len(self.scores)} scores")


class FusionRule(str, Enum):
    """Which rule decided a label (see the module docstring)."""

    CLOSED_SET_CONFIRMED = "closed_set_confirmed"
    OPEN_VOCAB = "open_vocab"
    CLOSED_SET = "closed_set"
    OPEN_VOCAB_FALLBACK = "open_vocab_fallback"
    UNIDENTIFIED = "unidentified"


@dataclass(frozen=True)
class FusionThresholds:
    """Thresholds of the rules. ``closed_set_min_confidence`` is the per-frame path's
    ``fusion.min_confidence``; the others are ``open_vocab.min_score`` and
    ``open_vocab.fallback_min_score`` (CLIP softmax probabilities)."""

    closed_set_min_confidence: float = 0.4
    min_score: float = 0.3
    fallback_min_score: float = 0.1

    @classmethod
    def from_config(cls, config) -> FusionThresholds:
        """From a :class:`~sfs_core.config.PipelineConfig`."""
        return cls(config.fusion.min_confidence, config.open_vocab.min_score, config.open_vocab.fallback_min_score)


@dataclass(frozen=True)
class TrackLabel:
    """The label a track carries (what ``LabeledMask`` publishes).

    ``score`` is the closed-set confidence for closed-set sources and the CLIP score for
    open-vocabulary ones; ``candidates``/``candidate_scores`` are the open-vocabulary top-K (empty
    until a result arrived).
    """

    class_id: int
    name: str
    score: float
    source: LabelSource
    rule: FusionRule
    candidates: tuple[str, ...] = field(default=())
    candidate_scores: tuple[float, ...] = field(default=())


def agrees(candidate: str, closed_set_name: str) -> bool:
    """True when an open-vocabulary candidate names the closed-set class: equal after
    normalisation, or the closed-set name is the candidate's head ("red bicycle", "bicycle")."""
    cand, closed = normalize_label(candidate), normalize_label(closed_set_name)
    return bool(closed) and (cand == closed or cand.endswith(" " + closed))


def fuse_labels(
    closed_set: ClosedSetLabel | None,
    open_vocab: OpenVocabLabels | None,
    thresholds: FusionThresholds,
    label_table: LabelTable,
) -> TrackLabel:
    """Apply the rules of the module docstring to one track.

    >>> table = LabelTable(["bird"])
    >>> label = fuse_labels(ClosedSetLabel(2, "bird", 0.3), OpenVocabLabels(("kite", "bird"), (0.6, 0.2)),
    ...                     FusionThresholds(), table)
    >>> label.name, label.source.name, label.rule.value, label.class_id == table.id_of("kite")
    ('kite', 'OPEN_VOCAB', 'open_vocab', True)
    """
    candidates = open_vocab.candidates if open_vocab else ()
    scores = open_vocab.scores if open_vocab else ()
    confident = closed_set is not None and closed_set.class_id != UNIDENTIFIED_ID and (
        closed_set.confidence >= thresholds.closed_set_min_confidence
    )
    top_name, top_score = (candidates[0], scores[0]) if candidates else (None, 0.0)

    def closed(rule: FusionRule) -> TrackLabel:
        return TrackLabel(closed_set.class_id, label_table.name_of(closed_set.class_id), closed_set.confidence,
                          LabelSource.CLOSED_SET, rule, candidates, scores)

    def unidentified() -> TrackLabel:
        confidence = closed_set.confidence if closed_set is not None else 0.0
        return TrackLabel(UNIDENTIFIED_ID, UNIDENTIFIED, confidence, LabelSource.UNIDENTIFIED, FusionRule.UNIDENTIFIED,
                          candidates, scores)

    top_id: list[int | None] = []  # the top name's table id, added once (None: the table is full)

    def opened(rule: FusionRule) -> TrackLabel | None:
        if not top_id:
            try:
                top_id.append(label_table.add(top_name))
            except LabelTableFull:  # a new name with no room left: the rule does not match
                top_id.append(None)
                if label_table.refused == 1:
                    log.warning("label table full (%d names): new open-vocabulary names are no longer chosen", label_table.capacity)
        if (class_id := top_id[0]) is None:
            return None
        return TrackLabel(class_id, label_table.name_of(class_id), top_score, LabelSource.OPEN_VOCAB, rule, candidates, scores)

    if confident and any(agrees(c, closed_set.name) for c in candidates):
        return closed(FusionRule.CLOSED_SET_CONFIRMED)
    # Rule 2: the closed set is unsure, or confident but contradicted.
    if top_name is not None and top_score >= thresholds.min_score and (label := opened(FusionRule.OPEN_VOCAB)):
        return label
    if confident:
        return closed(FusionRule.CLOSED_SET)
    if top_name is not None and top_score >= thresholds.fallback_min_score and (label := opened(FusionRule.OPEN_VOCAB_FALLBACK)):
        return label
    return unidentified()
