"""The localizer's ROS wiring, shared by the plain and the lifecycle node.

Subscribes ``image`` (or ``image/compressed``) and optionally ``odom``;
publishes ``~/candidates``, ``~/loop_closure``, ``~/match_pose``,
``~/relative_pose`` (verified matches only), ``~/markers`` and
``/diagnostics``; serves ``~/save_map`` and ``~/set_mapping``.  The work
(decode, gate, embed, search, filters) is the ROS-free
:class:`distilvpr_core.localize.engine.LocalizationEngine`, the same code the
offline evaluation runs; this file only wires ROS to it, in the lifecycle's
steps (:class:`LocalizerMixin`).  The nodes: :mod:`distilvpr_ros.localizer`
(plain) and :mod:`distilvpr_ros.lifecycle_localizer` (managed).  See
docs/node.md for the topic and parameter reference.
"""
from __future__ import annotations

import sys
import time
from typing import Any

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseWithCovarianceStamped
from nav_msgs.msg import Odometry
from rcl_interfaces.msg import SetParametersResult
from rclpy.clock import Clock, ClockType
from rclpy.parameter import Parameter
from rclpy.publisher import Publisher
from rclpy.qos import QoSProfile, qos_profile_sensor_data
from rclpy.service import Service
from rclpy.subscription import Subscription
from rclpy.timer import Timer
from sensor_msgs.msg import CompressedImage, Image, PointCloud2
from std_msgs.msg import Float64MultiArray, Header
from std_srvs.srv import SetBool, Trigger
from visualization_msgs.msg import MarkerArray

from distilvpr_core.data.images import BadImage
from distilvpr_core.foundation.errors import UserError
from distilvpr_core.localize import settings as settings_mod
from distilvpr_core.localize import odom as odom_mod
from distilvpr_core.localize.engine import LocalizationEngine
from distilvpr_core.localize.geometry import metric_relative, relative_covariance
from distilvpr_core.localize.resources import load_model_and_map
from distilvpr_core.localize.settings import LocalizerSettings

from . import health, outputs, params
from .candidates_table import candidate_rows, to_pointcloud2
from .node_stats import NodeStats, OncePerKindLogger
from .ros_logging import forward_core_logs, stop_forwarding


CLOCK_WAIT_S = 5.0  # use_sim_time: warn once if no /clock arrived after this many wall seconds


class LocalizerMixin:
    """The localizer's wiring, shared by :class:`Localizer` and the managed
    :class:`distilvpr_ros.lifecycle_localizer.LifecycleLocalizer`.

    The steps are the lifecycle's: :meth:`_declare` (construction: parameters,
    core logs to the ROS logger), :meth:`_load` (configure: map, model,
    engine), :meth:`_open` (activate: subscriptions, publishers, services,
    timers), :meth:`_close` (deactivate: those again) and :meth:`_free`
    (cleanup: model and map).  The plain node runs the first three at once.
    Mixed into an rclpy ``Node`` or ``LifecycleNode``.
    """

    embedder: Any = None
    map: Any = None
    engine: LocalizationEngine | None = None
    #: Parameters the node declares itself beyond the settings (valid in a params file).
    EXTRA_PARAMS: tuple[str, ...] = ()

    def _declare(self) -> None:
        self._log_handler = forward_core_logs(self.get_logger())
        self.p = params.declare_all(self, extra=self.EXTRA_PARAMS)
        self._io: list[Any] = []   # what _open created and _close destroys
        self.add_on_set_parameters_callback(self._on_set_parameters)

    def _load(self) -> None:
        """Load model and map; UserError naming the parameter or file when one is wrong."""
        self.p = LocalizerSettings.from_values({n: self.get_parameter(n).value for n in settings_mod.SPECS})
        s = self.p
        settings_mod.check_required(s)
        self.embedder, self.map = load_model_and_map(s.map_path, s.model_path, s.backend,
                                                     s.engine_cache_dir, s.intra_op_threads)
        self.stats = NodeStats()
        self.session_start_ns: int | None = None
        self._warned: set[str] = set()
        self.log_bad = OncePerKindLogger(self.get_logger().warning, s.log_throttle_s)
        self.engine = LocalizationEngine(self.embedder, self.map, s)

    def _open(self) -> None:
        s = self.p
        qos = QoSProfile(depth=s.queue_depth, reliability=qos_profile_sensor_data.reliability,
                         history=qos_profile_sensor_data.history, durability=qos_profile_sensor_data.durability)
        # Odometry first: rclpy's executor runs the ready subscriptions of one wait in creation
        # order, so a pose that arrives together with its frame (a busy node, a loaded
        # machine) is buffered before the frame asks for it.
        self._io.append(self.create_subscription(Odometry, "odom", self._on_odom, qos_profile_sensor_data))
        if s.compressed:
            self.sub_image = self.create_subscription(CompressedImage, "image/compressed",
                                                      _with_info(self._on_image), qos)
        else:
            self.sub_image = self.create_subscription(Image, "image", _with_info(self._on_image), qos)
        self.pub_candidates = self.create_publisher(PointCloud2, "~/candidates", 10)
        self.pub_loop = self.create_publisher(Float64MultiArray, "~/loop_closure", 10)
        self.pub_pose = self.create_publisher(PoseWithCovarianceStamped, "~/match_pose", 10)
        self.pub_relative = self.create_publisher(PoseWithCovarianceStamped, "~/relative_pose", 10)
        self.pub_robot = self.create_publisher(PoseWithCovarianceStamped, "~/pose", 10)
        # /tf only when asked: tf2_msgs is not in the PyPI wheels (UserError naming it, exit 2).
        self.pub_tf = (self.create_publisher(outputs.tf_message_type(), "/tf", 100)
                       if s.publish_tf else None)
        self.pub_markers = self.create_publisher(MarkerArray, "~/markers", 10)
        self.pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._io += [self.sub_image, self.pub_candidates, self.pub_loop, self.pub_pose, self.pub_relative,
                     self.pub_robot, *([self.pub_tf] if self.pub_tf is not None else []),
                     self.pub_markers, self.pub_diag,
                     self.create_service(Trigger, "~/save_map", self._on_save_map),
                     self.create_service(SetBool, "~/set_mapping", self._on_set_mapping)]
        # Steady clock: with use_sim_time and no /clock a ROS-time timer never
        # fires, and /diagnostics is where that problem must show.
        steady = Clock(clock_type=ClockType.STEADY_TIME)
        self._io.append(self.create_timer(s.diagnostics_period_s, self._publish_diagnostics, clock=steady))
        self.sim_time = bool(self.get_parameter("use_sim_time").value)
        if self.sim_time:
            self._clock_check = self.create_timer(CLOCK_WAIT_S, self._check_clock, clock=steady)
            self._io.append(self._clock_check)
        self.stats.started = time.monotonic()  # "no image for N s" counts from here
        self.get_logger().info(f"ready: map {s.map_path} ({len(self.map)} keyframes), model "
                               f"{s.model_path} on {self.embedder.backend}, "
                               f"{'compressed ' if s.compressed else ''}images on {self.sub_image.topic_name}")

    def _close(self) -> None:
        destroy = {Subscription: self.destroy_subscription, Publisher: self.destroy_publisher,
                   Service: self.destroy_service, Timer: self.destroy_timer}
        for entity in reversed(self._io):
            for kind, fn in destroy.items():
                if isinstance(entity, kind):
                    fn(entity)
                    break
        self._io.clear()

    def _free(self) -> None:
        # Sessions and GPU memory go back even when spinning ended on an error.
        if self.embedder is not None:
            self.embedder.close()
        self.embedder = self.map = self.engine = None

    def _stop_log_forwarding(self) -> None:
        if getattr(self, "_log_handler", None) is not None:
            stop_forwarding(self._log_handler)
            self._log_handler = None


    # -- parameters ---------------------------------------------------------
    def _on_set_parameters(self, changed: list[Parameter]) -> SetParametersResult:
        # Humble has no post-set callback, so a valid change is applied here.
        for prm in changed:
            why = settings_mod.check(prm.name, prm.value)
            if why:
                return SetParametersResult(successful=False, reason=why)
        ours = {prm.name: prm.value for prm in changed if prm.name in settings_mod.SPECS}
        try:
            self.p = self.p.replace(**ours)
        except UserError as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        if self.engine is not None:  # a lifecycle node reads them again on configure
            self.engine.configure(self.p)
            self.log_bad.period_s = self.p.log_throttle_s
        return SetParametersResult(successful=True)

    # -- inputs ------------------------------------------------------------
    def _on_odom(self, msg: Odometry) -> None:
        p, q = msg.pose.pose.position, msg.pose.pose.orientation
        pose = np.array([p.x, p.y, p.z, q.x, q.y, q.z, q.w], np.float64)
        if not self.engine.add_odometry(outputs.stamp_to_ns(msg.header.stamp), pose):
            self.stats.bad["odom_nonfinite"] += 1
            self.log_bad("odom_nonfinite", odom_mod.why_implausible(pose) or "odometry pose refused")
            return
        self.stats.counts["odom_received"] += 1

    def _on_image(self, msg: Image | CompressedImage, info: dict | None) -> None:
        t_in = time.perf_counter()
        self.stats.counts["frames_received"] += 1
        stamp_ns = outputs.stamp_to_ns(msg.header.stamp)
        if self.session_start_ns is None:
            self.session_start_ns = stamp_ns  # loop_closure_scope: session starts here
        self.stats.queue_delay.add((self.get_clock().now().nanoseconds - stamp_ns) * 1e-9)
        self.stats.image_arrived(*_sequence(info))
        try:
            frame = self.engine.process(msg, stamp_ns)
        except BadImage as exc:
            self.stats.bad[exc.kind] += 1
            self.log_bad(exc.kind, exc.detail)
            return
        except Exception as exc:  # never die on input; the first of each type keeps its details
            kind = f"internal_{type(exc).__name__}"
            self.stats.bad[kind] += 1
            self.stats.consecutive_failures += 1
            self.stats.last_failure = f"{exc!r}"[:200]
            self.log_bad(kind, f"{exc!r} while processing a frame stamped {stamp_ns} ns")
            return
        self.stats.consecutive_failures = 0
        if frame.gated:
            self.stats.counts[f"gated_{frame.gated}"] += 1
            return
        self.stats.decode.add(frame.decode_s)
        t_pub = time.perf_counter()
        self._publish(msg.header.stamp, frame.query, frame.odom)
        t_out = time.perf_counter()
        self.stats.publish.add(t_out - t_pub)
        self.stats.process.add(t_out - t_in)

    # -- outputs -----------------------------------------------------------
    def _publish(self, stamp: Any, res: Any, odom: np.ndarray | None) -> None:
        p = self.p
        header = Header(stamp=stamp, frame_id=p.map_frame)
        self.stats.counts["queries"] += 1
        self.stats.embed.add(res.embed_s)
        self.stats.search.add(res.search_s)
        if res.added_id >= 0:
            self.stats.counts["keyframes_added"] += 1
        if res.accepted:
            # Before ~/candidates: a listener that joins both by stamp has the
            # acceptance when the candidates arrive.
            self.stats.counts["loop_closures"] += 1
            if outputs.in_scope(p.loop_closure_scope, int(res.stamps_ns[0]), self.session_start_ns):
                self.pub_loop.publish(outputs.loop_closure(outputs.stamp_to_ns(stamp), int(res.stamps_ns[0]),
                                                           float(res.scores[0]), p.loop_closure_include_score))
            else:
                self.stats.counts["loop_closures_out_of_scope"] += 1
            self.pub_pose.publish(outputs.match_pose(header, res.poses[0], float(res.scores[0]),
                                                     p.match_sigma_m, p.match_sigma_rad))
            self._publish_relative(stamp, res)
            if res.localized:
                self._publish_robot_pose(header, res, odom)
        else:
            self.stats.counts[f"rejected_{res.reject}"] += 1
        self.pub_candidates.publish(to_pointcloud2(
            candidate_rows(res.poses, res.scores, res.ids, res.stamps_ns), header))
        self.pub_markers.publish(outputs.markers(header, res.poses, res.scores, res.accepted,
                                                 None if odom is None else odom[:3]))

    def _publish_relative(self, stamp: Any, res: Any) -> None:
        # Only a match that passed verification has a relative pose; an unverified
        # closure is never published here (res.verified is False without verification).
        header = Header(stamp=stamp, frame_id=f"keyframe_{int(res.ids[0])}")
        if res.localized:  # metric: PnP against the keyframe's 3D points
            R, t, cov = metric_relative(res.checks, res.poses[0], self.map.features.T_base_camera)
            self.pub_relative.publish(outputs.relative_pose(header, R, t, cov))
            self.stats.counts["relative_poses"] += 1
            return
        v = res.checks.result if (res.verified and res.checks is not None) else None
        if v is None or v.rotation is None:
            return
        cov = relative_covariance(v, self.p.relative_scale_sigma_m)
        self.pub_relative.publish(outputs.relative_pose(header, v.rotation, v.direction, cov))
        self.stats.counts["relative_poses"] += 1

    def _publish_robot_pose(self, header: Header, res: Any, odom: np.ndarray | None) -> None:
        self.pub_robot.publish(outputs.robot_pose(header, res.pose, res.pose_cov))
        self.stats.counts["poses"] += 1
        if self.pub_tf is not None and self.p.publish_tf and odom is not None:
            msg = outputs.tf_message_type()()
            msg.transforms = [outputs.map_to_odom(header, self.p.odom_frame, res.pose, odom)]
            self.pub_tf.publish(msg)

    def _publish_diagnostics(self) -> None:
        values = self.stats.snapshot()
        values.update(map_size=str(len(self.map)), backend=self.embedder.backend,
                      image_topic=self.sub_image.topic_name,
                      image_publishers=str(self._image_publishers()),
                      online_mapping=str(self.p.online_mapping).lower(),
                      torch_loaded=str("torch" in sys.modules).lower(),
                      model_fingerprint=str(self.embedder.fingerprint)[:16])
        level, message = health.health(health.HealthInput(
            image_topic=self.sub_image.topic_name, since_last_image_s=self.stats.since_last_image_s(),
            image_timeout_s=self.p.image_timeout_s, latency_p95_ms=self.stats.process.percentile_ms(95),
            latency_budget_ms=self.p.latency_budget_ms, drop_fraction=self.stats.drops.fraction(),
            max_drop_fraction=self.p.max_drop_fraction, map_size=len(self.map),
            online_mapping=self.p.online_mapping, consecutive_failures=self.stats.consecutive_failures,
            last_failure=self.stats.last_failure, waiting_for_clock=self.sim_time and not self._clock_seen(),
            type_conflicts=tuple(self._type_conflicts())))
        self.pub_diag.publish(outputs.diagnostics(self.get_clock().now().to_msg(),
                                                  f"{self.get_fully_qualified_name()}: place recognition",
                                                  values, level, message))

    def _type_conflicts(self) -> list[str]:
        ours = {e.topic_name: _type_name(e.msg_type) for e in (*self.subscriptions, *self.publishers)
                if not e.topic_name.startswith(("/rosout", "/parameter_events"))}
        found = health.type_conflicts(ours, health.graph_of(self, ours))
        for text in set(found) - self._warned:
            self.get_logger().warning(text)  # once each; /diagnostics keeps saying it
            self._warned.add(text)
        return found

    def _clock_seen(self) -> bool:
        # Under simulation time the clock reads 0 until the first /clock message.
        return self.get_clock().now().nanoseconds > 0

    def _check_clock(self) -> None:
        self._clock_check.cancel()  # once: keep running either way
        if not self._clock_seen():
            self.get_logger().warning(
                f"use_sim_time is true but no /clock message arrived in {CLOCK_WAIT_S:g} s: stamps stay 0 "
                "until one does; play the bag with 'ros2 bag play --clock' or set use_sim_time:=false")

    def _image_publishers(self) -> int:
        # Subscription.get_publisher_count (matched) is newer than Humble; the
        # graph count is the Humble fallback.
        matched = getattr(self.sub_image, "get_publisher_count", None)
        return matched() if matched else self.count_publishers(self.sub_image.topic_name)

    # -- services ----------------------------------------------------------
    def _on_save_map(self, _req: Trigger.Request, resp: Trigger.Response) -> Trigger.Response:
        path = self.p.map_save_path or self.p.map_path
        try:
            self.map.save(path)
        except (OSError, UserError) as exc:
            resp.success, resp.message = False, f"saving the map to {path} failed: {exc}"
            self.get_logger().error(resp.message)
            return resp
        resp.success, resp.message = True, f"saved {len(self.map)} keyframes to {path}"
        if self.map.removed_partials:  # temp dirs of writers killed mid-save (mapdb/storage.py)
            resp.message += (f"; removed {len(self.map.removed_partials)} temporary directory(ies) "
                             "left by a killed writer")
        self.get_logger().info(resp.message)
        return resp

    def _on_set_mapping(self, req: SetBool.Request, resp: SetBool.Response) -> SetBool.Response:
        result = self.set_parameters([Parameter("online_mapping", value=bool(req.data))])[0]
        resp.success = result.successful
        resp.message = f"online_mapping = {self.p.online_mapping}" if result.successful else result.reason
        return resp


def _with_info(callback: Any) -> Any:
    """``callback(msg, info)`` as rclpy wants it: rclpy passes rmw's message info
    (publication sequence numbers, for the skipped-frame count) to two-argument
    callbacks since Iron; Humble's gets ``info=None``."""
    if hasattr(Subscription, "CallbackType"):
        return callback
    return lambda msg: callback(msg, None)


def _sequence(info: dict | None) -> tuple[int | None, bytes]:
    """(publication sequence number, publisher gid) of a message info, (None, b'') if unknown."""
    if not info:
        return None, b""
    gid = info.get("publisher_gid") or {}
    return info.get("publication_sequence_number"), bytes(gid.get("data", b""))


def _type_name(cls: type) -> str:
    """sensor_msgs.msg.Image -> 'sensor_msgs/msg/Image' (the graph's spelling)."""
    return f"{cls.__module__.split('.')[0]}/msg/{cls.__name__}"
