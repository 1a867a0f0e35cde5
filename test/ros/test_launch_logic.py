"""Launch-argument handling, the launch file and the RViz configuration (no build needed)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

from sfs_core.config import ConfigError, load_config
from sfs_ros.launch_logic import ARGUMENTS, RVIZ_TOPICS, plan_launch, write_params_file

REPO = Path(__file__).resolve().parents[2]  # laid out like the installed share/sfs_ros (config/, launch/)


def test_every_argument_is_described():
    names = [a.name for a in ARGUMENTS]
    assert names == ["image", "params_file", "namespace", "use_rviz", "device", "open_vocab"]
    assert all(len(a.description) > 20 for a in ARGUMENTS)


def test_defaults_use_the_package_config_and_remap_both_image_topics():
    plan = plan_launch({}, REPO)
    expected = {k: v for k, v in load_config(REPO / "config" / "sfs.yaml").to_params().items() if v != []}
    assert plan.parameters == expected
    assert plan.remappings == [("image", "/camera/image_raw"), ("image/compressed", "/camera/image_raw/compressed")]
    assert (plan.namespace, plan.use_rviz, plan.rviz_remappings) == ("", False, [])
    assert plan.rviz_config == REPO / "config" / "sfs.rviz"


@pytest.mark.parametrize("text, enabled", [("true", True), ("False", False), ("1", True)])
def test_device_and_open_vocab_override_the_params_file(text, enabled):
    plan = plan_launch({"device": "cuda:1", "open_vocab": text, "image": "/cam/rgb"}, REPO)
    assert plan.parameters["device"] == "cuda:1"
    assert plan.parameters["open_vocab.enabled"] is enabled
    assert plan.remappings[0] == ("image", "/cam/rgb")


def test_empty_overrides_keep_the_params_file_values(tmp_path):
    params = tmp_path / "sfs.yaml"
    params.write_text("sfs_node:\n  ros__parameters:\n    device: cuda\n    masks: {conf: 0.25}\n")
    plan = plan_launch({"params_file": str(params), "device": " ", "open_vocab": ""}, REPO)
    assert plan.parameters["device"] == "cuda" and plan.parameters["masks.conf"] == 0.25


def test_namespace_reaches_node_and_rviz_topics():
    plan = plan_launch({"namespace": "/robot1/", "use_rviz": "true"}, REPO)
    assert plan.namespace == "robot1" and plan.use_rviz
    assert plan.rviz_remappings == [(t, "/robot1" + t) for t in RVIZ_TOPICS]


def test_relative_model_paths_resolve_against_the_params_file(tmp_path):
    params = tmp_path / "cfg" / "sfs.yaml"
    params.parent.mkdir()
    params.write_text("sfs_node:\n  ros__parameters:\n    masks: {model: ./models/FastSAM-s.pt}\n")
    plan = plan_launch({"params_file": str(params)}, REPO)
    assert plan.parameters["masks.model"] == str(tmp_path / "cfg" / "models" / "FastSAM-s.pt")


@pytest.mark.parametrize("values, message", [
    ({"use_rviz": "yes"}, "launch argument 'use_rviz'"),
    ({"open_vocab": "maybe"}, "launch argument 'open_vocab'"),
    ({"camera": "/x"}, "unknown launch arguments: camera"),
])
def test_bad_arguments_are_named(values, message):
    with pytest.raises(ValueError, match=message):
        plan_launch(values, REPO)


def test_params_file_without_node_section_is_rejected(tmp_path):
    params = tmp_path / "other.yaml"
    params.write_text("some_other_node:\n  ros__parameters: {x: 1}\n")
    with pytest.raises(ConfigError, match="sfs_node"):
        plan_launch({"params_file": str(params)}, REPO)


def test_written_params_file_reads_back_through_the_core(tmp_path):
    parameters = plan_launch({"device": "cuda:1"}, REPO).parameters
    path = write_params_file(parameters, tmp_path)
    assert {k: v for k, v in load_config(path).to_params().items() if v != []} == parameters


def test_written_params_file_reaches_a_namespaced_node_unchanged(tmp_path, ros_domain):
    """rcl itself parses the file: every value keeps its type ("" stays a string, not null)."""
    import rclpy
    from rclpy.context import Context
    from rclpy.node import Node

    parameters = plan_launch({"open_vocab": "true"}, REPO).parameters
    assert parameters["open_vocab.device"] == ""  # the value launch_ros's dict form would break
    path = write_params_file(parameters, tmp_path)
    context = Context()
    rclpy.init(args=["sfs_node", "--ros-args", "--params-file", str(path)], context=context, domain_id=ros_domain)
    try:
        node = Node("sfs_node", namespace="/robot1", context=context)
        overrides = {name: p.value for name, p in node._parameter_overrides.items()}
        node.destroy_node()
    finally:
        rclpy.shutdown(context=context)
    assert {k: list(v) if isinstance(v, (list, tuple)) else v for k, v in overrides.items()} == parameters


def test_launch_file_declares_the_arguments_through_launch_logic():
    tree = ast.parse((REPO / "launch" / "sfs.launch.py").read_text())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) for alias in node.names}
    functions = {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)}
    assert {"ARGUMENTS", "plan_launch", "write_params_file", "DeclareLaunchArgument", "Node"} <= imported
    assert "generate_launch_description" in functions


def test_rviz_config_shows_overlay_and_colour_images():
    config = yaml.safe_load((REPO / "config" / "sfs.rviz").read_text())
    displays = config["Visualization Manager"]["Displays"]
    images = [d for d in displays if d["Class"] == "rviz_default_plugins/Image" and d["Enabled"]]
    assert sorted(d["Topic"]["Value"] for d in images) == sorted(RVIZ_TOPICS)
    # The node publishes its images reliably; RViz may ask for either.
    assert {d["Topic"]["Reliability Policy"] for d in images} <= {"Reliable", "Best Effort"}
