"""Output messages of the localizer: loop closure, match pose, robot pose, map->odom,
markers, diagnostics.

Builders only; the node owns the publishers.  Poses are float64 [7]
(x y z qx qy qz qw) in the map frame; stamps are nanoseconds since the epoch.
"""
from __future__ import annotations

from typing import Any

import numpy as np


def stamp_to_ns(stamp: Any) -> int:
    """builtin_interfaces/Time -> int nanoseconds."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def ns_to_stamp(ns: int) -> Any:
    """int nanoseconds since the epoch -> builtin_interfaces/Time (the inverse of :func:`stamp_to_ns`)."""
    from builtin_interfaces.msg import Time
    return Time(sec=int(ns // 1_000_000_000), nanosec=int(ns % 1_000_000_000))


def loop_closure(t_query_ns: int, t_match_ns: int, score: float, include_score: bool = False) -> Any:
    """std_msgs/Float64MultiArray ``[t_query, t_match]`` (seconds since the epoch,
    query image stamp then matched keyframe stamp), LIO-SAM's external
    loop-closure message: its mapOptimization subscribes
    ``lio_loop/loop_closure_detection`` and drops any array whose size is not 2.
    ``include_score`` appends the cosine score as a third value for consumers
    that want it (the score is always on ``~/candidates``)."""
    from std_msgs.msg import Float64MultiArray
    data = [t_query_ns * 1e-9, t_match_ns * 1e-9] + ([float(score)] if include_score else [])
    return Float64MultiArray(data=data)


def in_scope(scope: str, t_match_ns: int, session_start_ns: int | None) -> bool:
    """Whether a match against a keyframe stamped ``t_match_ns`` goes on
    ``~/loop_closure`` under ``loop_closure_scope``: ``all``, or ``session``
    (only keyframes stamped at or after the first image of this run,
    ``session_start_ns``; a prior-map keyframe is not in LIO-SAM's graph,
    which would attach it to its first keyframe)."""
    if scope == "all":
        return True
    return session_start_ns is not None and t_match_ns >= session_start_ns


def pose_covariance(score: float, sigma_m: float, sigma_rad: float) -> list[float]:
    """Row-major 6x6 diagonal covariance (x y z roll pitch yaw) whose standard
    deviations are ``sigma / score`` (score clamped to [0.05, 1]): a weaker
    match is trusted less."""
    s = min(max(float(score), 0.05), 1.0)
    var = [(sigma_m / s) ** 2] * 3 + [(sigma_rad / s) ** 2] * 3
    return np.diag(var).ravel().tolist()


def match_pose(header: Any, pose: np.ndarray, score: float, sigma_m: float, sigma_rad: float) -> Any:
    """geometry_msgs/PoseWithCovarianceStamped of the accepted top-1 map pose."""
    from geometry_msgs.msg import PoseWithCovarianceStamped
    msg = PoseWithCovarianceStamped()
    msg.header = header
    p = msg.pose.pose
    p.position.x, p.position.y, p.position.z = (float(v) for v in pose[:3])
    p.orientation.x, p.orientation.y, p.orientation.z, p.orientation.w = (float(v) for v in pose[3:7])
    msg.pose.covariance = pose_covariance(score, sigma_m, sigma_rad)
    return msg


def robot_pose(header: Any, pose: np.ndarray, covariance: np.ndarray) -> Any:
    """geometry_msgs/PoseWithCovarianceStamped of the metric robot pose (base_link in
    ``header.frame_id``, the map frame) from PnP: ``pose`` float64 [7], ``covariance``
    float64 [6, 6] (x y z roll pitch yaw about the map axes)."""
    from geometry_msgs.msg import PoseWithCovarianceStamped
    msg = PoseWithCovarianceStamped()
    msg.header = header
    p = msg.pose.pose
    p.position.x, p.position.y, p.position.z = (float(v) for v in pose[:3])
    p.orientation.x, p.orientation.y, p.orientation.z, p.orientation.w = (float(v) for v in pose[3:7])
    msg.pose.covariance = [float(v) for v in np.asarray(covariance, np.float64).ravel()]
    return msg


def map_to_odom(header: Any, odom_frame: str, pose_map_base: np.ndarray, pose_odom_base: np.ndarray) -> Any:
    """geometry_msgs/TransformStamped map -> odom (``header.frame_id`` the map frame,
    child ``odom_frame``) that makes odometry's base_link land on the metric pose:
    ``T_map_odom = T_map_base @ inv(T_odom_base)``, as AMCL broadcasts it."""
    from geometry_msgs.msg import TransformStamped
    from distilvpr_core.features.rotations import matrix_to_pose
    from distilvpr_core.localize.pose_consistency import map_to_odom as transform
    t = matrix_to_pose(transform(pose_map_base, pose_odom_base))
    msg = TransformStamped()
    msg.header, msg.child_frame_id = header, odom_frame
    tr = msg.transform
    tr.translation.x, tr.translation.y, tr.translation.z = (float(v) for v in t[:3])
    tr.rotation.x, tr.rotation.y, tr.rotation.z, tr.rotation.w = (float(v) for v in t[3:7])
    return msg


def tf_message_type() -> Any:
    """tf2_msgs/TFMessage, or UserError naming the missing package (the PyPI ROS wheels
    have no tf2_msgs; a ROS installation has)."""
    try:
        from tf2_msgs.msg import TFMessage
    except ImportError:
        from distilvpr_core.foundation.errors import UserError
        raise UserError("parameter 'publish_tf' is true but tf2_msgs is not installed (the PyPI ROS "
                        "wheels do not include it; install ROS tf2_msgs, e.g. apt install "
                        "ros-<distro>-tf2-msgs, or set publish_tf:=false)") from None
    return TFMessage


def relative_pose(header: Any, rotation: np.ndarray, direction: np.ndarray, covariance: np.ndarray) -> Any:
    """geometry_msgs/PoseWithCovarianceStamped of the query camera in the matched
    keyframe's camera (optical) frame: orientation from ``rotation`` float64 [3, 3],
    position ``direction`` [3]: metres with a metric (PnP) match, else the unit
    translation direction (1 m nominal; the scale is unknown, ``covariance``
    [6, 6] is large along it, see localize/geometry.py)."""
    from geometry_msgs.msg import PoseWithCovarianceStamped
    from distilvpr_core.localize.geometry import rotation_to_quat
    msg = PoseWithCovarianceStamped()
    msg.header = header
    p = msg.pose.pose
    p.position.x, p.position.y, p.position.z = (float(v) for v in direction)
    p.orientation.x, p.orientation.y, p.orientation.z, p.orientation.w = \
        (float(v) for v in rotation_to_quat(rotation))
    msg.pose.covariance = [float(v) for v in np.asarray(covariance, np.float64).ravel()]
    return msg


def markers(header: Any, poses: np.ndarray, scores: np.ndarray, accepted: bool,
            query_xyz: np.ndarray | None) -> Any:
    """visualization_msgs/MarkerArray: candidate positions as spheres (green =
    high score, red = low) and, for an accepted match with a known query
    position, a line from the query to the top-1.  Markers expire after 5 s."""
    from geometry_msgs.msg import Point
    from std_msgs.msg import ColorRGBA
    from visualization_msgs.msg import Marker, MarkerArray
    from builtin_interfaces.msg import Duration

    out = MarkerArray()
    spheres = Marker(header=header, ns="candidates", id=0, type=Marker.SPHERE_LIST, action=Marker.ADD)
    spheres.scale.x = spheres.scale.y = spheres.scale.z = 1.0
    spheres.lifetime = Duration(sec=5)
    spheres.pose.orientation.w = 1.0
    for pose, score in zip(poses, scores):
        spheres.points.append(Point(x=float(pose[0]), y=float(pose[1]), z=float(pose[2])))
        g = float(np.clip(score, 0.0, 1.0))
        spheres.colors.append(ColorRGBA(r=1.0 - g, g=g, b=0.0, a=0.8))
    out.markers.append(spheres)
    link = Marker(header=header, ns="loop_closure", id=0, type=Marker.LINE_LIST)
    link.lifetime = Duration(sec=5)
    link.pose.orientation.w = 1.0
    link.scale.x = 0.2
    link.color = ColorRGBA(r=0.1, g=0.4, b=1.0, a=1.0)
    if accepted and query_xyz is not None and len(poses):
        link.action = Marker.ADD
        link.points = [Point(x=float(query_xyz[0]), y=float(query_xyz[1]), z=float(query_xyz[2])),
                       Point(x=float(poses[0][0]), y=float(poses[0][1]), z=float(poses[0][2]))]
    else:
        link.action = Marker.DELETE
    out.markers.append(link)
    return out


def diagnostics(stamp: Any, name: str, values: dict[str, str], level: int = 0,
                message: str = "ok") -> Any:
    """diagnostic_msgs/DiagnosticArray with one status named ``name``:
    ``level`` 0 OK, 1 WARN, 2 ERROR (:mod:`distilvpr_ros.health`), ``message``
    naming the cause."""
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
    status = DiagnosticStatus(level=bytes([level]), name=name, message=message, hardware_id="distilvpr")
    status.values = [KeyValue(key=k, value=v) for k, v in values.items()]
    arr = DiagnosticArray()
    arr.header.stamp = stamp
    arr.status = [status]
    return arr
