"""The colcon-installed package: what CMakeLists.txt installs, and where."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytestmark = pytest.mark.ros


@pytest.fixture(scope="module")
def prefix(sfs_node_executable) -> Path:
    return sfs_node_executable.parents[2]


def test_share_holds_launch_config_and_manifest(prefix):
    share = prefix / "share" / "sfs_ros"
    for relative in ("package.xml", "launch/sfs.launch.py", "config/sfs.yaml", "config/sfs.rviz"):
        assert (share / relative).is_file(), relative
    assert (prefix / "share" / "ament_index" / "resource_index" / "packages" / "sfs_ros").is_file()


def test_executable_runs_this_interpreter_environment(sfs_node_executable):
    assert os.access(sfs_node_executable, os.X_OK)
    shebang = sfs_node_executable.read_text().splitlines()[0]
    assert shebang.startswith("#!") and Path(shebang[2:]).name.startswith("python")
    assert "from sfs_ros.node import run" in sfs_node_executable.read_text()


def test_both_python_packages_and_the_messages_are_installed(prefix, sfs_msgs):
    site_packages = next((prefix / "lib").glob("python3*/site-packages"))
    assert (site_packages / "sfs_ros" / "node.py").exists()
    assert (site_packages / "sfs_ros" / "msg" / "__init__.py").exists()
    assert (site_packages / "sfs_core" / "pipeline.py").exists()
    assert Path(sfs_msgs.__file__).is_relative_to(site_packages)  # the tests use the installed copy
    assert {"LabeledMask", "LabeledMaskArray", "LabelTable"} <= set(dir(sfs_msgs))
