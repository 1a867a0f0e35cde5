"""Fixtures for the ROS 2 tests: a private ROS domain, the installed package, a probe node and
``sfs_node`` processes.

Tests marked ``ros`` need the colcon-built package (``scripts/build_ros.sh && source
install/setup.bash``). When its messages cannot be imported they FAIL with that instruction:
CI always builds first, so a missing build is an error, never a reason to skip.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from ros_helpers import NodeProcess, RosProbe

BUILD_HINT = "build and source the ROS package first: scripts/build_ros.sh && source install/setup.bash"
#: Environment that keeps test traffic on this machine and node output unbuffered and plain.
_ROS_ENV = {"ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST", "PYTHONUNBUFFERED": "1", "RCUTILS_COLORIZED_OUTPUT": "0"}


@pytest.fixture(scope="session")
def ros_domain() -> Iterator[int]:
    """A ROS domain id no other process on this machine uses (for the whole session)."""
    from domain_coordinator import domain_id

    with domain_id() as domain:
        saved = {k: os.environ.get(k) for k in ("ROS_DOMAIN_ID", *_ROS_ENV)}
        os.environ.update(ROS_DOMAIN_ID=str(domain), **_ROS_ENV)
        yield domain
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope="session")
def ros_context(ros_domain):
    """An initialised rclpy context of its own (the default context stays untouched)."""
    import rclpy
    from rclpy.context import Context

    context = Context()
    rclpy.init(context=context, domain_id=ros_domain)
    yield context
    rclpy.try_shutdown(context=context)


@pytest.fixture(scope="session")
def sfs_msgs():
    """``sfs_ros.msg`` of the installed package."""
    try:
        import sfs_ros.msg
    except ImportError as exc:
        pytest.fail(f"cannot import sfs_ros.msg ({exc}); {BUILD_HINT}", pytrace=False)
    return sfs_ros.msg


@pytest.fixture(scope="session")
def sfs_node_executable(sfs_msgs) -> Path:
    """The installed ``lib/sfs_ros/sfs_node``."""
    from ament_index_python.packages import PackageNotFoundError, get_package_prefix

    try:
        executable = Path(get_package_prefix("sfs_ros")) / "lib" / "sfs_ros" / "sfs_node"
    except (PackageNotFoundError, LookupError) as exc:
        pytest.fail(f"the sfs_ros package is not on AMENT_PREFIX_PATH ({exc}); {BUILD_HINT}", pytrace=False)
    if not os.access(executable, os.X_OK):
        pytest.fail(f"{executable} is missing or not executable; {BUILD_HINT}", pytrace=False)
    return executable


@pytest.fixture(scope="session")
def probe(ros_context) -> Iterator[RosProbe]:
    """The in-process test node that publishes frames and listens to the outputs."""
    ros_probe = RosProbe(ros_context)
    yield ros_probe
    ros_probe.close()


@pytest.fixture(scope="session")
def start_sfs_node(sfs_node_executable, ros_domain, tmp_path_factory) -> Iterator:
    """``start(*ros_args) -> NodeProcess`` (``--ros-args`` is added); every process started is
    killed at the end of the session if a test left it running."""
    started: list[NodeProcess] = []

    def start(*ros_args: str) -> NodeProcess:
        log = tmp_path_factory.mktemp("sfs_node") / "node.log"
        process = NodeProcess(sfs_node_executable, list(ros_args), dict(os.environ), log)
        started.append(process)
        return process

    yield start
    for process in started:
        process.close()


@pytest.fixture
def run_sfs_node(start_sfs_node) -> Iterator:
    """Like ``start_sfs_node``, for one test: its processes are killed when the test ends."""
    started: list[NodeProcess] = []

    def start(*ros_args: str) -> NodeProcess:
        started.append(start_sfs_node(*ros_args))
        return started[-1]

    yield start
    for process in started:
        process.close()


@pytest.fixture(scope="session")
def photo_frames(photos) -> list[np.ndarray]:
    """The ultralytics sample photos as 640x480 RGB frames."""
    return [cv2.resize(cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB), (640, 480)) for p in photos]


@pytest.fixture(scope="session")
def any_namespace_config(random_config, tmp_path_factory) -> Path:
    """The random-model params file keyed '/**:' (any node), so that it applies in a namespace."""
    sections = yaml.safe_load(random_config.read_text())
    path = tmp_path_factory.mktemp("params") / "sfs.yaml"
    path.write_text(yaml.safe_dump({"/**": sections["sfs_node"]}))
    return path
