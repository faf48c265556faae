"""Keyframe depth from neighbouring LiDAR scans (mapdb/depth_aggregate.py, points3d.py,
build._DepthSource): exact geometry of a synthetic scene with known planes, the occlusion
test, fall-backs and bad option values."""
from __future__ import annotations

import numpy as np
import pytest

from distilvpr_core.features.rotations import pose_to_matrix
from distilvpr_core.features.types import Intrinsics
from distilvpr_core.foundation.errors import UserError
from distilvpr_core.mapdb import depth_aggregate as da
from distilvpr_core.mapdb import points3d
from distilvpr_core.mapdb.build import FrameStream, _DepthSource

# The benchmark town's mounting: camera looking along base x, LiDAR 1.9 m up.
T_BC = np.array([1.2, 0.0, 1.6, -0.5086500507968374, 0.5086500507968374, -0.49119764435955393,
                 0.49119764435955393])
T_BL = np.array([0.0, 0.0, 1.9, 0.0, 0.0, 0.0, 1.0])
CAM = Intrinsics(160.0, 160.0, 159.5, 119.5, 320, 240)


def _pose(x: float, y: float = 0.0, yaw_deg: float = 0.0) -> np.ndarray:
    h = np.radians(yaw_deg) / 2
    return np.array([x, y, 0.0, 0.0, 0.0, np.sin(h), np.cos(h)])


def _wall(x: float, ys: np.ndarray, zs: np.ndarray) -> np.ndarray:
    """float64 [N, 3] map points on the plane x = const (a wall facing the vehicle)."""
    yy, zz = np.meshgrid(ys, zs)
    return np.c_[np.full(yy.size, x), yy.ravel(), zz.ravel()]


def _to_lidar(p_map: np.ndarray, pose: np.ndarray) -> np.ndarray:
    """float32 [N, 3]: map points as a scan of the LiDAR of the frame at ``pose``."""
    T = np.linalg.inv(pose_to_matrix(pose) @ pose_to_matrix(T_BL))
    return (p_map @ T[:3, :3].T + T[:3, 3]).astype(np.float32)


def _ray_hit(kp: np.ndarray, pose: np.ndarray, wall_x: float) -> np.ndarray:
    """float64 [F, 3] map point where the keyframe camera's ray through kp [F, 2] meets x = wall_x."""
    T = pose_to_matrix(pose) @ pose_to_matrix(T_BC)
    rays = np.c_[(kp[:, 0] - CAM.cx) / CAM.fx, (kp[:, 1] - CAM.cy) / CAM.fy, np.ones(len(kp))] @ T[:3, :3].T
    s = (wall_x - T[0, 3]) / rays[:, 0]
    return T[:3, 3] + rays * s[:, None]


def test_a_neighbours_returns_give_the_right_point_at_the_right_pixel():
    """The keyframe's own scan misses the upper wall; the scan of a frame 6 m behind covers
    it, and each keypoint there gets exactly the point where its ray meets the wall."""
    key, behind = _pose(0.0), _pose(-6.0, 0.5, 3.0)
    wall = _wall(20.0, np.linspace(-8, 8, 161), np.linspace(0.0, 9.0, 91))
    T_cm = np.linalg.inv(pose_to_matrix(key) @ pose_to_matrix(T_BC))
    pc = wall @ T_cm[:3, :3].T + T_cm[:3, 3]
    uv = np.c_[CAM.fx * pc[:, 0] / pc[:, 2] + CAM.cx, CAM.fy * pc[:, 1] / pc[:, 2] + CAM.cy]
    own = _to_lidar(wall[wall[:, 2] < 2.0], key)             # the own scan: only the lower wall
    other = _to_lidar(wall, behind)
    kp = np.array([[160.0, 62.0], [100.5, 80.25], [215.0, 95.0], [170.0, 125.0]])
    assert (uv[wall[:, 2] < 2.0, 1] > 100).all()             # upper keypoints see no own return
    alone = points3d.keypoint_points_map(kp, own, CAM, T_BL, T_BC, key)
    assert np.isnan(alone[:3]).all() and np.isfinite(alone[3]).all()
    cam_pts = da.scans_in_camera([(own, key), (other, behind)], key, T_BL, T_BC)
    cam_pts = cam_pts[da.visible(cam_pts, CAM)]
    got = points3d.points_from_camera(kp, cam_pts, CAM, T_BC, key)
    np.testing.assert_allclose(got, _ray_hit(kp, key, 20.0), atol=0.02)


def test_a_slanted_wall_gets_the_plane_depth_and_an_edge_stays_nan():
    """Dense returns on a wall along the road spread beyond 5 % within 2 px yet lie on one
    plane: the keypoint takes the plane's depth.  Two surfaces at an edge: NaN."""
    key = _pose(0.0)
    xs, zs = np.linspace(5, 60, 1101), np.linspace(0.0, 6.0, 121)
    xx, zz = np.meshgrid(xs, zs)
    side = np.c_[xx.ravel(), np.full(xx.size, 6.0), zz.ravel()]          # wall 6 m to the left
    cam_pts = da.scans_in_camera([(_to_lidar(side, key), key)], key, T_BL, T_BC)
    kp = np.array([[40.0, 110.0]])
    d = points3d.keypoint_depths(kp, cam_pts, CAM)
    T = pose_to_matrix(key) @ pose_to_matrix(T_BC)
    ray = np.r_[(kp[0, 0] - CAM.cx) / CAM.fx, (kp[0, 1] - CAM.cy) / CAM.fy, 1.0]
    truth = (6.0 - T[1, 3]) / (T[:3, :3] @ ray)[1]                         # depth where y = 6 m
    assert np.isfinite(d[0]) and abs(d[0] - truth) < 0.01 * truth
    near = da.scans_in_camera([(_to_lidar(_wall(10.0, np.linspace(-8, 0.0, 81), zs), key), key)],
                              key, T_BL, T_BC)
    far = da.scans_in_camera([(_to_lidar(_wall(30.0, np.linspace(0.0, 8, 81), zs), key), key)],
                             key, T_BL, T_BC)
    both = np.concatenate([near, far])
    edge_px = np.array([[CAM.cx + 0.5, 100.0], [CAM.cx + 6.0, 100.0], [CAM.cx - 6.0, 100.0]])  # y = 0: the edge
    d = points3d.keypoint_depths(edge_px, both, CAM)
    assert np.isnan(d[0]) and abs(d[1] - 8.8) < 0.3 and abs(d[2] - 28.8) < 0.8


def test_occluded_returns_are_dropped():
    """A neighbour saw a far wall behind a near box the keyframe camera sees: those far
    returns are dropped where the box covers them and kept beside it."""
    key = _pose(0.0)
    box = _wall(8.0, np.linspace(-1.0, 1.0, 41), np.linspace(0.5, 2.5, 41))
    far = _wall(25.0, np.linspace(-6.0, 6.0, 121), np.linspace(0.0, 5.0, 51))
    pts = da.scans_in_camera([(_to_lidar(box, key), key), (_to_lidar(far, _pose(-3.0, 2.0)), _pose(-3.0, 2.0))],
                             key, T_BL, T_BC)
    keep = da.visible(pts, CAM)
    n_box = len(box)
    assert keep[:n_box].all()
    T_cm = np.linalg.inv(pose_to_matrix(key) @ pose_to_matrix(T_BC))

    def px(p):
        c = p @ T_cm[:3, :3].T + T_cm[:3, 3]
        return np.c_[CAM.fx * c[:, 0] / c[:, 2] + CAM.cx, CAM.fy * c[:, 1] / c[:, 2] + CAM.cy]
    lo, hi = px(box).min(0), px(box).max(0)
    uv_far = px(far)
    inside = ((uv_far > lo + 3) & (uv_far < hi - 3)).all(1)
    outside = ((uv_far < lo - 4) | (uv_far > hi + 4)).any(1) & (uv_far >= 0).all(1) \
        & (uv_far[:, 0] < CAM.width) & (uv_far[:, 1] < CAM.height)
    assert inside.sum() > 20 and not keep[n_box:][inside].any()
    assert outside.sum() > 100 and keep[n_box:][outside].all()
    # a keypoint on the box gets the box's depth, not the far wall's
    kp = np.array([(lo + hi) / 2])
    got = points3d.points_from_camera(kp, pts[keep], CAM, T_BC, key)
    np.testing.assert_allclose(got[0, 0], 8.0, atol=0.02)


def _stream(scans: dict, poses, own_pose) -> FrameStream:
    def scan(j):
        if j not in scans:
            raise UserError(f"frame {j}: LiDAR scan missing")
        return scans[j]
    return FrameStream("s", len(scans), iter(()), CAM, scan, T_BC, T_BL, poses)


def test_missing_poses_or_scans_fall_back_and_bad_values_are_user_errors(capsys):
    key = _pose(0.0)
    wall = _wall(20.0, np.linspace(-8, 8, 161), np.linspace(0.0, 9.0, 91))
    own = _to_lidar(wall[wall[:, 2] < 2.0], key)
    kp = np.array([[160.0, 62.0], [170.0, 125.0]])
    single = points3d.keypoint_points_map(kp, own, CAM, T_BL, T_BC, key)
    # no per-frame poses: the keyframe's own scan, said once on stderr
    src = _DepthSource(CAM, 4)
    no_poses = _stream({0: own}, None, key)
    np.testing.assert_array_equal(src.points(no_poses, 0, key, kp), single)
    src.points(no_poses, 0, key, kp)
    assert capsys.readouterr().err.count("own scan only") == 1
    # a neighbour's scan that cannot be read is left out (and counted), the own scan is required
    poses = np.stack([key, _pose(-4.0), _pose(-8.0)])
    scans = {0: own, 2: _to_lidar(wall, poses[2])}           # frame 1's scan is missing
    got = _DepthSource(CAM, 2)
    pts = got.points(_stream(scans, poses, key), 0, key, kp)
    np.testing.assert_allclose(pts, _ray_hit(kp, key, 20.0), atol=0.02)
    got.report()
    assert "1 neighbouring LiDAR scan" in capsys.readouterr().err
    with pytest.raises(UserError, match="frame 1"):
        _DepthSource(CAM, 2).points(_stream({0: own}, poses, key), 1, poses[1], kp)
    # frames at the ends of the drive: only the neighbours that exist
    assert da.neighbour_frames(0, 3, 2) == [0, 1, 2] and da.neighbour_frames(2, 3, 5) == [2, 0, 1]
    for bad in (-1, 51, 2.5, True, "3"):
        with pytest.raises(UserError, match="depth frames"):
            _DepthSource(CAM, bad)
