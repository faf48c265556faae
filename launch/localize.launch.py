"""Launch the distilvpr localizer.

    ros2 launch distilvpr_ros localize.launch.py map:=MAP_DIR model:=student.onnx \
        image_topic:=/camera/image_raw

Arguments, defaults and descriptions come from distilvpr_ros/launch_args.py
(the same table the replay evaluation uses); the defaults equal the node's.
A node parameter is passed only when its argument differs from the default,
so values in params_file are not masked by empty defaults; a given argument
overrides the file.  Every topic can be remapped (odom_topic:=,
loop_closure_topic:=/lio_loop/loop_closure_detection for LIO-SAM, ...).

A node that exits with an error (a bad parameter exits 2) ends the launch
with a non-zero exit code, so scripts and systemd units see the failure;
respawn:=true restarts it instead.  Only launch / launch_ros API present
since Humble.
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, EmitEvent, OpaqueFunction, RegisterEventHandler
from launch.event_handlers import OnProcessExit
from launch.events import Shutdown
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from distilvpr_ros.launch_args import LAUNCH_ARGS, node_failed, overrides, parse_bool, parse_delay, remappings


def _on_exit(event, context):
    # launch's own return code is 1 only when an action raises; a Shutdown
    # event alone exits 0 and would hide the node's failure.
    failure = node_failed(event.returncode, context.is_shutdown)
    if failure:
        raise RuntimeError(failure)
    return [EmitEvent(event=Shutdown(reason="the localizer exited"))]


def _localizer(context):
    value = {a.name: LaunchConfiguration(a.name).perform(context) for a in LAUNCH_ARGS}
    params_file = value["params_file"] or os.path.join(
        get_package_share_directory("distilvpr_ros"), "config", "localize.yaml")
    respawn = parse_bool("respawn", value["respawn"])
    node = Node(
        package="distilvpr_ros",
        executable="localizer",
        name="localizer",
        namespace=value["namespace"],
        output="screen",
        emulate_tty=True,
        arguments=["--ros-args", "--log-level", value["log_level"]],
        remappings=remappings(value),
        parameters=[params_file, overrides(value)],  # later entries win
        respawn=respawn,
        respawn_delay=parse_delay(value["respawn_delay"]),
    )
    if respawn:
        return [node]
    return [node, RegisterEventHandler(OnProcessExit(target_action=node, on_exit=_on_exit))]


def generate_launch_description():
    return LaunchDescription(
        [DeclareLaunchArgument(a.name, default_value=a.default, description=a.description)
         for a in LAUNCH_ARGS] + [OpaqueFunction(function=_localizer)])
