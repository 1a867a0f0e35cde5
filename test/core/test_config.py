from pathlib import Path

import pytest

from sfs_core.config import ConfigError, PipelineConfig, load_config, load_params

REPO = Path(__file__).resolve().parents[2]


def test_default_yaml_round_trips_through_flat_params():
    cfg = load_config(REPO / "config" / "sfs.yaml")
    assert cfg.masks.model == "FastSAM-s.pt" and cfg.masks.imgsz == 640
    assert [s.name for s in cfg.closed_set] == ["ade20k"]
    assert cfg.extra["qos.reliability"] == "best_effort"  # node-only keys are kept, not parsed
    again = PipelineConfig.from_params(cfg.to_params())
    assert again.to_params() == cfg.to_params()


def test_paper_yaml_has_two_segmenters():
    cfg = load_config(REPO / "config" / "paper.yaml")
    assert [s.name for s in cfg.closed_set] == ["coco", "ade20k"]
    assert cfg.closed_set[0].model == "shi-labs/oneformer_coco_swin_large"
    assert cfg.masks.model == "FastSAM-x.pt"


def test_relative_model_paths_resolve_against_the_yaml(tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "fastsam.pt").write_bytes(b"")
    yaml_file = tmp_path / "p.yaml"
    yaml_file.write_text("sfs_node:\n  ros__parameters:\n    masks: {model: ./m/fastsam.pt}\n")
    cfg = load_config(yaml_file)
    assert cfg.masks.model == str(tmp_path / "m" / "fastsam.pt")


def test_wildcard_section_applies(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text("/**:\n  ros__parameters:\n    device: cuda\nsfs_node:\n  ros__parameters:\n    masks: {conf: 0.2}\n")
    assert load_params(f) == {"device": "cuda", "masks.conf": 0.2}


@pytest.mark.parametrize(
    "overrides, param",
    [
        ({"masks.conf": -0.1}, "masks.conf"),
        ({"masks.imgsz": 600}, "masks.imgsz"),
        ({"masks.max_masks": 0}, "masks.max_masks"),
        ({"fusion.min_confidence": 1.5}, "fusion.min_confidence"),
        ({"device": "gpu"}, "device"),
        ({"closed_set.segmenters": []}, "closed_set.segmenters"),
        ({"masks.model": "/nonexistent/FastSAM-s.pt"}, "masks.model"),
        ({"closed_set.segmenters": ["x"], "closed_set.x.model": "./missing-dir"}, "closed_set.x.model"),
        ({"offline": True}, "masks.model"),  # FastSAM-s.pt cannot be downloaded offline
        ({"masks.conf": "high"}, "masks.conf"),
        ({"open_vocab.max_labels": -1}, "open_vocab.max_labels"),
        ({"fusion.fill_classes": ["road", 3]}, "fusion.fill_classes"),
        ({"open_vocab.vocabulary": {"coco": 1}}, "open_vocab.vocabulary"),
    ],
)
def test_bad_values_name_the_parameter(overrides, param):
    with pytest.raises(ConfigError) as err:
        load_config(None, overrides).validate()
    assert err.value.param == param
    assert param in str(err.value)


def test_string_lists_take_one_string_and_round_trip():
    cfg = load_config(None, {"fusion.fill_classes": "road", "open_vocab.vocabulary": "coco"})
    assert cfg.fusion.fill_classes == ["road"] and cfg.open_vocab.vocabulary == ["coco"]
    assert PipelineConfig().fusion.fill_classes == []
    cfg.fusion.fill_classes = ["road", "sky"]
    assert PipelineConfig.from_params(cfg.to_params()).fusion.fill_classes == ["road", "sky"]
    assert load_config(None, {"fusion.fill_classes": ""}).fusion.fill_classes == []


def test_file_without_node_section_is_rejected(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text("other_node:\n  ros__parameters: {a: 1}\n")
    with pytest.raises(ConfigError, match="sfs_node"):
        load_params(f)


def test_namespaced_sections_apply(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text("/**/sfs_node:\n  ros__parameters:\n    device: cuda\n/robot1/sfs_node:\n  ros__parameters:\n    masks: {conf: 0.3}\n")
    assert load_params(f) == {"device": "cuda", "masks.conf": 0.3}
