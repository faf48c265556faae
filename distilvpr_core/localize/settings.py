"""Every setting of the localizer, typed, with ranges and descriptions, in one class.

:class:`LocalizerSettings` is the single source: the ROS node declares one
parameter per field, the launch arguments take their defaults and
descriptions from it (both in the ROS layer),
``config/localize.yaml`` repeats the defaults (a test keeps them equal), and
the replay evaluation builds the same object from the params file and
``--node-param`` overrides, so the offline path runs with the node's exact
settings.  :func:`check` is the one validation used at start-up, by the
node's set-parameters callback and here.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from ..foundation.errors import UserError, short_repr
from ..foundation.safe_yaml import load_yaml, read_yaml_file
from ..infer import BACKENDS


@dataclass(frozen=True)
class SettingSpec:
    """One setting: name, default, description, inclusive range or choices,
    and whether changing it needs a restart (``read_only``)."""
    name: str
    default: Any
    description: str
    lo: float | None = None
    hi: float | None = None
    choices: tuple[str, ...] | None = None
    read_only: bool = False


def _s(default: Any, description: str, lo: float | None = None, hi: float | None = None,
       choices: tuple[str, ...] | None = None, read_only: bool = False) -> Any:
    meta = {"description": description, "lo": lo, "hi": hi, "choices": choices, "read_only": read_only}
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class LocalizerSettings:
    """The localizer's settings (units in the names: ``_s`` seconds, ``_m`` metres)."""
    map_path: str = _s("", "prior map directory (from 'distilvpr map build'); required", read_only=True)
    model_path: str = _s("", "student model: .onnx for onnxruntime/tensorrt, .pt for torch; required",
                         read_only=True)
    backend: str = _s("onnxruntime", "inference backend", choices=BACKENDS, read_only=True)
    engine_cache_dir: str = _s("", "TensorRT engine cache directory ('' = the Embedder's default)",
                               read_only=True)
    intra_op_threads: int = _s(0, "ONNX Runtime CPU threads (0 = one per physical core)",
                               lo=0, hi=256, read_only=True)
    compressed: bool = _s(False, "subscribe to image/compressed (jpeg/png) instead of image",
                          read_only=True)
    queue_depth: int = _s(1, "subscription queue depth; 1 drops frames instead of adding latency",
                          lo=1, hi=100, read_only=True)
    map_frame: str = _s("map", "frame_id of ~/candidates, ~/match_pose and ~/markers")
    top_k: int = _s(5, "candidates searched and published per query", lo=1, hi=100)
    min_interval_s: float = _s(0.5, "keyframe gating: minimum seconds between queries", lo=0.0, hi=3600.0)
    min_distance_m: float = _s(1.0, "keyframe gating: minimum metres travelled between queries "
                               "(only with odometry)", lo=0.0, hi=10000.0)
    score_threshold: float = _s(0.5, "accept a top-1 match only at or above this cosine score",
                                lo=-1.0, hi=1.0)
    exclude_recent_s: float = _s(30.0, "ignore map keyframes newer than query stamp minus this "
                                 "(loop closure against the current session)", lo=0.0, hi=1.0e7)
    exclude_recent_n: int = _s(0, "ignore the N most recently added map keyframes", lo=0, hi=1_000_000)
    consistency_n: int = _s(1, "accept only when the last N queries' top-1 agree (1 = off)", lo=1, hi=50)
    consistency_radius_m: float = _s(5.0, "agreement radius for consistency_n, metres", lo=0.0, hi=10000.0)
    sequence_n: int = _s(1, "sequence score over the last N queries: the share of consecutive pairs "
                         "whose top-1 map keyframes move like the odometry (distance within "
                         "sequence_tolerance_m, map order monotonic); needs odometry; 1 = off", lo=1, hi=50)
    sequence_tolerance_m: float = _s(5.0, "sequence score: |map step - odometry step| allowed, metres",
                                     lo=0.0, hi=10000.0)
    sequence_min_score: float = _s(1.0, "accept only when the sequence score is at least this "
                                   "(with sequence_n > 1)", lo=0.0, hi=1.0)
    verify: bool = _s(True, "geometric verification: local features + RANSAC (PnP when the map "
                      "stores 3D points, else the essential matrix) of the top candidates against the "
                      "map's stored features (a map without features: off, with one warning)")
    verify_top_k: int = _s(3, "candidates verified per query, best first (stopping at one with twice "
                           "verify_min_inliers); the one with most inliers becomes the match", lo=1, hi=100)
    verify_min_inliers: int = _s(10, "accept only with at least this many RANSAC inliers", lo=5, hi=100000)
    verify_min_inlier_ratio: float = _s(0.0, "accept only with inliers / putative matches at least this",
                                        lo=0.0, hi=1.0)
    verify_ransac_px: float = _s(1.0, "RANSAC inlier threshold, pixels of the camera image",
                                 lo=0.05, hi=50.0)
    verify_max_features: int = _s(300, "local features extracted from each query", lo=5, hi=10000)
    local_features: str = _s("map", "local feature kind of the queries: map = the kind the map stores; "
                             "orb, sift, learned or patch must equal the map's (a map of another kind is refused "
                             "at start-up, naming both); learned and patch use the model the map carries",
                             choices=("map", "orb", "sift", "learned", "patch"), read_only=True)
    pnp_min_inliers: int = _s(6, "map with 3D points: accept only with at least this many PnP inliers "
                              "(replaces verify_min_inliers/ratio there; 6 gave no wrong pose on the "
                              "validation drive with pose_consistency_n 2)", lo=6, hi=100000)
    pnp_ransac_px: float = _s(2.0, "map with 3D points: PnP RANSAC reprojection threshold, pixels",
                              lo=0.1, hi=50.0)
    pose_consistency_n: int = _s(2, "map with 3D points and odometry: accept only when the PnP poses "
                                 "of the last N queries (this one included) imply the same map->odom "
                                 "transform within pose_consistency_m / _deg (1 = off)", lo=1, hi=50)
    pose_consistency_m: float = _s(1.0, "pose consistency: map->odom translation agreement, metres",
                                   lo=0.0, hi=10000.0)
    pose_consistency_deg: float = _s(5.0, "pose consistency: map->odom rotation agreement, degrees",
                                     lo=0.0, hi=180.0)
    pose_require_odom: bool = _s(True, "map with 3D points and pose_consistency_n > 1: a frame without "
                                 "odometry publishes no closure or pose (nothing to check the PnP pose "
                                 "against; rejected as no_odometry); false = PnP alone decides then")
    pose_max_std_m: float = _s(0.25, "map with 3D points: accept a PnP pose only when its position "
                               "std-dev (square root of the covariance trace, metres) is at most this "
                               "(0.25: no wrong PnP pose left on the validation drives, docs/replay_eval.md)",
                               lo=0.0, hi=1.0e6)
    pose_max_keyframe_m: float = _s(25.0, "map with 3D points: a PnP pose farther than this from the "
                                    "matched keyframe (metres) is no match to it (the query sees that "
                                    "keyframe's 3D points; 25 = the radius of a correct match)",
                                    lo=0.0, hi=1.0e6)
    pose_max_keyframe_deg: float = _s(45.0, "map with 3D points: a PnP pose turned more than this from "
                                      "the matched keyframe (degrees) is no match to it", lo=0.0, hi=180.0)
    publish_tf: bool = _s(False, "broadcast map_frame -> odom_frame on /tf from each published ~/pose "
                          "(as AMCL does; needs odometry and tf2_msgs)", read_only=True)
    odom_frame: str = _s("odom", "child frame of the map -> odom transform on /tf (publish_tf)")
    relative_scale_sigma_m: float = _s(100.0, "~/relative_pose std-dev along the translation direction, "
                                       "metres, when it is a unit direction (map without 3D points: "
                                       "two views do not give the scale)", lo=1e-3, hi=1.0e6)
    odom_timeout_s: float = _s(1.0, "an image uses the odometry nearest its stamp if within this "
                               "many seconds; otherwise none (no distance gating, not mapped)",
                               lo=0.0, hi=3600.0)
    online_mapping: bool = _s(False, "add queried keyframes with an odometry pose to the map "
                              "(toggle at runtime with ~/set_mapping)")
    map_save_path: str = _s("", "where ~/save_map writes ('' = overwrite map_path)")
    loop_closure_include_score: bool = _s(False, "~/loop_closure is [t_query, t_match] (LIO-SAM drops "
                                          "any other size); true appends the cosine score as a third "
                                          "value (the score is always on ~/candidates)")
    loop_closure_scope: str = _s("all", "which accepted matches go on ~/loop_closure: all, or session = "
                                 "only keyframes stamped at or after the first image of this run "
                                 "(what LIO-SAM can use: it looks both stamps up among its own keyframes)",
                                 choices=("all", "session"))
    match_sigma_m: float = _s(1.0, "~/match_pose position std-dev at score 1, metres; "
                              "divided by the score below 1", lo=1e-6, hi=1.0e4)
    match_sigma_rad: float = _s(0.2, "~/match_pose orientation std-dev at score 1, radians",
                                lo=1e-6, hi=10.0)
    diagnostics_period_s: float = _s(1.0, "period of /diagnostics", lo=0.05, hi=3600.0, read_only=True)
    image_timeout_s: float = _s(5.0, "/diagnostics WARN when no image arrived for this many seconds",
                                lo=0.1, hi=1.0e6)
    latency_budget_ms: float = _s(500.0, "/diagnostics WARN when the p95 of callback-to-published "
                                  "time exceeds this, milliseconds", lo=0.0, hi=1.0e6)
    max_drop_fraction: float = _s(0.5, "/diagnostics WARN when more than this fraction of camera "
                                  "frames never reached the node (counted from publication sequence numbers)",
                                  lo=0.0, hi=1.0)
    log_throttle_s: float = _s(30.0, "a kind of bad message is logged at most once per this period",
                               lo=0.0, hi=1.0e6)

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            why = check(f.name, getattr(self, f.name))
            if why:
                raise UserError(why)

    @classmethod
    def from_values(cls, values: Mapping[str, Any], where: str = "") -> "LocalizerSettings":
        """Settings from ``name -> value`` (missing names keep their defaults);
        unknown names are errors (``use_sim_time`` and other ROS-owned names
        are ignored)."""
        ours = {k: v for k, v in values.items() if k not in ROS_OWNED}
        for k, v in ours.items():  # YAML and ROS write 1 for 1.0
            if k in SPECS and type(SPECS[k].default) is float and type(v) is int:
                ours[k] = float(v)
        unknown = sorted(set(ours) - set(SPECS))
        if unknown:
            raise UserError(f"{where or 'settings'}: unknown localizer parameter(s) {unknown}; "
                            f"valid: {sorted(SPECS)}")
        return cls(**ours)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> "LocalizerSettings":
        return dataclasses.replace(self, **changes)


#: Parameters every ROS node has; never ours, never an error.
ROS_OWNED = frozenset({"use_sim_time", "start_type_description_service", "qos_overrides"})

SPECS: dict[str, SettingSpec] = {
    f.name: SettingSpec(f.name, f.default, f.metadata["description"], f.metadata["lo"], f.metadata["hi"],
                        f.metadata["choices"], f.metadata["read_only"])
    for f in dataclasses.fields(LocalizerSettings)}
DEFAULTS: dict[str, Any] = {name: s.default for name, s in SPECS.items()}


def check(name: str, value: Any) -> str | None:
    """Why ``value`` is invalid for setting ``name`` (a message naming both),
    or None if it is fine (also for names that are not ours)."""
    spec = SPECS.get(name)
    if spec is None:
        return None
    kind = type(spec.default)
    ok_type = isinstance(value, kind) and not (kind is not bool and isinstance(value, bool))
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        ok_type = True
    if not ok_type:
        return f"parameter '{name}': expected {kind.__name__}, got {type(value).__name__} {short_repr(value)}"
    if spec.choices is not None and value not in spec.choices:
        return f"parameter '{name}': expected one of {list(spec.choices)}, got {short_repr(value)}"
    if spec.lo is not None and not (spec.lo <= value <= spec.hi):
        return f"parameter '{name}': expected a value in [{spec.lo}, {spec.hi}], got {short_repr(value)}"
    return None


def check_required(settings: LocalizerSettings) -> None:
    """The node's start-up check: map and model are given (UserError naming them)."""
    for name in ("map_path", "model_path"):
        if not getattr(settings, name):
            raise UserError(f"parameter '{name}' is required: pass it with -p {name}:=PATH, "
                            "a params file, or the launch argument")


def read_params_file(path: str | Path) -> dict[str, Any]:
    """``name -> value`` of a ROS 2 params file: every section's ``ros__parameters``
    merged in file order (``/**`` and node-name sections alike)."""
    path = Path(path)
    data = read_yaml_file(path, f"{path} (params file)") or {}
    if not isinstance(data, dict):
        raise UserError(f"{path}: a params file is a mapping of node names to sections, got "
                        f"{type(data).__name__}; see config/localize.yaml")
    values: dict[str, Any] = {}
    for name, section in data.items():
        params = section.get("ros__parameters") if isinstance(section, dict) else section
        if params is not None and not isinstance(params, dict):
            raise UserError(f"{path}: section {short_repr(name)} must be a mapping holding "
                            "'ros__parameters: {name: value, ...}', got "
                            f"{type(params).__name__} {short_repr(params)}; see config/localize.yaml")
        values.update(params or {})
    return values


def parse_overrides(texts: Iterable[str], flag: str = "--node-param") -> dict[str, Any]:
    """``["top_k:=10", ...]`` -> ``{"top_k": 10}``; values are YAML, as ROS reads ``-p``."""
    out: dict[str, Any] = {}
    for text in texts:
        name, sep, value = text.partition(":=")
        if not sep or not name:
            raise UserError(f"{flag} {text[:80]!r}: expected NAME:=VALUE, e.g. top_k:=10")
        out[name] = load_yaml(value, f"{flag} {name[:80]}") if value != "" else ""
    return out


def settings_from_file(params_file: str | Path, overrides: Mapping[str, Any] | None = None,
                       **given: Any) -> LocalizerSettings:
    """The settings a node started with ``--params-file params_file -p k:=v ...``
    runs with: file values, then ``given`` (launch arguments), then ``overrides``."""
    values = {**read_params_file(params_file), **given, **dict(overrides or {})}
    return LocalizerSettings.from_values(values, where=str(params_file))
