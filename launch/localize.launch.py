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
respawn:=true restarts it instead, waiting respawn_delay, doubled after each
configuration error in a row (launch's own respawn has a fixed delay, so the
restart is done here).  lifecycle:=true starts the managed node
(autostart:=true configures and activates it); rviz:=true adds rviz2.
Output is not a tty (no emulate_tty): redirected logs and journald get no
colour codes.  Only launch / launch_ros API present since Humble.
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import (DeclareLaunchArgument, EmitEvent, LogInfo, OpaqueFunction, RegisterEventHandler,
                            TimerAction)
from launch.event_handlers import OnProcessExit
from launch.events import Shutdown
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from distilvpr_ros.launch_args import (LAUNCH_ARGS, node_failed, overrides, parse_bool, parse_delay, remappings,
                                       respawn_after)


def _on_exit(event, context):
    # launch's own return code is 1 only when an action raises; a Shutdown
    # event alone exits 0 and would hide the node's failure.
    failure = node_failed(event.returncode, context.is_shutdown)
    if failure:
        raise RuntimeError(failure)
    return [EmitEvent(event=Shutdown(reason="the localizer exited"))]


def _node(value, share, config_failures=0):
    """The localizer action and the handler of its exit (respawn or end the launch)."""
    params_file = value["params_file"] or os.path.join(share, "config", "localize.yaml")
    lifecycle = parse_bool("lifecycle", value["lifecycle"])
    extra = {"autostart": parse_bool("autostart", value["autostart"])} if lifecycle else {}
    node = Node(
        package="distilvpr_ros",
        executable="lifecycle_localizer" if lifecycle else "localizer",
        name="localizer",
        namespace=value["namespace"],
        output="screen",
        arguments=["--ros-args", "--log-level", value["log_level"]],
        remappings=remappings(value),
        parameters=[params_file, {**overrides(value), **extra}],  # later entries win
    )
    base = parse_delay(value["respawn_delay"])
    if not parse_bool("respawn", value["respawn"]):
        return [node, RegisterEventHandler(OnProcessExit(target_action=node, on_exit=_on_exit))]

    def respawn(event, context):
        if context.is_shutdown:
            return None
        delay, failures = respawn_after(event.returncode, config_failures, base)
        return [LogInfo(msg=f"the localizer exited with code {event.returncode}; restarting in {delay:g} s"),
                TimerAction(period=delay, actions=_node(value, share, failures))]
    return [node, RegisterEventHandler(OnProcessExit(target_action=node, on_exit=respawn))]


def _launch(context):
    value = {a.name: LaunchConfiguration(a.name).perform(context) for a in LAUNCH_ARGS}
    share = get_package_share_directory("distilvpr_ros")
    actions = _node(value, share)
    if parse_bool("rviz", value["rviz"]):
        config = value["rviz_config"] or os.path.join(share, "config", "distilvpr.rviz")
        actions.append(Node(package="rviz2", executable="rviz2", name="rviz2", arguments=["-d", config],
                            output="screen"))
    return actions


def generate_launch_description():
    return LaunchDescription(
        [DeclareLaunchArgument(a.name, default_value=a.default, description=a.description)
         for a in LAUNCH_ARGS] + [OpaqueFunction(function=_launch)])
