"""The localizer's launch arguments in one table: name, default, description.

Imported by ``launch/localize.launch.py`` (which declares one
DeclareLaunchArgument per row) and by the replay evaluation, which starts
the node with the same configuration.  A row that sets a node parameter
takes that setting's default and description from
:class:`distilvpr_core.localize.settings.LocalizerSettings`, so launch and
node defaults cannot drift; the others are launch-only.  No ROS imports here.
"""
from __future__ import annotations

from dataclasses import dataclass

from distilvpr_core.localize.settings import SPECS


@dataclass(frozen=True)
class LaunchArg:
    name: str
    default: str
    description: str
    param: str | None = None   # node parameter set from this argument


def _from_setting(name: str, param: str) -> LaunchArg:
    spec = SPECS[param]
    default = str(spec.default).lower() if isinstance(spec.default, bool) else str(spec.default)
    extra = f": {', '.join(spec.choices)}" if spec.choices else ""
    return LaunchArg(name, default, spec.description + extra, param)


LAUNCH_ARGS: tuple[LaunchArg, ...] = (
    _from_setting("map", "map_path"),
    _from_setting("model", "model_path"),
    _from_setting("backend", "backend"),
    _from_setting("engine_cache", "engine_cache_dir"),
    LaunchArg("image_topic", "image", "camera topic, remapped onto the node's 'image' "
              "('<image_topic>/compressed' with compressed:=true)"),
    _from_setting("compressed", "compressed"),
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
    """The node's default params file, config/localize.yaml (checkout or installed share)."""
    from .share import share_file
    return str(share_file("config/localize.yaml"))


def _absolute(ns: str) -> str:
    return ns if ns.startswith("/") else "/" + ns


def _param_literal(value: str) -> str:
    # -p values are YAML: keep '' and paths as strings.
    return "''" if value == "" else value
