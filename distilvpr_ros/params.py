"""Every parameter of the localizer node, declared in one table.

The table gives name, default, description, range/choices and whether the
value may change while running.  :func:`declare_all` turns it into
``declare_parameter`` calls with descriptors (so ``ros2 param describe``
shows ranges); :func:`check` is the one validation used at start-up and by
the set-parameters callback.  ``config/localize.yaml`` and
``launch_args.py`` repeat these defaults; tests keep them equal.

No rclpy at import time: the launch file and the CLI import this module.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from distilvpr_core.errors import UserError

BACKENDS = ("tensorrt", "onnxruntime", "torch")


@dataclass(frozen=True)
class ParamSpec:
    name: str
    default: Any
    description: str
    lo: float | None = None          # inclusive range for numbers
    hi: float | None = None
    choices: tuple[str, ...] | None = None
    read_only: bool = False          # needs a restart to change


PARAMS: tuple[ParamSpec, ...] = (
    ParamSpec("map_path", "", "prior map directory (from 'distilvpr map build'); required",
              read_only=True),
    ParamSpec("model_path", "", "student model: .onnx for onnxruntime/tensorrt, .pt for torch; required",
              read_only=True),
    ParamSpec("backend", "onnxruntime", "inference backend", choices=BACKENDS, read_only=True),
    ParamSpec("engine_cache_dir", "", "TensorRT engine cache directory ('' = the Embedder's default)",
              read_only=True),
    ParamSpec("intra_op_threads", 0, "ONNX Runtime CPU threads (0 = one per physical core)",
              lo=0, hi=256, read_only=True),
    ParamSpec("compressed", False, "subscribe to image/compressed (jpeg/png) instead of image",
              read_only=True),
    ParamSpec("queue_depth", 1, "subscription queue depth; 1 drops frames instead of adding latency",
              lo=1, hi=100, read_only=True),
    ParamSpec("map_frame", "map", "frame_id of ~/candidates, ~/match_pose and ~/markers"),
    ParamSpec("top_k", 5, "candidates searched and published per query", lo=1, hi=100),
    ParamSpec("min_interval_s", 0.5, "keyframe gating: minimum seconds between queries",
              lo=0.0, hi=3600.0),
    ParamSpec("min_distance_m", 1.0, "keyframe gating: minimum metres travelled between queries "
              "(only with odometry)", lo=0.0, hi=10000.0),
    ParamSpec("score_threshold", 0.5, "accept a top-1 match only at or above this cosine score",
              lo=-1.0, hi=1.0),
    ParamSpec("exclude_recent_s", 30.0, "ignore map keyframes newer than query stamp minus this "
              "(loop closure against the current session)", lo=0.0, hi=1.0e7),
    ParamSpec("exclude_recent_n", 0, "ignore the N most recently added map keyframes", lo=0, hi=1_000_000),
    ParamSpec("consistency_n", 1, "accept only when the last N queries' top-1 agree (1 = off)",
              lo=1, hi=50),
    ParamSpec("consistency_radius_m", 5.0, "agreement radius for consistency_n, metres",
              lo=0.0, hi=10000.0),
    ParamSpec("odom_timeout_s", 1.0, "an image uses the odometry nearest its stamp if within this "
              "many seconds; otherwise none (no distance gating, not mapped)", lo=0.0, hi=3600.0),
    ParamSpec("online_mapping", False, "add queried keyframes with an odometry pose to the map "
              "(toggle at runtime with ~/set_mapping)"),
    ParamSpec("map_save_path", "", "where ~/save_map writes ('' = overwrite map_path)"),
    ParamSpec("loop_closure_include_score", True, "~/loop_closure is [t_query, t_match, score]; false "
              "sends [t_query, t_match], which stock LIO-SAM requires (it drops other sizes)"),
    ParamSpec("match_sigma_m", 1.0, "~/match_pose position std-dev at score 1, metres; "
              "divided by the score below 1", lo=1e-6, hi=1.0e4),
    ParamSpec("match_sigma_rad", 0.2, "~/match_pose orientation std-dev at score 1, radians",
              lo=1e-6, hi=10.0),
    ParamSpec("diagnostics_period_s", 1.0, "period of /diagnostics", lo=0.05, hi=3600.0, read_only=True),
    ParamSpec("log_throttle_s", 30.0, "a kind of bad message is logged at most once per this period",
              lo=0.0, hi=1.0e6),
)

SPECS: dict[str, ParamSpec] = {p.name: p for p in PARAMS}
DEFAULTS: dict[str, Any] = {p.name: p.default for p in PARAMS}


def check(name: str, value: Any) -> str | None:
    """Why ``value`` is invalid for parameter ``name`` (a message naming
    both), or None if it is fine."""
    spec = SPECS.get(name)
    if spec is None:
        return None  # not ours (e.g. use_sim_time)
    kind = type(spec.default)
    ok_type = isinstance(value, kind) and not (kind is not bool and isinstance(value, bool))
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        ok_type = True
    if not ok_type:
        return (f"parameter '{name}': expected {kind.__name__}, got {type(value).__name__} "
                f"{value!r}")
    if spec.choices is not None and value not in spec.choices:
        return f"parameter '{name}': expected one of {list(spec.choices)}, got {value!r}"
    if spec.lo is not None and not (spec.lo <= value <= spec.hi):
        return f"parameter '{name}': expected a value in [{spec.lo}, {spec.hi}], got {value!r}"
    return None


def check_startup(values: dict[str, Any]) -> None:
    """Start-up checks on the full set; raises UserError naming the parameter."""
    for name, value in values.items():
        why = check(name, value)
        if why:
            raise UserError(why)
    for name in ("map_path", "model_path"):
        if not values.get(name):
            raise UserError(f"parameter '{name}' is required: pass it with -p {name}:=PATH, "
                            "a params file, or the launch argument")


def declare_all(node: Any) -> dict[str, Any]:
    """Declare every parameter on ``node`` with its descriptor; return the values.

    Raises UserError naming the parameter when an override has the wrong type
    or is out of range (rclpy rejects it while declaring).
    """
    from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
    from rclpy.exceptions import ParameterException

    values = {}
    for p in PARAMS:
        desc = ParameterDescriptor(name=p.name, description=p.description, read_only=p.read_only)
        if p.choices:
            desc.additional_constraints = "one of: " + ", ".join(p.choices)
        if p.lo is not None and isinstance(p.default, float):
            desc.floating_point_range = [FloatingPointRange(from_value=float(p.lo), to_value=float(p.hi))]
        elif p.lo is not None:
            desc.integer_range = [IntegerRange(from_value=int(p.lo), to_value=int(p.hi), step=1)]
        try:
            values[p.name] = node.declare_parameter(p.name, p.default, desc).value
        except ParameterException as exc:
            hint = " (write 1.0, not 1)" if isinstance(p.default, float) else ""
            raise UserError(f"parameter '{p.name}': {exc}; expected {type(p.default).__name__}"
                            + (f" in [{p.lo}, {p.hi}]" if p.lo is not None else "") + hint) from None
    return values
