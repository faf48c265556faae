"""Launch the distilvpr localizer.

    ros2 launch distilvpr_ros localize.launch.py map:=MAP_DIR model:=student.onnx \
        image_topic:=/camera/image_raw

Arguments, defaults and descriptions come from distilvpr_ros/launch_args.py
(the same table the replay evaluation uses); the defaults equal the node's.
A node parameter is passed only when its argument differs from the default,
so values in params_file are not masked by empty defaults; a given argument
overrides the file.  Only launch / launch_ros API present since Humble.
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from distilvpr_ros.launch_args import LAUNCH_ARGS


def _parse(param, text):
    # The only non-string parameter set from a launch argument is 'compressed'.
    if param == "compressed":
        if text.lower() not in ("true", "false"):
            raise ValueError(f"launch argument compressed:={text!r}: expected true or false")
        return text.lower() == "true"
    return text


def _localizer(context):
    value = {a.name: LaunchConfiguration(a.name).perform(context) for a in LAUNCH_ARGS}
    params_file = value["params_file"] or os.path.join(
        get_package_share_directory("distilvpr_ros"), "config", "localize.yaml")
    overrides = {a.param: _parse(a.param, value[a.name])
                 for a in LAUNCH_ARGS if a.param and value[a.name] != a.default}
    topic = value["image_topic"]
    return [Node(
        package="distilvpr_ros",
        executable="localizer",
        name="localizer",
        namespace=value["namespace"],
        output="screen",
        emulate_tty=True,
        arguments=["--ros-args", "--log-level", value["log_level"]],
        remappings=[("image", topic), ("image/compressed", topic + "/compressed")],
        parameters=[params_file, overrides],  # later entries win
    )]


def generate_launch_description():
    return LaunchDescription(
        [DeclareLaunchArgument(a.name, default_value=a.default, description=a.description)
         for a in LAUNCH_ARGS] + [OpaqueFunction(function=_localizer)])
