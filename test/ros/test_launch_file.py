"""launch/sfs.launch.py run by launch_testing: the node starts with the launch arguments applied
and exits cleanly with the launch.

Needs launch_ros and launch_testing (a full ROS 2 install); neither is installable from PyPI, so
on pip-only machines this module is reported as skipped. The argument handling itself is tested
everywhere in test_launch_logic.py.
"""

from __future__ import annotations

import hashlib
import os
import unittest
from pathlib import Path

import pytest

WHY = "needs launch_ros and launch_testing from a full ROS 2 install (not on PyPI); see test_launch_logic.py"
pytest.importorskip("launch_ros", reason=WHY)
pytest.importorskip("launch_testing", reason=WHY)

import launch  # noqa: E402
import launch_testing.actions  # noqa: E402
import launch_testing.asserts  # noqa: E402
from ament_index_python.packages import get_package_share_directory  # noqa: E402
from launch.launch_description_sources import PythonLaunchDescriptionSource  # noqa: E402

pytestmark = [pytest.mark.ros, pytest.mark.slow]
NAMESPACE = "launch_test"


def random_model_config() -> Path:
    """The random-weight models of test/conftest.py's ``random_models`` fixture (same cache)."""
    from sfs_core import random_models

    key = hashlib.sha256(Path(random_models.__file__).read_bytes()).hexdigest()[:12]
    cache = Path(os.environ.get("SFS_TEST_CACHE", Path(__file__).resolve().parents[2] / ".cache" / "test"))
    return random_models.init_random(cache / f"random-models-{key}")


@pytest.mark.launch_test
def generate_test_description():
    launch_file = Path(get_package_share_directory("sfs_ros")) / "launch" / "sfs.launch.py"
    arguments = {
        "params_file": str(random_model_config()),
        "namespace": NAMESPACE,
        "image": f"/{NAMESPACE}/camera",
        "device": "cpu",
        "open_vocab": "false",
        "use_rviz": "false",
    }
    return launch.LaunchDescription([
        launch.actions.IncludeLaunchDescription(PythonLaunchDescriptionSource(str(launch_file)),
                                                launch_arguments=arguments.items()),
        launch_testing.actions.ReadyToTest(),
    ])


class TestNodeComesUp(unittest.TestCase):
    def test_node_is_ready_on_the_remapped_topic(self, proc_output):
        proc_output.assertWaitFor(f"ready: /{NAMESPACE}/camera -> /{NAMESPACE}/sfs_node/", timeout=300)


@launch_testing.post_shutdown_test()
class TestShutdown(unittest.TestCase):
    def test_exit_codes(self, proc_info):
        launch_testing.asserts.assertExitCodes(proc_info)
