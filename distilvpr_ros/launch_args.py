"""The localizer's launch arguments in one table: name, default, description.

Imported by ``launch/localize.launch.py`` (which declares one
DeclareLaunchArgument per row) and by the replay evaluation, which starts
the node with the same configuration.  ``param`` names the node parameter a
row sets (None for launch-only rows); defaults equal the node's
(``params.DEFAULTS``), which the tests check.  No ROS imports here.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LaunchArg:
    name: str
    default: str
    description: str
    param: str | None = None   # node parameter set from this argument


LAUNCH_ARGS: tuple[LaunchArg, ...] = (
    LaunchArg("map", "", "prior map directory (from 'distilvpr map build'); required", "map_path"),
    LaunchArg("model", "", "student model: .onnx for onnxruntime/tensorrt, .pt for torch; required",
              "model_path"),
    LaunchArg("backend", "onnxruntime", "inference backend: tensorrt, onnxruntime or torch", "backend"),
    LaunchArg("engine_cache", "", "TensorRT engine cache directory ('' = the Embedder's default)",
              "engine_cache_dir"),
    LaunchArg("image_topic", "image", "camera topic, remapped onto the node's 'image' "
              "('<image_topic>/compressed' with compressed:=true)"),
    LaunchArg("compressed", "false", "subscribe to <image_topic>/compressed (jpeg/png) instead of raw",
              "compressed"),
    LaunchArg("namespace", "", "namespace of the node (its topics are relative)"),
    LaunchArg("params_file", "", "YAML parameters file ('' = the installed config/localize.yaml); "
              "launch arguments given on the command line override it"),
    LaunchArg("log_level", "info", "node log level: debug, info, warn, error or fatal"),
)

BY_NAME: dict[str, LaunchArg] = {a.name: a for a in LAUNCH_ARGS}


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
    topic = vals["image_topic"]
    if topic != "image":
        out += ["-r", f"image:={topic}", "-r", f"image/compressed:={topic}/compressed"]
    # Like the launch file: only arguments that differ from the default
    # override the params file.
    for a in LAUNCH_ARGS:
        if a.param and vals[a.name] != a.default:
            out += ["-p", f"{a.param}:={_param_literal(vals[a.name])}"]
    return out


def default_params_file() -> str:
    """The installed share/distilvpr_ros/config/localize.yaml, or the source
    tree's config/localize.yaml when running from a checkout."""
    from pathlib import Path
    source = Path(__file__).resolve().parent.parent / "config" / "localize.yaml"
    if source.is_file():
        return str(source)
    from ament_index_python.packages import get_package_share_directory
    return str(Path(get_package_share_directory("distilvpr_ros")) / "config" / "localize.yaml")


def _absolute(ns: str) -> str:
    return ns if ns.startswith("/") else "/" + ns


def _param_literal(value: str) -> str:
    # -p values are YAML: keep '' and paths as strings.
    return "''" if value == "" else value
