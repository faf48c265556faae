"""The ROS half of ``replay-eval``: start (or attach to) the localizer, play the bag, collect.

:func:`start_and_replay` starts the node as a process from the launch-argument
table (unless ``--node`` names a running one), plays the bag's images to it
(:mod:`.player`), collects ``~/candidates`` and the ``~/match_pose``
stamps of accepted loop closures, reads the node's parameters back, and
always stops the node it started.
"""
from __future__ import annotations

import argparse
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from distilvpr_core.data.bags import BagReader
from distilvpr_core.foundation.errors import UserError
from distilvpr_core.localize.settings import SPECS
from distilvpr_core.loopeval.offline import warmup_stamp

from .node_process import LocalizerProcess


@dataclass
class RosRun:
    """What a replay collected (also when it stopped early)."""

    sent: list = field(default_factory=list)
    answers: list = field(default_factory=list)
    accepted: set[int] = field(default_factory=set)
    poses: dict[int, Any] = field(default_factory=dict)  # stamp -> ~/pose float64 [7]
    problems: list[str] = field(default_factory=list)
    node_params: dict[str, Any] = field(default_factory=dict)
    warmup_latency_s: float | None = None
    table_errors: list[str] = field(default_factory=list)


def node_ros_args(args: argparse.Namespace, namespace: str, image_topic: str, compressed: bool,
                  overrides: dict[str, str]) -> list[str]:
    """The localizer's ``--ros-args``, built from the launch-argument table;
    ``overrides`` (name -> ``-p`` text) are set after the params file."""
    from ..launch_args import node_arguments
    values = {"map": str(Path(args.map).resolve()), "model": str(Path(args.model).resolve()),
              "backend": args.backend, "namespace": namespace, "image_topic": image_topic,
              "compressed": "true" if compressed else "false"}
    if args.params_file:
        values["params_file"] = str(Path(args.params_file).resolve())
    ros_args = node_arguments(values)
    for name, value in overrides.items():
        ros_args += ["-p", f"{name}:={value}"]
    return ros_args


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


def _odom_feeder(ros_node: Any, odom: tuple[Any, Any] | None, fq_name: str, timeout_s: float,
                 alive: Callable[[], str | None]) -> Callable[[int], None]:
    """``before_send`` for the player: the bag's odometry on the node's ``odom`` topic
    (a sibling of the node name), or nothing without odometry.  Waits until the node's
    odometry subscription has matched, as for the images, so no pose is lost to discovery."""
    if odom is None:
        return lambda stamp_ns: None
    from .player import OdomFeeder, wait_for_subscriber
    feeder = OdomFeeder(ros_node, fq_name.rsplit("/", 1)[0] + "/odom", *odom)
    wait_for_subscriber(feeder.publisher, feeder.topic, timeout_s, alive)
    return feeder.send


def replay_through_node(args: argparse.Namespace, first: Any, records: Iterable[Any], total: int,
                        msgtype: str, node_proc: LocalizerProcess | None, fq_name: str,
                        image_topic: str, odom: tuple[Any, Any] | None = None) -> RosRun:
    """Play ``records`` (``total`` of them, ``first`` for the warm-up) to the node named
    ``fq_name`` and collect its answers.

    Never raises for a node problem once playback could start: the problem
    goes into ``RosRun.problems`` so a partial report can still be written.
    """
    import rclpy
    from rclpy.context import Context
    from rclpy.executors import SingleThreadedExecutor

    from .player import AnswerCollector, BagPlayer

    run = RosRun()
    alive = node_proc.exit_reason if node_proc else (lambda: None)
    context = Context()
    rclpy.init(context=context)
    ros_node = rclpy.create_node("replay_eval", context=context, start_parameter_services=False)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(ros_node)
    spin = threading.Thread(target=executor.spin, daemon=True)
    spin.start()
    collector = None
    warm_stamp = warmup_stamp(first.stamp_ns)
    try:
        cand_topic = f"{fq_name}/candidates"
        player = BagPlayer(ros_node, image_topic, msgtype)
        player.wait_for_subscriber(args.ready_timeout, alive)
        # Before the warm-up, so the node's best-effort odometry subscription has matched this
        # publisher from its side too by the time the first pose goes out (a pose sent earlier
        # is lost, and the node's sequence score would then differ from the offline engine's).
        before_send = _odom_feeder(ros_node, odom, fq_name, args.ready_timeout, alive)
        reliable = _reliable_publisher(ros_node, cand_topic, args.ready_timeout, alive)
        collector = AnswerCollector(ros_node, cand_topic, reliable, accept_topic=f"{fq_name}/match_pose",
                                   pose_topic=f"{fq_name}/pose")
        deadline = time.monotonic() + args.ready_timeout
        while collector.subscription.get_publisher_count() == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        run.node_params = _get_params(ros_node, fq_name, tuple(SPECS))
        run.warmup_latency_s = player.warm_up(first, collector, args.answer_timeout, warm_stamp)
        result = player.play(records, collector, args.pacing, args.rate, args.answer_timeout,
                             args.silence_timeout, alive, total=total, before_send=before_send)
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
            run.accepted = set(collector.accepted) - {warm_stamp}
            run.poses = {k: v for k, v in collector.poses.items() if k != warm_stamp}
            run.table_errors = list(collector.errors)
        executor.shutdown(timeout_sec=2.0)
        ros_node.destroy_node()
        rclpy.shutdown(context=context)
        spin.join(timeout=5.0)
    return run


def start_and_replay(args: argparse.Namespace, bag: BagReader, msgtype: str, total: int,
                     out: Path, notes: list[str], overrides: dict[str, str]) -> RosRun:
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
        ros_args = node_ros_args(args, ns, image_topic, compressed, overrides)
    if compressed:
        image_topic += "/compressed"
    first = next(iter(bag.image_records(args.image_topic)))
    # The same odometry offline evaluation feeds the engine (--odom-topic; '' = none).
    odom_topic = getattr(args, "odom_topic", "")
    odom = bag.poses(odom_topic) if odom_topic and odom_topic in bag.topics else None
    if odom is not None:
        notes.append(f"odometry: the bag's {odom_topic}, nearest pose re-stamped to each frame, published "
                     "on the node's odom topic just before the frame (as offline evaluation feeds it)")
    node_proc = LocalizerProcess(ros_args, out / "node.log") if ros_args else None
    try:
        return replay_through_node(args, first, bag.image_records(args.image_topic), total, msgtype,
                                   node_proc, fq_name, image_topic, odom)
    finally:
        if node_proc:
            node_proc.stop()
