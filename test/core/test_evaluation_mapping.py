"""sfs_core.evaluation.label_mapping: rules in order, curated synonyms, YAML label spaces, similarity plug-in."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from sfs_core.evaluation.label_mapping import (
    SYNONYMS,
    LabelMapper,
    LabelSpace,
    builtin_label_space,
    encoder_text_similarity,
    load_label_space,
)
from sfs_core.vocabularies import ADE20K_150, CITYSCAPES_19, COCO_PANOPTIC_133, normalize_label


def test_rules_in_order_and_lookup_table():
    space = LabelSpace("cityscapes", CITYSCAPES_19, aliases={"tree": None, "bridge": "building"})
    mapper = LabelMapper(space)
    got = {e.label: (e.class_name, e.method) for e in map(mapper.map, ["unidentified", "Tree", "bridge", "car", "van", "kite"])}
    assert got == {
        "unidentified": (None, "reserved"),
        "tree": (None, "alias"),  # an alias beats the built-in synonym (tree -> vegetation)
        "bridge": ("building", "alias"),
        "car": ("car", "exact"),
        "van": ("car", "synonym"),
        "kite": (None, "unmapped"),
    }
    names = ["unlabeled", "unidentified", "road", "van", "kite", "person"]
    assert mapper.lookup(names).tolist() == [255, 255, 0, 13, 255, 11]
    assert [e["label"] for e in mapper.to_json()["entries"]][:2] == ["unidentified", "tree"]


def test_person_is_never_rider_and_signboard_is_not_traffic_sign():
    mapper = LabelMapper(builtin_label_space("cityscapes"))
    assert mapper.map("person").class_name == "person"
    assert mapper.map("signboard").class_id is None


@pytest.mark.parametrize("dataset,vocabulary", [("cityscapes", CITYSCAPES_19), ("ade20k", ADE20K_150)])
def test_synonym_tables_are_consistent(dataset, vocabulary):
    table = SYNONYMS[dataset]
    assert set(table.values()) <= set(vocabulary)  # targets are real classes
    assert not set(table) & set(vocabulary)  # an exact name never needs a synonym
    assert all(normalize_label(k) == k for k in table)  # keys are in our normalised form


def test_coco_vocabulary_coverage_of_ade20k_is_sensible():
    mapper = LabelMapper(builtin_label_space("ade20k"))
    names = [normalize_label(n) for n in COCO_PANOPTIC_133]
    mapped = {n: mapper.map(n).class_name for n in names}
    assert mapped["tv"] == "television receiver" and mapped["couch"] == "sofa" and mapped["dog"] == "animal"
    assert mapped["wall"] == "wall" and mapped["window"] == "windowpane" and mapped["tree"] == "tree"
    assert mapped["train"] is None and mapped["kite"] is None


def test_fake_similarity_above_and_below_threshold(caplog):
    """A stand-in for CLIP: scores by shared first letter. It tests the plumbing, not CLIP."""
    calls = []

    def similarity(labels, classes):
        calls.append(list(labels))
        return np.array([[0.95 if c[0] == label[0] else 0.1 for c in classes] for label in labels])

    mapper = LabelMapper(builtin_label_space("cityscapes"), similarity=similarity, threshold=0.9)
    with caplog.at_level(logging.INFO, logger="sfs_core.evaluation.label_mapping"):
        entry = mapper.map("zebra crossing")  # no class starts with z
        assert (entry.class_id, entry.method, entry.score) == (None, "unmapped", 0.1)
        entry = mapper.map("rail track")
        assert (entry.class_name, entry.method, entry.score) == ("road", "similarity", 0.95)  # first 'r' class wins
        mapper.map("rail track")
    assert calls == [["zebra crossing"], ["rail track"]]  # cached
    assert "label 'rail track' -> 'road' (0) [similarity, score 0.950]" in caplog.text
    assert mapper.to_json()["rules"][-2:] == ["similarity", "unmapped"]
    assert mapper.map("car").method == "exact"  # cheaper rules still come first

    calls.clear()
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="sfs_core.evaluation.label_mapping"):
        lut = mapper.lookup(["unlabeled", "car", "rail track", "pole vault", "xylophone", "road"])
        assert lut.tolist() == [255, 13, 0, 5, 255, 0]  # "pole vault" -> first 'p' class: pole
        assert calls == [["pole vault", "xylophone"]] and caplog.text == ""  # one batched call, silent
        assert [e.label for e in mapper.log_used(["xylophone"])] == ["xylophone"]
    assert "label 'xylophone' -> ignore [unmapped" in caplog.text

    bad = LabelMapper(builtin_label_space("cityscapes"), similarity=lambda labels, classes: np.zeros((1, 3)))
    with pytest.raises(ValueError, match="similarity returned shape"):
        bad.map("kite")


def test_label_space_yaml(tmp_path):
    path = tmp_path / "lab.yaml"
    path.write_text("classes: [floor, wall, person]\nignore_index: 9\naliases: {Rug: floor, painting: null}\n")
    space = load_label_space(path)
    assert (space.name, space.classes, space.ignore_index, space.reduce_zero_label) == ("lab", ("floor", "wall", "person"), 9, False)
    mapper = LabelMapper(space)
    assert mapper.lookup(["rug", "painting", "person", "sofa"]).tolist() == [0, 9, 2, 9]

    extended = tmp_path / "city.yaml"
    extended.write_text("base: cityscapes\naliases: {signboard: traffic sign}\n")
    space = load_label_space(extended)
    assert space.classes == CITYSCAPES_19 and LabelMapper(space).map("signboard").class_name == "traffic sign"
    assert load_label_space("ade20k").reduce_zero_label

    for text, message in [
        ("classes: []", "non-empty list"),
        ("classes: [a]\naliases: {x: b}", r"unknown classes \['b'\]"),
        ("- a", "mapping at the top"),
        ("classes: [a]\naliases: [x]", "must be a mapping"),
    ]:
        path.write_text(text)
        with pytest.raises(ValueError, match=message):
            load_label_space(path)
    with pytest.raises(FileNotFoundError, match="neither a built-in space"):
        load_label_space(tmp_path / "missing.yaml")
    with pytest.raises(ValueError, match="synonyms point at classes missing"):
        LabelMapper(builtin_label_space("cityscapes"), synonyms={"x": "nope"})


def test_encoder_similarity_adapter_with_a_fake_text_encoder():
    """A fake encoder stands in for ClipRanker.encode_texts (tests the adapter, not CLIP)."""
    torch = pytest.importorskip("torch")
    vectors = {"car": [1.0, 0.0, 0.0], "automobile": [3.0, 0.3, 0.0], "road": [0.0, 1.0, 0.0], "sky": [0.0, 0.0, 1.0]}

    class FakeEncoder:
        calls: list[list[str]] = []

        def encode_texts(self, names):
            self.calls.append(list(names))
            return torch.tensor([vectors.get(n, [0.5, 0.5, 0.5]) for n in names])  # not normalised on purpose

    encoder = FakeEncoder()
    similarity = encoder_text_similarity(encoder)
    scores = similarity(["automobile", "car"], ["car", "road", "sky"])
    assert scores.shape == (2, 3) and scores[1].tolist() == [1.0, 0.0, 0.0]
    assert scores[0, 0] == pytest.approx(3.0 / np.hypot(3.0, 0.3))
    similarity(["road"], ["car", "road", "sky"])
    assert encoder.calls == [["car", "road", "sky"], ["automobile", "car"], ["road"]]  # classes embedded once
    space = LabelSpace("toy", ("car", "road", "sky"))
    mapper = LabelMapper(space, synonyms={}, similarity=similarity, threshold=0.9)
    assert (mapper.map("automobile").class_name, mapper.map("automobile").method) == ("car", "similarity")
    assert mapper.map("bench").class_id is None  # 0.58 < 0.9
