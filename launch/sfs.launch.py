"""Start sfs_node (and optionally RViz).

    ros2 launch sfs_ros sfs.launch.py image:=/camera/color/image_raw
    ros2 launch sfs_ros sfs.launch.py params_file:=/path/to/sfs.yaml namespace:=robot1 use_rviz:=true device:=cuda

`ros2 launch sfs_ros sfs.launch.py --show-args` lists the arguments. The argument handling lives in
sfs_ros.launch_logic, where it is unit-tested.
"""

import tempfile

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from sfs_ros.launch_logic import ARGUMENTS, plan_launch, write_params_file


def _actions(context):
    values = {arg.name: LaunchConfiguration(arg.name).perform(context) for arg in ARGUMENTS}
    plan = plan_launch(values, get_package_share_directory("sfs_ros"))
    params_file = write_params_file(plan.parameters, tempfile.mkdtemp(prefix="sfs_launch_"))
    actions = [
        Node(
            package="sfs_ros", executable="sfs_node", name="sfs_node", namespace=plan.namespace,
            parameters=[str(params_file)], remappings=plan.remappings, output="screen", emulate_tty=True,
        )
    ]
    if plan.use_rviz:
        actions.append(Node(
            package="rviz2", executable="rviz2", name="sfs_rviz", arguments=["-d", str(plan.rviz_config)],
            remappings=plan.rviz_remappings, output="screen",
        ))
    return actions


def generate_launch_description():
    return LaunchDescription(
        [DeclareLaunchArgument(arg.name, default_value=arg.default, description=arg.description) for arg in ARGUMENTS]
        + [OpaqueFunction(function=_actions)]
    )
