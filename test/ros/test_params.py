"""Parameter declaration and validation on an in-process node (no build needed)."""

from __future__ import annotations

from pathlib import Path

import pytest
from rclpy.node import Node
from rclpy.parameter import Parameter

from sfs_core.config import ConfigError, PipelineConfig
from sfs_ros.params import (
    NODE_DEFAULTS,
    RUNTIME_THRESHOLDS,
    declare_parameters,
    params_file_dir,
    unmatched_section_warning,
)


@pytest.fixture
def make_node(ros_context):
    nodes = []

    def make(**overrides) -> Node:
        params = [Parameter(name.replace("__", "."), value=value) for name, value in overrides.items()]
        node = Node("sfs_node", namespace="/param_tests", context=ros_context, parameter_overrides=params)
        nodes.append(node)
        return node

    yield make
    for node in nodes:
        node.destroy_node()


def test_defaults_declare_every_pipeline_and_node_parameter(make_node, tmp_path):
    node = make_node()
    settings, config = declare_parameters(node, tmp_path)
    expected = set(PipelineConfig().to_params()) | set(NODE_DEFAULTS)
    rclpy_own = {"use_sim_time", "start_type_description_service"}
    assert set(node.list_parameters([], 0).names) - rclpy_own == expected
    assert config == PipelineConfig.from_params({}, base_dir=tmp_path)
    assert (settings.reliability, settings.depth, settings.compressed) == ("best_effort", 5, False)
    for name in expected:
        descriptor = node.describe_parameter(name)
        assert descriptor.description, name
        assert descriptor.read_only == (name not in RUNTIME_THRESHOLDS), name


def test_segmenters_follow_the_plugin_convention(make_node, tmp_path):
    node = make_node(closed_set__segmenters=["coco", "ade20k"], closed_set__coco__model="facebook/some-coco-model",
                     closed_set__coco__input_size=384)
    _, config = declare_parameters(node, tmp_path)
    assert [(s.name, s.model, s.input_size) for s in config.closed_set] == [
        ("coco", "facebook/some-coco-model", 384), ("ade20k", PipelineConfig().closed_set[0].model, 512)]
    assert "segmenter 'coco'" in node.describe_parameter("closed_set.coco.model").description


def test_fill_classes_is_a_string_array(make_node, tmp_path):
    node = make_node(fusion__fill_classes=["wall", "floor"])
    _, config = declare_parameters(node, tmp_path)
    assert config.fusion.fill_classes == ["wall", "floor"]
    assert node.get_parameter("fusion.fill_classes").type_ == Parameter.Type.STRING_ARRAY
    assert "unlabeled" in node.describe_parameter("fusion.fill_classes").description


def test_relative_model_paths_resolve_against_the_params_file_folder(make_node, tmp_path):
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "FastSAM-s.pt").touch()
    _, config = declare_parameters(make_node(masks__model="./models/FastSAM-s.pt"), tmp_path)
    assert config.masks.model == str(tmp_path / "models" / "FastSAM-s.pt")


@pytest.mark.parametrize("overrides, param, problem", [
    ({"masks__conf": -1.0}, "masks.conf", r"must be in \[0, 1\]"),
    ({"masks__conf": 1}, "masks.conf", "expected a floating-point number"),
    ({"masks__imgsz": 100}, "masks.imgsz", "multiple of 32"),
    ({"masks__model": "/nonexistent/FastSAM-s.pt"}, "masks.model", "not found"),
    ({"closed_set__segmenters": "ade20k"}, "closed_set.segmenters", "expected a list of strings"),
    ({"fusion__fill_classes": [1, 2]}, "fusion.fill_classes", "expected a list of strings"),
    ({"device": "gpu"}, "device", "expected cpu, cuda"),
    ({"qos__reliability": "sometimes"}, "qos.reliability", "expected one of best_effort, reliable"),
    ({"qos__depth": 0}, "qos.depth", "must be >= 1"),
    ({"diagnostics__period": 0.0}, "diagnostics.period", "must be positive"),
])
def test_bad_values_name_the_parameter(make_node, tmp_path, overrides, param, problem):
    with pytest.raises(ConfigError, match=problem) as raised:
        declare_parameters(make_node(**overrides), tmp_path)
    assert raised.value.param == param
    assert str(raised.value).startswith(f"parameter '{param}': ")


def test_unknown_parameters_are_reported(make_node, tmp_path, capfd):
    declare_parameters(make_node(masks__cof=0.3), tmp_path)
    assert "ignoring unknown parameter 'masks.cof'" in capfd.readouterr().err


@pytest.mark.parametrize("argv, folder", [
    (["sfs_node", "--ros-args", "--params-file", "/a/b/sfs.yaml"], Path("/a/b")),
    (["sfs_node", "--ros-args", "--params-file", "/a/x.yaml", "--params-file", "/c/y.yaml"], Path("/c")),
    (["sfs_node", "--params-file", "/a/x.yaml"], None),
    (["sfs_node", "--ros-args", "-p", "x:=1", "--", "--params-file", "/a/x.yaml"], None),
])
def test_params_file_dir(argv, folder):
    assert params_file_dir(argv) == folder


@pytest.mark.parametrize("key, fully_qualified_name, warns", [
    ("sfs_node", "/robot1/sfs_node", True),
    ("/sfs_node", "/robot1/sfs_node", True),
    ("sfs_node", "/sfs_node", False),
    ("/**", "/robot1/sfs_node", False),
    ("/**/sfs_node", "/robot1/sfs_node", False),
])
def test_plain_section_for_a_namespaced_node_is_flagged(tmp_path, key, fully_qualified_name, warns):
    params = tmp_path / "sfs.yaml"
    params.write_text(f"{key}:\n  ros__parameters:\n    device: cpu\n")
    warning = unmatched_section_warning(["sfs_node", "--ros-args", "--params-file", str(params)], fully_qualified_name)
    assert bool(warning) == warns
    if warns:
        assert "NOT used" in warning and fully_qualified_name in warning
