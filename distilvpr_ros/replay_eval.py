"""``replay_eval`` / ``distilvpr replay-eval``: replay a bag through the localizer and score it.

Starts the localizer as a subprocess with the launch-equivalent configuration
(:mod:`distilvpr_ros.launch_args`) or attaches to a running one, publishes the
bag's images (recorded rate, a multiple, or lock-step), collects every
``~/candidates`` answer, scores it against the bag's ground-truth poses and
writes a report directory (see docs/replay_eval.md).  ``--offline`` runs the
same evaluation without ROS (Embedder + PriorMap in this process);
``--compare-offline`` runs both and reports the Recall@1 difference.

DDS stays on this machine: ROS_AUTOMATIC_DISCOVERY_RANGE is set to LOCALHOST
if unset (any other value is refused) and ROS_DOMAIN_ID to a random domain if
unset when the tool starts its own node.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from distilvpr_core.atomic import write_text_atomic
from distilvpr_core.errors import UserError
from distilvpr_core.loopeval.bagsource import BagSource
from distilvpr_core.loopeval.config import EvalConfig
from distilvpr_core.loopeval.groundtruth import positions_at
from distilvpr_core.loopeval.matching import match_answers
from distilvpr_core.loopeval.offline import (SearchSettings, evaluate_bag, evaluate_frames,
                                             frames_from_traversal, load_model_and_map)
from distilvpr_core.loopeval.report import write_report

from .node_harness import LocalizerProcess, require_local_dds

HELP = "replay a rosbag through the localizer node and report recall, precision-recall and latency"

#: Node parameters the replay sets unless the user overrides them: every
#: frame is a query, so "unanswered" means dropped, never "gated by design".
REPLAY_NODE_PARAMS = {"min_interval_s": "0.0", "min_distance_m": "0.0"}
#: Node parameters the offline path mirrors, read back from the running node.
MIRRORED = ("top_k", "exclude_recent_s", "exclude_recent_n")


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
    parser.add_argument("--map", default="", help="prior map directory (needed to start the node, "
                        "for --offline, and to know which queries are revisits)")
    parser.add_argument("--model", default="", help="student .onnx (or .pt with --backend torch)")
    parser.add_argument("--backend", default="onnxruntime", choices=("onnxruntime", "torch", "tensorrt"))
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


# -- ROS environment and the node process ----------------------------------
def ensure_local_ros_env(need_domain: bool) -> None:
    """Keep DDS on this machine (:func:`node_harness.require_local_dds`).

    ``need_domain``: the user's node lives in some domain we cannot guess, so
    ROS_DOMAIN_ID must be set by the user.
    """
    if need_domain and not os.environ.get("ROS_DOMAIN_ID"):
        raise UserError("--node given but ROS_DOMAIN_ID is not set: export the domain id the "
                        "running localizer uses")
    require_local_dds(large_images=False)


def node_ros_args(args: argparse.Namespace, namespace: str, image_topic: str, compressed: bool) -> list[str]:
    """The localizer's ``--ros-args``, built from the launch-argument table."""
    from .launch_args import node_arguments
    values = {"map": str(Path(args.map).resolve()), "model": str(Path(args.model).resolve()),
              "backend": args.backend, "namespace": namespace, "image_topic": image_topic,
              "compressed": "true" if compressed else "false"}
    if args.params_file:
        values["params_file"] = str(Path(args.params_file).resolve())
    extra = dict(REPLAY_NODE_PARAMS)
    for text in args.node_param:
        name, sep, value = text.partition(":=")
        if not sep or not name:
            raise UserError(f"--node-param {text!r}: expected NAME:=VALUE, e.g. top_k:=10")
        extra[name] = value
    ros_args = node_arguments(values)
    for name, value in extra.items():
        ros_args += ["-p", f"{name}:={value}"]
    return ros_args


# -- the ROS session -------------------------------------------------------
@dataclass
class RosRun:
    """What a replay collected (also when it stopped early)."""

    sent: list = field(default_factory=list)
    answers: list = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    node_params: dict[str, Any] = field(default_factory=dict)
    warmup_latency_s: float | None = None
    table_errors: list[str] = field(default_factory=list)


def _get_params(ros_node: Any, fq_name: str, names: Sequence[str],
                timeout_s: float = 5.0) -> dict[str, Any]:
    """Current values of the named parameters of a node, via its get_parameters service."""
    from rcl_interfaces.srv import GetParameters
    from rclpy.parameter import parameter_value_to_python
    client = ros_node.create_client(GetParameters, f"{fq_name}/get_parameters")
    try:
        if not client.wait_for_service(timeout_sec=timeout_s):
            return {}
        future = client.call_async(GetParameters.Request(names=list(names)))
        deadline = time.monotonic() + timeout_s
        while not future.done() and time.monotonic() < deadline:
            time.sleep(0.01)
        if not future.done() or future.result() is None:
            return {}
        return {n: parameter_value_to_python(v) for n, v in zip(names, future.result().values)}
    finally:
        ros_node.destroy_client(client)


def _reliable_publisher(ros_node: Any, topic: str, timeout_s: float, alive: Any) -> bool:
    """Wait for the candidates publisher; True if it is reliable (the node's default)."""
    from rclpy.qos import ReliabilityPolicy
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        infos = ros_node.get_publishers_info_by_topic(topic)
        if infos:
            return all(i.qos_profile.reliability == ReliabilityPolicy.RELIABLE for i in infos)
        dead = alive()
        if dead:
            raise UserError(dead)
        time.sleep(0.05)
    raise UserError(f"nothing publishes {topic} after {timeout_s:g} s: is the localizer running "
                    "under that name (see --node) in this ROS_DOMAIN_ID?")


def replay_through_node(args: argparse.Namespace, first: Any, records: Iterable[Any], total: int,
                        msgtype: str, node_proc: LocalizerProcess | None, fq_name: str,
                        image_topic: str) -> RosRun:
    """Play ``records`` (``total`` of them, ``first`` for the warm-up) to the node named
    ``fq_name`` and collect its answers.

    Never raises for a node problem once playback could start: the problem
    goes into ``RosRun.problems`` so a partial report can still be written.
    """
    import rclpy
    from rclpy.context import Context
    from rclpy.executors import SingleThreadedExecutor

    from .bag_player import AnswerCollector, BagPlayer

    run = RosRun()
    alive = node_proc.exit_reason if node_proc else (lambda: None)
    context = Context()
    rclpy.init(context=context)
    ros_node = rclpy.create_node("replay_eval", context=context,
                                 start_parameter_services=False)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(ros_node)
    spin = threading.Thread(target=executor.spin, daemon=True)
    spin.start()
    collector = None
    warm_stamp = None
    try:
        cand_topic = f"{fq_name}/candidates"
        player = BagPlayer(ros_node, image_topic, msgtype)
        player.wait_for_subscriber(args.ready_timeout, alive)
        reliable = _reliable_publisher(ros_node, cand_topic, args.ready_timeout, alive)
        collector = AnswerCollector(ros_node, cand_topic, reliable)
        deadline = time.monotonic() + args.ready_timeout
        while collector.subscription.get_publisher_count() == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        run.node_params = _get_params(ros_node, fq_name, MIRRORED + tuple(REPLAY_NODE_PARAMS))
        warm_stamp = max(1, first.stamp_ns - 1000 * 1_000_000_000)
        run.warmup_latency_s = player.warm_up(first, collector, args.answer_timeout, warm_stamp)
        result = player.play(records, collector, args.pacing, args.rate, args.answer_timeout,
                             args.silence_timeout, alive, total=total)
        run.sent = result.sent
        if result.stopped:
            run.problems.append(result.stopped)
        # Answers still in flight: wait until all came or the node went quiet.
        collector.wait_quiet([f.stamp_ns for f in run.sent], quiet_s=min(args.answer_timeout, 5.0),
                             max_s=args.silence_timeout)
        player.finish(2.0)
    except UserError as exc:
        run.problems.append(str(exc))
    finally:
        if collector is not None:
            run.answers = [a for a in collector.answers if a.stamp_ns != warm_stamp]
            run.table_errors = list(collector.errors)
        executor.shutdown(timeout_sec=2.0)
        ros_node.destroy_node()
        rclpy.shutdown(context=context)
        spin.join(timeout=5.0)
    return run


# -- orchestration ---------------------------------------------------------
def _eval_config(args: argparse.Namespace) -> EvalConfig:
    from distilvpr_core.config import load_config
    return load_config(EvalConfig, data={"radius_m": args.radius_m, "recall_ns": list(args.recall_n)})


def _map_positions(args: argparse.Namespace, notes: list[str]) -> np.ndarray | None:
    if not args.map:
        notes.append("no --map: every query with ground truth counts as a revisit")
        return None
    from distilvpr_core.mapdb import PriorMap
    return np.asarray(PriorMap.load(args.map).poses, np.float64)[:, :3]


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


def run_offline(args: argparse.Namespace, out: Path, search: SearchSettings | None = None) -> dict[str, Any]:
    """The offline path on the bag; returns metrics.json's content (report written)."""
    cfg = _eval_config(args)
    missing: list[str] = []
    notes = ["offline: latency = embed + search in this process, no transport"]
    if not (args.map and args.model):
        raise UserError("--offline needs --map and --model")
    embedder, prior_map = load_model_and_map(args.map, args.model, args.backend)
    search = search or _search_from_params_file(args)
    outcomes: list = []
    try:
        if args.dataset:
            notes.append("ground truth: the dataset's exact poses")
            outcomes = evaluate_frames(prior_map, embedder,
                                       frames_from_traversal(args.dataset, args.traversal), search)
        else:
            with BagSource(args.bag, args.image_topic, args.pose_topic or None) as bag:
                outcomes, problem = evaluate_bag(prior_map, embedder, bag, cfg.gt_max_gap_s, search)
                if problem:
                    missing.append(f"no ground truth, so no recall/precision: {problem}")
    except UserError as exc:
        missing.append(str(exc))
    meta = _meta(args, "offline", search=str(search))
    notes += _cap_note(search.k, cfg)
    return write_report(out, outcomes, np.asarray(prior_map.poses)[:, :3], cfg, meta, missing, notes)


def _search_from_params_file(args: argparse.Namespace) -> SearchSettings:
    """The node's search settings from its params file and --node-param, for --offline."""
    import yaml

    from .launch_args import default_params_file
    path = args.params_file or default_params_file()
    data = yaml.safe_load(Path(path).read_text()) or {}
    values: dict[str, Any] = {}
    for section in data.values():
        values.update((section or {}).get("ros__parameters", {}))
    for text in args.node_param:
        name, _, value = text.partition(":=")
        values[name] = yaml.safe_load(value)
    return _search_from_params(values)


def _search_from_params(values: dict[str, Any]) -> SearchSettings:
    from .params import DEFAULTS
    v = {**DEFAULTS, **{k: x for k, x in values.items() if x is not None}}
    return SearchSettings(k=int(v["top_k"]), exclude_within_s=float(v["exclude_recent_s"]),
                          exclude_last_n=int(v["exclude_recent_n"]))


def _start_and_replay(args: argparse.Namespace, bag: BagSource, msgtype: str, total: int,
                      out: Path, notes: list[str]) -> RosRun:
    """Start the node (unless --node), replay the bag's images, always stop the node."""
    compressed = msgtype.endswith("CompressedImage")
    ros_args = None
    if args.node:
        fq_name = args.node.rstrip("/")
        image_topic = args.node_image_topic or (fq_name.rsplit("/", 1)[0] + "/image")
        notes.append(f"attached to the running node {fq_name}: its gating and settings apply; "
                     "frames it gates count as dropped")
    else:
        ns = f"/replay_eval_{os.getpid()}"
        fq_name, image_topic = f"{ns}/localizer", f"{ns}/camera/image"
        ros_args = node_ros_args(args, ns, image_topic, compressed)
    if compressed:
        image_topic += "/compressed"
    first = next(iter(bag.images()))
    node_proc = LocalizerProcess(ros_args, out / "node.log") if ros_args else None
    try:
        return replay_through_node(args, first, bag.images(), total, msgtype, node_proc, fq_name,
                                   image_topic)
    finally:
        if node_proc:
            node_proc.stop()


def run_ros(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    """The ROS path: report written to ``out``; returns metrics.json's content."""
    cfg = _eval_config(args)
    if not args.node and not (args.map and args.model):
        raise UserError("--map and --model are needed to start the localizer "
                        "(or pass --node to use a running one)")
    missing: list[str] = []
    notes: list[str] = []
    map_positions = _map_positions(args, notes)
    run = RosRun()
    total = 0
    track = None
    try:
        with BagSource(args.bag, args.image_topic, args.pose_topic or None) as bag:
            msgtype = bag.check_images()
            total = bag.topics[args.image_topic][1]
            problem = bag.pose_problem()
            if problem:
                missing.append(f"no ground truth, so no recall/precision: {problem}")
            else:
                track = bag.pose_track()
            run = _start_and_replay(args, bag, msgtype, total, out, notes)
    except UserError as exc:
        missing.append(str(exc))
    missing += run.problems
    if run.table_errors:
        notes.append(f"{len(run.table_errors)} malformed candidates message(s), first: "
                     f"{run.table_errors[0]}")
    stamps = np.array([f.stamp_ns for f in run.sent], np.int64)
    gt = (positions_at(*track, stamps, cfg.gt_max_gap_s) if track is not None
          else np.full((len(stamps), 3), np.nan))
    outcomes, summary = match_answers(run.sent, run.answers, gt)
    if total and len(run.sent) < total:
        missing.append(f"only {len(run.sent)} of {total} frames were sent")
    search = _search_from_params(run.node_params) if run.node_params else None
    notes += _cap_note(run.node_params.get("top_k"), cfg)
    meta = _meta(args, "ROS replay", pacing=args.pacing, rate=args.rate,
                 node=args.node or "started by replay_eval",
                 node_params=json.dumps(run.node_params, sort_keys=True),
                 warmup_latency_s=run.warmup_latency_s)
    result = write_report(out, outcomes, map_positions, cfg, meta, missing, notes,
                          {"unmatched_answers": summary.unmatched_answers,
                           "duplicate_answers": summary.duplicate_answers})
    result["_search"] = search
    return result


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
        res = run_offline(args, out)
        return _finish(out, res["missing"])
    ensure_local_ros_env(need_domain=bool(args.node))
    if not args.compare_offline:
        res = run_ros(args, out)
        res.pop("_search", None)
        return _finish(out, res["missing"])
    ros = run_ros(args, out / "ros")
    search = ros.pop("_search", None)
    off = run_offline(args, out / "offline", search)
    r_ros, r_off = ros["metrics"]["recall_at_n"]["1"], off["metrics"]["recall_at_n"]["1"]
    diff = None if r_ros is None or r_off is None else 100.0 * (r_ros - r_off)
    comparison = {"recall_at_1_ros": r_ros, "recall_at_1_offline": r_off,
                  "difference_points": diff, "ros_dropped": ros["metrics"]["counts"]["dropped"],
                  "ros_latency_mean_s": ros["metrics"]["latency_s"]["mean"],
                  "offline_latency_mean_s": off["metrics"]["latency_s"]["mean"]}
    write_text_atomic(out / "comparison.json", json.dumps(comparison, indent=2) + "\n")
    print(f"Recall@1 ROS {r_ros} offline {r_off} (difference {diff} points)")
    return _finish(out, ros["missing"] + off["missing"])


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``replay_eval`` executable; returns the exit code."""
    from distilvpr_core.cli import standalone_main
    return standalone_main("replay_eval", sys.modules[__name__], argv)


if __name__ == "__main__":
    sys.exit(main())
