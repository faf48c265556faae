"""The localizer's launch arguments in one table: name, default, description.

Imported by ``launch/localize.launch.py`` (which declares one
DeclareLaunchArgument per row) and by the replay evaluation and tests, which
start the node with the same configuration through :func:`node_arguments`.
A row that sets a node parameter takes that setting's default and
description from :class:`distilvpr_core.localize.settings.LocalizerSettings`,
so launch and node defaults cannot drift; a row with ``remap`` renames one of
the node's topics; the others are launch-only.  No ROS imports here.
"""
from __future__ import annotations

from dataclasses import dataclass

from distilvpr_core.localize.settings import SPECS


@dataclass(frozen=True)
class LaunchArg:
    """One row of the launch-argument table: name, default and description as strings, and the node
    parameter it sets or the node topic it remaps (at most one of the two; neither: launch-only)."""
    name: str
    default: str
    description: str
    param: str | None = None   # node parameter set from this argument
    remap: str | None = None   # node topic name remapped to this argument's value


def _from_setting(name: str, param: str) -> LaunchArg:
    spec = SPECS[param]
    default = str(spec.default).lower() if isinstance(spec.default, bool) else str(spec.default)
    extra = f": {', '.join(spec.choices)}" if spec.choices else ""
    return LaunchArg(name, default, spec.description + extra, param)


def _topic(name: str, topic: str, what: str) -> LaunchArg:
    return LaunchArg(name, topic, f"topic of {what} (the node's '{topic}' is remapped to it)", remap=topic)


LAUNCH_ARGS: tuple[LaunchArg, ...] = (
    _from_setting("map", "map_path"),
    _from_setting("model", "model_path"),
    _from_setting("backend", "backend"),
    _from_setting("engine_cache", "engine_cache_dir"),
    LaunchArg("image_topic", "image", "camera topic, remapped onto the node's 'image' "
              "('<image_topic>/compressed' with compressed:=true)"),
    _from_setting("compressed", "compressed"),
    LaunchArg("use_sim_time", "false", "true: stamps and timers follow /clock (replaying a bag with "
              "'ros2 bag play --clock'); the node warns once if no /clock arrives", param="use_sim_time"),
    _topic("odom_topic", "odom", "the odometry input (nav_msgs/Odometry)"),
    _topic("candidates_topic", "~/candidates", "the scored candidates (sensor_msgs/PointCloud2)"),
    _topic("loop_closure_topic", "~/loop_closure", "the accepted loop closures (std_msgs/Float64MultiArray "
           "[t_query, t_match]); LIO-SAM listens on /lio_loop/loop_closure_detection"),
    _from_setting("loop_closure_scope", "loop_closure_scope"),
    _topic("match_pose_topic", "~/match_pose", "the accepted match pose "
           "(geometry_msgs/PoseWithCovarianceStamped)"),
    _topic("pose_topic", "~/pose", "the metric robot pose of each localized frame "
           "(geometry_msgs/PoseWithCovarianceStamped, map frame)"),
    _from_setting("publish_tf", "publish_tf"),
    _topic("markers_topic", "~/markers", "the RViz markers (visualization_msgs/MarkerArray)"),
    _topic("diagnostics_topic", "/diagnostics", "the node's health (diagnostic_msgs/DiagnosticArray)"),
    LaunchArg("namespace", "", "namespace of the node (its topics are relative)"),
    LaunchArg("params_file", "", "YAML parameters file ('' = the installed config/localize.yaml); "
              "launch arguments given on the command line override it"),
    LaunchArg("log_level", "info", "node log level: debug, info, warn, error or fatal"),
    LaunchArg("respawn", "false", "true: restart the node whenever it exits (after respawn_delay; "
              "doubled after each configuration error, exit code 2, up to 60 s); "
              "false: a node that exits with an error (e.g. code 2, a bad parameter) ends the "
              "launch with a non-zero exit code"),
    LaunchArg("respawn_delay", "2.0", "seconds to wait before a respawn (the first one after a "
              "configuration error)"),
    LaunchArg("lifecycle", "false", "true: start the managed (lifecycle) node: configure loads map and "
              "model, activate opens the topics (ros2 lifecycle set /localizer ...)"),
    LaunchArg("autostart", "true", "with lifecycle:=true: configure and activate at start, as nav2's "
              "autostart; false: wait for a lifecycle manager"),
    LaunchArg("rviz", "false", "true: also start rviz2 with the package's view (camera, candidates, "
              "loop-closure link, matched keyframe, metric pose)"),
    LaunchArg("rviz_config", "", "rviz2 config file ('' = the installed config/distilvpr.rviz)"),
)

#: Exit code of the node on a configuration error (localizer.EXIT_CONFIG; docs/node.md).
EXIT_CONFIG = 2
#: Longest wait between respawns after configuration errors, seconds.
RESPAWN_MAX_DELAY_S = 60.0

BY_NAME: dict[str, LaunchArg] = {a.name: a for a in LAUNCH_ARGS}
#: Arguments that take true/false.
BOOL_ARGS = frozenset(a.name for a in LAUNCH_ARGS if a.default in ("true", "false"))


def parse_bool(name: str, text: str) -> bool:
    """``true``/``false`` (any case) -> bool; ValueError naming the argument otherwise."""
    if text.lower() not in ("true", "false"):
        raise ValueError(f"launch argument {name}:={text!r}: expected true or false")
    return text.lower() == "true"


def parse_delay(text: str) -> float:
    """respawn_delay -> seconds >= 0; ValueError naming the argument otherwise."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0.0:
        raise ValueError(f"launch argument respawn_delay:={text!r}: expected seconds >= 0")
    return value


def respawn_after(returncode: int | None, config_failures: int, delay_s: float) -> tuple[float, int]:
    """(seconds to wait before the next start, configuration failures so far).

    A configuration error (exit :data:`EXIT_CONFIG`) will not fix itself:
    each one in a row doubles the wait (``delay_s``, 2x, 4x, ... up to
    :data:`RESPAWN_MAX_DELAY_S`) instead of restarting every ``delay_s``
    forever.  Any other exit (a crash) restarts after ``delay_s`` and resets
    the count."""
    if returncode != EXIT_CONFIG:
        return delay_s, 0
    return min(delay_s * 2.0 ** config_failures, max(RESPAWN_MAX_DELAY_S, delay_s)), config_failures + 1


def overrides(values: dict[str, str]) -> dict[str, object]:
    """Node parameters set by launch arguments that differ from their default
    (so values in the params file are not masked); booleans parsed."""
    out: dict[str, object] = {}
    for a in LAUNCH_ARGS:
        if a.param and values[a.name] != a.default:
            out[a.param] = parse_bool(a.name, values[a.name]) if a.name in BOOL_ARGS else values[a.name]
    return out


def remappings(values: dict[str, str]) -> list[tuple[str, str]]:
    """(from, to) topic remappings: the camera always, the others when changed."""
    topic = values["image_topic"]
    out = [("image", topic), ("image/compressed", topic + "/compressed")]
    out += [(a.remap, values[a.name]) for a in LAUNCH_ARGS if a.remap and values[a.name] != a.default]
    return out


def node_arguments(values: dict[str, str] | None = None) -> list[str]:
    """``--ros-args`` command-line arguments equivalent to launching with
    ``values`` (launch argument name -> string; missing ones take their
    default).  For starting the node as a plain process (tests, replay)."""
    vals = {a.name: a.default for a in LAUNCH_ARGS}
    vals.update(values or {})
    unknown = sorted(set(vals) - set(BY_NAME))
    if unknown:
        raise ValueError(f"unknown launch argument(s) {unknown}; valid: {sorted(BY_NAME)}")
    out = ["--ros-args", "--log-level", vals["log_level"]]
    out += ["--params-file", vals["params_file"] or default_params_file()]
    if vals["namespace"]:
        out += ["-r", f"__ns:={_absolute(vals['namespace'])}"]
    for src, dst in remappings(vals):
        if src != dst:
            out += ["-r", f"{src}:={dst}"]
    for name, value in overrides(vals).items():
        literal = str(value).lower() if isinstance(value, bool) else _param_literal(str(value))
        out += ["-p", f"{name}:={literal}"]
    return out


def default_params_file() -> str:
    """The node's default params file, config/localize.yaml (checkout or installed share)."""
    from .share import share_file
    return str(share_file("config/localize.yaml"))


def _absolute(ns: str) -> str:
    return ns if ns.startswith("/") else "/" + ns


def _param_literal(value: str) -> str:
    # -p values are YAML: keep '' and paths as strings.
    return "''" if value == "" else value


def node_failed(returncode: int | None, launch_shutting_down: bool) -> str | None:
    """The launch file's verdict on the node's exit: an error message that
    ends ``ros2 launch`` with a non-zero code, or None for a clean stop (exit
    0, or any exit while launch itself is shutting down, e.g. after Ctrl-C)."""
    if returncode == 0 or launch_shutting_down:
        return None
    hint = " (2 = a start-up error: see the fatal line above)" if returncode == 2 else ""
    return (f"the localizer exited with code {returncode}{hint}; stopping the launch "
            "(respawn:=true restarts it instead)")
