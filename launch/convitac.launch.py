"""Start convitac_node as a lifecycle node: parameter file, sensor preset, overrides.

    ros2 launch convitac_ros convitac.launch.py checkpoint:=/path/model.safetensors
    ros2 launch convitac_ros convitac.launch.py checkpoint:=demo sensor:=gelsight_mini \
        namespace:=left_hand camera_topic:=/wrist_cam/image_raw tactile_topic:=/gsmini/image_raw
    ros2 launch convitac_ros convitac.launch.py params_file:=my.yaml autostart:=false

An argument overrides the parameter file only when it is given. The rules live in
convitac_ros/ros/launch_arguments.py (tested without launch); this file only wires them.
"""

import os

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction, SetEnvironmentVariable
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode

from convitac_ros.ros.launch_arguments import ARGUMENTS, EXECUTABLE, launch_plan


def start_node(context, *args, **kwargs):
    """Resolve the argument values and return the environment and the node actions."""
    values = {name: LaunchConfiguration(name).perform(context) for name in ARGUMENTS}
    plan = launch_plan(values, os.environ)
    actions = [SetEnvironmentVariable(name, value) for name, value in plan.environment.items()]
    actions.append(LifecycleNode(
        package='convitac_ros', executable=EXECUTABLE, name=plan.name,
        namespace=plan.namespace, parameters=plan.parameters,
        ros_arguments=plan.ros_arguments, output='screen', emulate_tty=True))
    return actions


def generate_launch_description() -> LaunchDescription:
    """Declare the arguments; the node is made once their values are known."""
    declared = [DeclareLaunchArgument(name, default_value=default, description=text)
                for name, (default, text) in ARGUMENTS.items()]
    return LaunchDescription([*declared, OpaqueFunction(function=start_node)])
