"""``replay_eval`` / ``distilvpr replay-eval``: replay a bag through the localizer and score it.

Starts the localizer as a subprocess with the launch-equivalent configuration
(:mod:`distilvpr_ros.launch_args`) or attaches to a running one, publishes the
bag's images (recorded rate, a multiple, or lock-step), collects every
``~/candidates`` answer, scores it against the bag's ground-truth poses and
writes a report directory (see docs/replay_eval.md).  ``--offline`` runs the
node's own localization engine in this process, without ROS, with the
settings the node would run with (params file + ``--node-param``);
``--compare-offline`` runs both with the same settings and reports the
differences, which are then transport only (dropped frames, latency).
The offline report adds per-stage metrics (loopeval/stages.py) and prints
the recommended operating point.

DDS stays on this machine (:mod:`distilvpr_core.foundation.local_dds`): discovery is
LOCALHOST (any other range is refused) and ROS_DOMAIN_ID a random domain if
unset when the tool starts its own node.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from distilvpr_core.foundation.atomic import write_text_atomic
from distilvpr_core.data.bags import IMAGE_TYPES, BagReader
from distilvpr_core.foundation.errors import UserError
from distilvpr_core.infer import BACKENDS
from distilvpr_core.localize.engine import LocalizationEngine
from distilvpr_core.localize.resources import load_model_and_map
from distilvpr_core.localize.settings import (DEFAULTS, LocalizerSettings, parse_overrides,
                                              settings_from_file)
from distilvpr_core.loopeval.config import EvalConfig
from distilvpr_core.loopeval.groundtruth import bag_track, positions_at
from distilvpr_core.loopeval.matching import match_answers
from distilvpr_core.loopeval.offline import attach_orientations, evaluate_bag, frames_from_traversal, run_engine
from distilvpr_core.loopeval.report import compare_reports, write_report
from distilvpr_core.loopeval.stages_report import offline_stages, recommendation_line

from .node_process import require_local_dds
from .session import RosRun, start_and_replay

HELP = "replay a rosbag through the localizer node and report recall, precision-recall and latency"

#: Node parameters the replay sets unless the user overrides them: every
#: frame is a query, so "unanswered" means dropped, never "gated by design".
REPLAY_NODE_PARAMS = {"min_interval_s": "0.0", "min_distance_m": "0.0"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``distilvpr replay-eval`` (and the ``replay_eval`` executable)."""
    parser.add_argument("--bag", default="", help="rosbag2 directory (sqlite3 or mcap); required "
                        "unless --offline --dataset DIR --traversal NAME")
    parser.add_argument("--dataset", default="", help="with --offline: a native synthetic dataset "
                        "directory ('distilvpr synth') to evaluate instead of a bag")
    parser.add_argument("--traversal", default="", help="with --dataset: the traversal to query")
    parser.add_argument("--image-topic", default="/camera/image_raw",
                        help="sensor_msgs/Image or CompressedImage topic in the bag")
    parser.add_argument("--pose-topic", default="/ground_truth/pose",
                        help="ground-truth PoseStamped/PoseWithCovarianceStamped/Odometry topic "
                             "in the bag, map frame ('' = none: no recall, latency only)")
    parser.add_argument("--odom-topic", default="/odom",
                        help="odometry topic of the bag fed to the engine: offline directly, through "
                             "ROS published on the node's odom topic before each frame ('' = none)")
    parser.add_argument("--map", default="", help="prior map directory (needed to start the node, "
                        "for --offline, and to know which queries are revisits)")
    parser.add_argument("--model", default="", help="student .onnx (or .pt with --backend torch)")
    parser.add_argument("--backend", default=DEFAULTS["backend"], choices=BACKENDS, help="inference backend")
    parser.add_argument("--out", required=True, help="report directory (files in it are replaced)")
    parser.add_argument("--pacing", default="rate", choices=("rate", "lockstep"),
                        help="rate: recorded timing x --rate; lockstep: wait for each answer")
    parser.add_argument("--rate", type=float, default=1.0, help="playback speed factor (1 = real time)")
    parser.add_argument("--node", default="", help="fully qualified name of an already running "
                        "localizer (e.g. /localizer) instead of starting one; needs ROS_DOMAIN_ID")
    parser.add_argument("--node-image-topic", default="",
                        help="with --node: the raw image topic that node subscribes "
                             "(default: <node namespace>/image; '/compressed' is appended for "
                             "CompressedImage bags)")
    parser.add_argument("--params-file", default="", help="node params file ('' = config/localize.yaml)")
    parser.add_argument("--node-param", action="append", default=[], metavar="NAME:=VALUE",
                        help="extra node parameter, e.g. top_k:=10 (repeatable); "
                             f"defaults set by the replay: {REPLAY_NODE_PARAMS}")
    parser.add_argument("--ready-timeout", type=float, default=60.0,
                        help="seconds to wait for the node to subscribe")
    parser.add_argument("--answer-timeout", type=float, default=20.0,
                        help="seconds to wait for the first answer (model warm-up) and, in "
                             "lockstep, for each answer")
    parser.add_argument("--silence-timeout", type=float, default=30.0,
                        help="stop playback after this many seconds without any answer")
    parser.add_argument("--radius-m", type=float, default=25.0,
                        help="a candidate within this distance (m) of the true position is correct")
    parser.add_argument("--recall-n", type=int, nargs="+", default=[1, 5, 10], help="N of Recall@N")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--offline", action="store_true", help="no ROS: Embedder + map in this process")
    mode.add_argument("--compare-offline", action="store_true",
                      help="run the ROS replay and the offline evaluation; report both")


def ensure_local_ros_env(need_domain: bool) -> None:
    """Keep DDS on this machine; ``need_domain``: the user's node lives in some
    domain we cannot guess, so ROS_DOMAIN_ID must be set by the user."""
    if need_domain and not os.environ.get("ROS_DOMAIN_ID"):
        raise UserError("--node given but ROS_DOMAIN_ID is not set: export the domain id the "
                        "running localizer uses")
    require_local_dds(large_images=False)


def node_overrides(args: argparse.Namespace) -> dict[str, str]:
    """``-p`` texts the replay gives the node: its defaults, then ``--node-param``."""
    out = dict(REPLAY_NODE_PARAMS)
    for text in args.node_param:
        parse_overrides([text])  # names the bad flag
        name, _, value = text.partition(":=")
        out[name] = value
    return out


def replay_settings(args: argparse.Namespace) -> LocalizerSettings:
    """The settings the node started by this replay runs with (and offline reuses)."""
    from ..launch_args import default_params_file
    given = {"backend": args.backend}
    if args.map:
        given["map_path"] = str(Path(args.map).resolve())
    if args.model:
        given["model_path"] = str(Path(args.model).resolve())
    overrides = parse_overrides(f"{k}:={v}" for k, v in node_overrides(args).items())
    return settings_from_file(args.params_file or default_params_file(), overrides, **given)


def _eval_config(args: argparse.Namespace) -> EvalConfig:
    from distilvpr_core.foundation.config import load_config
    return load_config(EvalConfig, data={"radius_m": args.radius_m, "recall_ns": list(args.recall_n)})


def _map_positions(args: argparse.Namespace, notes: list[str]) -> tuple[np.ndarray | None, bool]:
    """(keyframe positions float64 [M, 3] or None without --map, whether the map has 3D points)."""
    if not args.map:
        notes.append("no --map: every query with ground truth counts as a revisit")
        return None, False
    from distilvpr_core.mapdb import PriorMap
    m = PriorMap.load(args.map)
    return np.asarray(m.poses, np.float64)[:, :3], _metric(m)


def _metric(prior_map: Any) -> bool:
    """Whether the map's features carry 3D points (the node then publishes ~/pose)."""
    return prior_map.features is not None and bool(prior_map.features.has_points)


def _meta(args: argparse.Namespace, path: str, **extra: Any) -> dict[str, Any]:
    if args.dataset:
        return {"title": f"{args.traversal} ({path})", "path": path, "dataset": args.dataset,
                "traversal": args.traversal, "map": args.map, "model": args.model, **extra}
    return {"title": f"{Path(args.bag).name} ({path})", "path": path, "bag": str(args.bag),
            "image_topic": args.image_topic, "pose_topic": args.pose_topic or "(none)",
            "map": args.map or "(none)", "model": args.model or "(node's)", **extra}


def _cap_note(k: Any, cfg: EvalConfig) -> list[str]:
    """A note when Recall@N asks for more candidates than the node returns."""
    if isinstance(k, int) and max(cfg.recall_ns) > k:
        return [f"the node returns top_k = {k} candidates, so Recall@N for N > {k} equals "
                f"Recall@{k} (raise it with --node-param top_k:={max(cfg.recall_ns)})"]
    return []


def _finish(out: Path, missing: list[str]) -> int:
    if missing:
        raise UserError("; ".join(missing) + f" -- partial report written to {out}")
    print(f"report written to {out}")
    return 0


def run_offline(args: argparse.Namespace, out: Path, settings: LocalizerSettings) -> dict[str, Any]:
    """The node's engine on the bag (or dataset) in this process; returns metrics.json's content."""
    cfg = _eval_config(args)
    missing: list[str] = []
    notes = ["offline: the node's localization engine in this process; latency = decode + embed "
             "+ search + filters, no transport"]
    if not (args.map and args.model):
        raise UserError("--offline needs --map and --model")
    embedder, prior_map = load_model_and_map(args.map, args.model, settings.backend,
                                             settings.engine_cache_dir, settings.intra_op_threads,
                                             names=("--map", "--model"))
    outcomes: list = []
    try:
        engine = LocalizationEngine(embedder, prior_map, settings, source="replay_eval")
        if args.dataset:
            notes.append("ground truth: the dataset's exact poses")
            outcomes = run_engine(engine, frames_from_traversal(args.dataset, args.traversal))
        else:
            with BagReader(args.bag) as bag:
                outcomes, problem = evaluate_bag(engine, bag, args.image_topic, args.pose_topic or None,
                                                 cfg.gt_max_gap_s, odom_topic=args.odom_topic)
                if problem:
                    missing.append(f"no ground truth, so no recall/precision: {problem}")
    except UserError as exc:
        missing.append(str(exc))
    finally:
        embedder.close()
    meta = _meta(args, "offline", node_params=json.dumps(settings.to_dict(), sort_keys=True))
    notes += _cap_note(settings.top_k, cfg)
    st = offline_stages(outcomes, prior_map, cfg, settings, args.dataset or args.bag, notes)
    print(recommendation_line(st["recommended"]))
    return write_report(out, outcomes, np.asarray(prior_map.poses)[:, :3], cfg, meta, missing, notes, stages=st,
                        metric_map=_metric(prior_map))



def run_ros(args: argparse.Namespace, out: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The ROS path: report written to ``out``; returns metrics.json's content and
    the node's parameters as read back from it (empty if it never answered)."""
    cfg = _eval_config(args)
    if not args.node and not (args.map and args.model):
        raise UserError("--map and --model are needed to start the localizer "
                        "(or pass --node to use a running one)")
    missing: list[str] = []
    notes: list[str] = []
    map_positions, metric = _map_positions(args, notes)
    run = RosRun()
    total = 0
    track = gt_poses = None
    try:
        with BagReader(args.bag) as bag:
            msgtype = bag.check(args.image_topic, IMAGE_TYPES, "; choose one with --image-topic",
                              "image")
            total = bag.topics[args.image_topic][1]
            track, problem = bag_track(bag, args.pose_topic)
            if problem:
                missing.append(f"no ground truth, so no recall/precision: {problem}")
            else:
                gt_poses = bag.poses(args.pose_topic)   # orientations too: the ~/pose errors
            run = start_and_replay(args, bag, msgtype, total, out, notes, node_overrides(args))
    except UserError as exc:
        missing.append(str(exc))
    missing += run.problems
    if run.table_errors:
        notes.append(f"{len(run.table_errors)} malformed candidates message(s), first: "
                     f"{run.table_errors[0]}")
    stamps = np.array([f.stamp_ns for f in run.sent], np.int64)
    gt = (positions_at(*track, stamps, cfg.gt_max_gap_s) if track is not None
          else np.full((len(stamps), 3), np.nan))
    outcomes, summary = match_answers(run.sent, run.answers, gt, run.accepted)
    for o in outcomes:  # the node's ~/pose of each frame, scored like the offline engine's
        o.published_pose = run.poses.get(o.stamp_ns)
    if gt_poses is not None:
        attach_orientations(outcomes, *gt_poses, cfg.gt_max_gap_s)
    if total and len(run.sent) < total:
        missing.append(f"only {len(run.sent)} of {total} frames were sent")
    notes += _cap_note(run.node_params.get("top_k"), cfg)
    meta = _meta(args, "ROS replay", pacing=args.pacing, rate=args.rate,
                 node=args.node or "started by replay_eval",
                 node_params=json.dumps(run.node_params, sort_keys=True),
                 warmup_latency_s=run.warmup_latency_s)
    result = write_report(out, outcomes, map_positions, cfg, meta, missing, notes,
                          {"unmatched_answers": summary.unmatched_answers,
                           "duplicate_answers": summary.duplicate_answers},
                          metric_map=metric)
    return result, run.node_params


def run(args: argparse.Namespace) -> int:
    """The subcommand; returns the exit code (UserError for user-fixable problems)."""
    out = Path(args.out)
    if args.dataset and not (args.offline and args.traversal):
        raise UserError("--dataset is for --offline and needs --traversal NAME")
    if not args.bag and not args.dataset:
        raise UserError("--bag BAG is required (or --offline --dataset DIR --traversal NAME)")
    if args.rate <= 0:
        raise UserError(f"--rate {args.rate}: expected a positive speed factor (1 = real time)")
    if args.offline:
        return _finish(out, run_offline(args, out, replay_settings(args))["missing"])
    ensure_local_ros_env(need_domain=bool(args.node))
    if not args.compare_offline:
        return _finish(out, run_ros(args, out)[0]["missing"])
    settings = None if args.node else replay_settings(args)
    ros, node_params = run_ros(args, out / "ros")
    if settings is None:  # attached: the running node's own values are the truth
        settings = LocalizerSettings.from_values({k: v for k, v in node_params.items() if v is not None},
                                                 where=f"parameters of {args.node}")
    differ = sorted(k for k, v in node_params.items() if getattr(settings, k, v) != v)
    off = run_offline(args, out / "offline", settings)
    comparison = compare_reports(ros, off, differ)
    write_text_atomic(out / "comparison.json", json.dumps(comparison, indent=2) + "\n")
    print(f"Recall@1 ROS {comparison['recall_at_1_ros']} offline {comparison['recall_at_1_offline']} "
          f"(difference {comparison['difference_points']} points); accepted loop closures ROS "
          f"{comparison['accepted_ros']} offline {comparison['accepted_offline']}")
    return _finish(out, ros["missing"] + off["missing"]
                   + ([f"the node ran with other values of {differ} than offline"] if differ else []))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``replay_eval`` executable; returns the exit code."""
    from distilvpr_core.foundation.cli_args import standalone_main
    return standalone_main("replay_eval", sys.modules[__name__], argv)


if __name__ == "__main__":
    sys.exit(main())
