"""Text side of the open-vocabulary branch without models: noun phrases from real BLIP-style
captions, vocabularies, the on-disk embedding cache, and the ``open_vocab.*`` parameters."""

import pytest
import torch

from sfs_core.config import ConfigError, OpenVocabConfig, PipelineConfig, load_config
from sfs_core.open_vocab.noun_phrases import BuiltinNounPhrases, make_noun_phrase_extractor, spacy_available
from sfs_core.open_vocab.text_cache import TextEmbeddingCache, cache_key
from sfs_core.open_vocab.vocabulary import resolve_vocabulary


@pytest.fixture(scope="module")
def extract():
    return BuiltinNounPhrases(resolve_vocabulary(["coco", "ade20k"]))


@pytest.mark.parametrize(
    "caption, expected",
    [
        ("a man riding a red bicycle down a street", ["man", "red bicycle", "bicycle", "street"]),
        ("there is a dog sitting on a couch", ["dog", "couch"]),
        ("arafed image of a woman holding an umbrella in the rain", ["woman", "umbrella", "rain"]),
        ("two cats sleeping on a couch with a remote control", ["cat", "couch", "remote control", "remote"]),
        ("a close up of a plate of food with broccoli", ["plate", "food", "broccoli"]),
        ("people walking down a sidewalk next to tall buildings", ["person", "sidewalk", "building"]),
        ("a kitchen with a refrigerator and a stove top oven", ["kitchen", "refrigerator", "stove top oven", "stove", "oven"]),
        ("there is a chest of drawers with a lamp on top of it", ["chest", "chest of drawers", "lamp"]),
        ("a traffic light hanging over a street at night", ["traffic light", "street"]),
        ("a group of people standing around a table", ["person", "table"]),
    ],
)
def test_builtin_noun_phrases_on_real_captions(extract, caption, expected):
    assert extract(caption) == expected


def test_builtin_noun_phrases_edge_cases(extract):
    assert extract("") == []
    assert extract("a picture of") == []  # only framing words
    assert extract("3 dogs playing with a frisbee") == ["dog", "frisbee"]
    long = BuiltinNounPhrases([], max_words=2)("a big old rusty red truck")
    assert long == ["red truck"]  # the head and its nearest modifier


def test_auto_extractor_falls_back_to_builtin_without_spacy_model():
    extractor = make_noun_phrase_extractor("auto", ["dog"])
    if spacy_available():
        pytest.skip("en_core_web_sm is installed here")
    assert isinstance(extractor, BuiltinNounPhrases)
    assert isinstance(make_noun_phrase_extractor("builtin"), BuiltinNounPhrases)
    with pytest.raises(ValueError):
        make_noun_phrase_extractor("nltk")


def test_vocabulary_entries_expand_builtins_files_and_literals(tmp_path):
    words = tmp_path / "extra.txt"
    words.write_text("# my robot's objects\nTraffic Cone\n\npallet  # warehouse\nperson\n")
    names = resolve_vocabulary(["cityscapes", str(words), "kite"])
    assert names[:2] == ["road", "sidewalk"]
    assert names[-3:] == ["traffic cone", "pallet", "kite"]
    assert names.count("person") == 1 and len(names) == len(set(names))
    coco_ade = resolve_vocabulary(["coco", "ade20k"])
    assert "wall" in coco_ade and "wall other" not in coco_ade and len(coco_ade) == 230


def test_text_cache_computes_once_then_loads(tmp_path):
    calls = []

    def compute(names):
        calls.append(list(names))
        return torch.arange(len(names) * 3, dtype=torch.float32).view(len(names), 3)

    cache = TextEmbeddingCache(tmp_path)
    first, hit = cache.get_or_compute("clip-a", ["cat", "dog"], "a {}", compute)
    again, hit2 = TextEmbeddingCache(tmp_path).get_or_compute("clip-a", ["cat", "dog"], "a {}", compute)
    assert (hit, hit2, len(calls)) == (False, True, 1)
    torch.testing.assert_close(first, again)
    # Any change of model, prompt, names or their order is a different entry.
    for model, names, prompt in (("clip-b", ["cat", "dog"], "a {}"), ("clip-a", ["dog", "cat"], "a {}"),
                                 ("clip-a", ["cat", "dog"], "the {}")):
        assert cache_key(model, names, prompt) != cache_key("clip-a", ["cat", "dog"], "a {}")
        assert cache.get_or_compute(model, names, prompt, compute)[1] is False
    assert len(calls) == 4


def test_text_cache_recovers_from_a_corrupt_file(tmp_path):
    cache = TextEmbeddingCache(tmp_path)
    cache.path(cache_key("m", ["cat"], "{}")).parent.mkdir(parents=True, exist_ok=True)
    cache.path(cache_key("m", ["cat"], "{}")).write_bytes(b"not a safetensors file")
    embeddings, hit = cache.get_or_compute("m", ["cat"], "{}", lambda names: torch.ones(1, 4))
    assert not hit and embeddings.shape == (1, 4)
    assert TextEmbeddingCache(tmp_path).get_or_compute("m", ["cat"], "{}", None)[1]


# ---- open_vocab.* parameters ---------------------------------------------------------------------
def test_open_vocab_defaults_round_trip_and_are_disabled():
    cfg = PipelineConfig()
    assert not cfg.open_vocab.enabled and cfg.open_vocab.mode == "clip"
    params = cfg.to_params()
    assert params["open_vocab.vocabulary"] == ["coco", "ade20k"]
    assert PipelineConfig.from_params(params).to_params() == params
    assert not any(k.startswith("open_vocab.") for k in PipelineConfig.from_params(params).extra)


def test_open_vocab_params_parse_and_resolve_paths(tmp_path):
    (tmp_path / "clip.safetensors").write_bytes(b"")
    (tmp_path / "names.txt").write_text("kite\n")
    yaml_file = tmp_path / "p.yaml"
    yaml_file.write_text(
        "sfs_node:\n  ros__parameters:\n    open_vocab:\n      enabled: true\n      mode: clip\n"
        "      clip_pretrained: ./clip.safetensors\n      vocabulary: [coco, ./names.txt, kite]\n      max_rate: 2\n"
    )
    cfg = load_config(yaml_file)
    ov = cfg.open_vocab
    assert ov.enabled and ov.clip_pretrained == str(tmp_path / "clip.safetensors")
    assert ov.vocabulary == ["coco", str(tmp_path / "names.txt"), "kite"] and ov.max_rate == 2.0
    cfg.open_vocab.validate(offline=True)


@pytest.mark.parametrize(
    "overrides, param",
    [
        ({"open_vocab.mode": "blip"}, "open_vocab.mode"),
        ({"open_vocab.top_k": 0}, "open_vocab.top_k"),
        ({"open_vocab.min_score": 1.5}, "open_vocab.min_score"),
        ({"open_vocab.clip_crop_scale": 0.5}, "open_vocab.clip_crop_scale"),
        ({"open_vocab.max_rate": 0.0}, "open_vocab.max_rate"),
        ({"open_vocab.duty_cycle": 0.0}, "open_vocab.duty_cycle"),
        ({"open_vocab.prompt": "a photo"}, "open_vocab.prompt"),
        ({"open_vocab.device": "gpu"}, "open_vocab.device"),
        ({"open_vocab.noun_phrases": "nltk"}, "open_vocab.noun_phrases"),
        ({"open_vocab.vocabulary": [1, 2]}, "open_vocab.vocabulary"),
        ({"open_vocab.max_rate": "fast"}, "open_vocab.max_rate"),
    ],
)
def test_bad_open_vocab_params_name_the_parameter(overrides, param):
    with pytest.raises(ConfigError) as err:
        PipelineConfig.from_params(overrides).validate(check_files=False)
    assert err.value.param == param


def test_enabled_branch_checks_its_model_files(tmp_path):
    cfg = OpenVocabConfig(enabled=True, clip_pretrained=str(tmp_path / "missing.safetensors"))
    with pytest.raises(ConfigError) as err:
        cfg.validate(offline=True)
    assert err.value.param == "open_vocab.clip_pretrained"
    with pytest.raises(ConfigError) as err:
        OpenVocabConfig(enabled=True, clip_pretrained="openai").validate(offline=True)  # a download
    assert err.value.param == "open_vocab.clip_pretrained"
    (tmp_path / "clip.safetensors").write_bytes(b"")
    captioning = OpenVocabConfig(enabled=True, mode="caption", clip_pretrained=str(tmp_path / "clip.safetensors"),
                                 caption_model=str(tmp_path / "no-blip"))
    with pytest.raises(ConfigError) as err:
        captioning.validate(offline=False)
    assert err.value.param == "open_vocab.caption_model"
    OpenVocabConfig(enabled=False, clip_pretrained="/nope").validate(offline=True)  # disabled: not checked
