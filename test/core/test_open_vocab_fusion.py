"""Fusion of closed-set and open-vocabulary labels: one test per rule, each built so that the
input would fall through to a different rule (and a different answer) if its rule broke."""

import pytest

from sfs_core.labels import UNIDENTIFIED_ID, LabelSource, LabelTable
from sfs_core.open_vocab_fusion import (
    ClosedSetLabel,
    FusionRule,
    FusionThresholds,
    OpenVocabLabels,
    agrees,
    fuse_labels,
)

THRESHOLDS = FusionThresholds(closed_set_min_confidence=0.4, min_score=0.3, fallback_min_score=0.1)


@pytest.fixture
def table():
    return LabelTable(["bird", "sky", "tree", "bicycle"])


def closed(table, name, confidence):
    return ClosedSetLabel(table.id_of(name), name, confidence)


def fuse(table, closed_set, candidates=None, thresholds=THRESHOLDS):
    open_vocab = None if candidates is None else OpenVocabLabels(tuple(candidates), tuple(candidates.values()))
    return fuse_labels(closed_set, open_vocab, thresholds, table)


def test_rule1_confident_closed_set_label_in_clip_top_k_is_kept(table):
    # "kite" clears min_score: without rule 1 the (apparently contradicted) closed set would lose.
    label = fuse(table, closed(table, "bird", 0.6), {"kite": 0.7, "bird": 0.2, "sky": 0.1})
    assert (label.name, label.source, label.rule) == ("bird", LabelSource.CLOSED_SET, FusionRule.CLOSED_SET_CONFIRMED)
    assert label.score == 0.6 and label.class_id == table.id_of("bird")
    assert label.candidates == ("kite", "bird", "sky") and label.candidate_scores == (0.7, 0.2, 0.1)


def test_rule1_accepts_a_phrase_whose_head_is_the_closed_set_name(table):
    label = fuse(table, closed(table, "bicycle", 0.5), {"man": 0.6, "red bicycle": 0.3})
    assert (label.name, label.rule) == ("bicycle", FusionRule.CLOSED_SET_CONFIRMED)


def test_rule2_open_vocab_wins_when_the_closed_set_is_unsure(table):
    # "bird" is in the top-K but unsure (0.2 < 0.4): it must not count as confirmed.
    label = fuse(table, closed(table, "bird", 0.2), {"kite": 0.7, "bird": 0.2})
    assert (label.name, label.source, label.rule) == ("kite", LabelSource.OPEN_VOCAB, FusionRule.OPEN_VOCAB)
    assert label.score == 0.7


def test_rule2_open_vocab_wins_when_the_closed_set_is_contradicted(table):
    # Confident closed set absent from the top-K: without rule 2, rule 3 would keep "bird".
    label = fuse(table, closed(table, "bird", 0.9), {"kite": 0.7, "sky": 0.2, "tree": 0.1})
    assert (label.name, label.source, label.rule) == ("kite", LabelSource.OPEN_VOCAB, FusionRule.OPEN_VOCAB)


def test_rule3_confident_closed_set_wins_over_a_weak_open_vocab_label(table):
    # "kite" is below min_score but above fallback_min_score: without rule 3 the fallback would take it.
    label = fuse(table, closed(table, "bird", 0.9), {"kite": 0.2, "sky": 0.15})
    assert (label.name, label.source, label.rule) == ("bird", LabelSource.CLOSED_SET, FusionRule.CLOSED_SET)


def test_rule3_applies_before_any_open_vocab_result(table):
    label = fuse(table, closed(table, "sky", 0.4), None)  # at the threshold counts as confident
    assert (label.name, label.rule, label.candidates) == ("sky", FusionRule.CLOSED_SET, ())


def test_rule4_falls_back_to_the_top_clip_suggestion(table):
    # Unsure closed set, "kite" between fallback_min_score and min_score: without rule 4, unidentified.
    label = fuse(table, closed(table, "bird", 0.2), {"kite": 0.2, "sky": 0.15})
    assert (label.name, label.source, label.rule) == ("kite", LabelSource.OPEN_VOCAB, FusionRule.OPEN_VOCAB_FALLBACK)
    assert label.score == 0.2


def test_rule5_otherwise_unidentified(table):
    label = fuse(table, closed(table, "bird", 0.2), {"kite": 0.05, "sky": 0.04})
    assert (label.class_id, label.name, label.source, label.rule) == (
        UNIDENTIFIED_ID, "unidentified", LabelSource.UNIDENTIFIED, FusionRule.UNIDENTIFIED)
    assert label.candidates == ("kite", "sky")  # still published as candidates
    assert fuse(table, None, None).rule == FusionRule.UNIDENTIFIED
    assert fuse(table, ClosedSetLabel(UNIDENTIFIED_ID, "unidentified", 0.9), None).rule == FusionRule.UNIDENTIFIED


def test_thresholds_are_configurable(table):
    strict = FusionThresholds(closed_set_min_confidence=0.95, min_score=0.8, fallback_min_score=0.75)
    assert fuse(table, closed(table, "bird", 0.9), {"kite": 0.7}, strict).rule == FusionRule.UNIDENTIFIED
    lenient = FusionThresholds(closed_set_min_confidence=0.1, min_score=0.05, fallback_min_score=0.0)
    assert fuse(table, closed(table, "bird", 0.2), {"bird": 0.1}, lenient).rule == FusionRule.CLOSED_SET_CONFIRMED


def test_new_open_vocab_names_extend_the_label_table_with_stable_ids(table):
    before = len(table)
    kite = fuse(table, closed(table, "bird", 0.1), {"kite": 0.9, "balloon": 0.05})
    assert kite.class_id == before and table.name_of(kite.class_id) == "kite"
    assert table.id_of("balloon") is None  # candidates that are not chosen do not grow the table
    again = fuse(table, None, {"Kite": 0.9})
    assert again.class_id == kite.class_id and len(table) == before + 1


def test_agreement_is_on_normalised_names_and_phrase_heads():
    assert agrees("Wall", "wall-other-merged") and agrees("red bicycle", "bicycle")
    assert not agrees("bicycle rack", "bicycle") and not agrees("kite", "bird") and not agrees("kite", "")


def test_open_vocab_labels_need_one_score_per_candidate():
    with pytest.raises(ValueError):
        OpenVocabLabels(("a", "b"), (0.5,))


def test_a_new_name_that_does_not_fit_the_full_table_is_not_chosen(table, caplog):
    table.limit_growth(0)
    label = fuse(table, closed(table, "bird", 0.2), {"kite": 0.7, "bird": 0.2})  # rule 2 would name it "kite"
    assert (label.class_id, label.source, label.rule) == (UNIDENTIFIED_ID, LabelSource.UNIDENTIFIED, FusionRule.UNIDENTIFIED)
    assert label.candidates == ("kite", "bird") and label.score == 0.2  # candidates still published
    assert table.id_of("kite") is None and table.refused == 1 and "label table full" in caplog.text
    label = fuse(table, closed(table, "bird", 0.6), {"kite": 0.7, "sky": 0.2, "tree": 0.1})  # contradicted, confident
    assert (label.name, label.source, label.rule) == ("bird", LabelSource.CLOSED_SET, FusionRule.CLOSED_SET)
    label = fuse(table, closed(table, "bird", 0.2), {"tree": 0.7, "bird": 0.2})  # a name it already has still wins
    assert (label.name, label.rule) == ("tree", FusionRule.OPEN_VOCAB)
