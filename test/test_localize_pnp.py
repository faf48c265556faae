"""Metric pose: PnP on exact 3D points of real ray-cast views, the covariance, the map's
3D points (LiDAR projection, storage), the engine's metric path and the pose-consistency
stage (real OpenCV, real FAISS, real ONNX student; no fakes)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from distilvpr_core.features import matching, orb, pnp, registry, types
from distilvpr_core.features.rotations import matrix_to_pose, pose_to_matrix, rotation_angle_deg, rotation_to_quat
from distilvpr_core.foundation.errors import UserError
from distilvpr_core.localize.pose_consistency import PoseConsistency
from distilvpr_core.mapdb import points3d

from two_plane_scene import SEEDS, H, K, W, build_scene_map, render, rot_y, scene_points

CAM = types.Intrinsics(K[0, 0], K[1, 1], K[0, 2], K[1, 2], W, H)
R_TRUE, C_TRUE = rot_y(6.0), np.array([0.6, 0.05, 0.3])
NOW = 1_800_000_000 * 10**9


def _pnp(kind: str, seed: int = 1):
    key = registry.extract(kind, render(seed), 300)
    query = registry.extract(kind, render(seed, R_TRUE, C_TRUE), 300)
    pairs = matching.match(query, key)
    return pnp.solve(query.keypoints[pairs[:, 0]], scene_points(key.keypoints)[pairs[:, 1]], CAM)


@pytest.mark.parametrize("kind", ["orb", "sift"])
def test_pnp_recovers_the_metric_camera_pose(kind):
    res = _pnp(kind)
    assert res.ok and res.inliers >= 30, res
    T_map_cam = np.linalg.inv(res.T_cam_map)
    assert np.linalg.norm(T_map_cam[:3, 3] - C_TRUE) < 0.05      # metres, scale included
    assert rotation_angle_deg(T_map_cam[:3, :3].T @ R_TRUE) < 0.5


def test_pose_covariance_is_positive_and_bounds_the_error():
    res = _pnp("orb")
    pose, cov = pnp.body_pose(res, np.eye(4))
    assert np.allclose(cov, cov.T) and np.all(np.linalg.eigvalsh(cov) > 0)
    err = pose[:3] - C_TRUE
    # The error is within 5 sigma of the claimed covariance (Mahalanobis).
    assert float(err @ np.linalg.inv(cov[:3, :3]) @ err) < 25.0
    assert np.sqrt(np.trace(cov[:3, :3])) < 0.2


def test_body_pose_applies_the_mounting():
    res = _pnp("orb")
    mount = np.array([1.2, 0.0, 1.6, *rotation_to_quat(rot_y(20.0))])   # camera on base_link
    base, _ = pnp.body_pose(res, np.linalg.inv(pose_to_matrix(mount)))
    cam = pose_to_matrix(base) @ pose_to_matrix(mount)
    assert np.allclose(cam, np.linalg.inv(res.T_cam_map), atol=1e-9)


def test_unrelated_points_give_no_pose():
    key, query = orb.extract(render(1), 300), orb.extract(render(2), 300)
    pairs = matching.match(query, key)
    res = pnp.solve(query.keypoints[pairs[:, 0]], scene_points(key.keypoints)[pairs[:, 1]], CAM)
    assert not res.ok or res.inliers < 12


def test_nan_points_are_skipped():
    kp = np.array([[10.0, 10.0]] * 10)
    assert pnp.solve(kp, np.full((10, 3), np.nan), CAM).why == "0 2D-3D matches"


def test_lidar_projection_gives_the_keypoints_depth_and_nan_at_edges():
    cam = types.Intrinsics(80.0, 80.0, 79.5, 59.5, 160, 120)
    mount_cam = np.array([1.2, 0.0, 1.6, -0.5, 0.5, -0.5, 0.5])       # optical on base_link
    mount_lidar = np.array([0.0, 0.0, 1.9, 0, 0, 0, 1.0])
    # A wall 10 m ahead (base x = 11.2) and a pole 5 m ahead covering y in [-0.2, 0.2].
    ys, zs = np.meshgrid(np.linspace(-8, 8, 400), np.linspace(-3, 3, 150))
    wall = np.c_[np.full(ys.size, 11.2), ys.ravel(), zs.ravel() + 1.6]
    wall = wall[np.abs(wall[:, 1]) > 0.2 * 11.2 / 6.2]    # the pole's shadow: no LiDAR return there
    ys2, zs2 = np.meshgrid(np.linspace(-0.2, 0.2, 30), np.linspace(-3, 3, 150))
    pole = np.c_[np.full(ys2.size, 6.2), ys2.ravel(), zs2.ravel() + 1.6]
    scan = np.r_[wall, pole] - mount_lidar[:3]                          # lidar frame (no rotation)
    kps = np.array([[79.5, 59.5], [79.5 + 0.3 * 16, 59.5], [30.0, 59.5], [79.5, 2.0]])
    pose = np.array([100.0, 50.0, 0.0, 0, 0, 0, 1.0])
    pts = points3d.keypoint_points_map(kps, scan, cam, mount_lidar, mount_cam, pose)
    assert np.allclose(pts[0], [100 + 6.2, 50.0, 1.6], atol=0.05)      # on the pole
    assert np.isnan(pts[1]).all()                                       # pole edge: two depths
    assert abs(pts[2][0] - (100 + 11.2)) < 0.05                          # on the wall
    assert np.isnan(pts[3]).all()                                       # above every return


def test_pose_consistency_needs_agreeing_odometry():
    chk = PoseConsistency(n=2, max_m=1.0, max_deg=5.0)
    drift = pose_to_matrix(np.array([5.0, -3.0, 0.0, *rotation_to_quat(rot_y(0.0))]))
    def pair(x):
        base = np.array([x, 0.0, 0.0, 0, 0, 0, 1.0])
        odom = matrix_to_pose(np.linalg.inv(drift) @ pose_to_matrix(base))
        return base, odom
    b0, o0 = pair(0.0)
    assert chk.update(b0, o0) is False           # no history yet
    b1, o1 = pair(2.0)
    assert chk.update(b1, o1) is True            # same map->odom
    b2, o2 = pair(4.0)
    assert chk.update(b2 + np.r_[3.0, 0, 0, 0, 0, 0, 0], o2) is False   # 3 m off
    assert chk.update(None, o2) is False
    assert chk.update(b2, None) is None          # no odometry: not checked


# ---- the engine's metric path, with a real student and map ------------------------------
@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    import torch
    torch.set_num_threads(1)
    from distilvpr_core.infer import load_embedder
    from distilvpr_ros import synthetic_assets
    tmp = tmp_path_factory.mktemp("pnp")
    assets = synthetic_assets.build(tmp / "assets", places=2, image_size=(W, H))
    emb = load_embedder(assets.model, intra_op_threads=1)
    build_scene_map(emb, tmp / "map_sift", kind="sift", points=True)
    return emb, tmp


def _engine(parts, **kw):
    from distilvpr_core.localize.engine import LocalizationEngine
    from distilvpr_core.localize.settings import LocalizerSettings
    from distilvpr_core.mapdb import PriorMap
    emb, tmp = parts
    s = LocalizerSettings(**{"exclude_recent_s": 0.0, "min_interval_s": 0.0, "top_k": 4,
                             "verify_top_k": 4, "score_threshold": -1.0, **kw})
    return LocalizationEngine(emb, PriorMap.load(tmp / "map_sift", emb.fingerprint, emb.dim), s)


def test_map_with_points_round_trips_with_kind_and_checksums(parts):
    _, tmp = parts
    schema = json.loads((tmp / "map_sift" / "schema.json").read_text())
    meta = schema["features"]
    assert meta["kind"] == "sift" and meta["files"]["points3d"] in schema["files"]
    assert meta["T_base_camera"] == [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0]
    pts = np.load(tmp / "map_sift" / meta["files"]["points3d"])
    assert pts.shape == (len(SEEDS), 300, 3) and pts.dtype == np.float32


def test_a_query_of_another_kind_is_refused_naming_both(parts):
    with pytest.raises(UserError, match="'orb'.*'sift'"):
        _engine(parts, local_features="orb")
    assert _engine(parts, local_features="sift").verifier.metric


@pytest.mark.parametrize("seed_idx", [1, 2])
def test_engine_gives_the_metric_robot_pose_in_the_map(parts, seed_idx):
    eng = _engine(parts, pose_consistency_n=1)
    s = SEEDS[seed_idx]
    q = eng.query(render(s, R_TRUE, C_TRUE), NOW)
    assert q.accepted and q.localized and q.ids[0] == seed_idx, (q.reject, q.ids)
    true = np.r_[10.0 * seed_idx + C_TRUE[0], C_TRUE[1:]]
    assert np.linalg.norm(q.pose[:3] - true) < 0.05
    assert rotation_angle_deg(pose_to_matrix(q.pose)[:3, :3].T @ R_TRUE) < 0.5
    assert q.pose_cov.shape == (6, 6) and np.all(np.linalg.eigvalsh(q.pose_cov) > 0)


def test_engine_rejects_a_pose_that_disagrees_with_odometry(parts):
    eng = _engine(parts, pose_consistency_n=2, pose_consistency_m=1.0)
    odom = np.array([0.0, 0, 0, 0, 0, 0, 1])
    first = eng.query(render(SEEDS[1], R_TRUE, C_TRUE), NOW, odom)
    assert first.reject == "pose_consistency" and first.pose is not None   # no history yet
    second = eng.query(render(SEEDS[1], R_TRUE, C_TRUE), NOW + 10**9, odom)
    assert second.accepted and second.pose_consistent is True
    # The robot claims (odometry) it stood still, but the view is of another place 10 m away.
    third = eng.query(render(SEEDS[2], R_TRUE, C_TRUE), NOW + 2 * 10**9, odom)
    assert third.pose is not None and third.reject == "pose_consistency"
    # Without odometry there is nothing to check the pose against: no closure, unless asked for.
    alone = eng.query(render(SEEDS[2], R_TRUE, C_TRUE), NOW + 3 * 10**9)
    assert alone.pose is not None and not alone.accepted and alone.reject == "no_odometry"
    assert alone.pose_consistent is None and not alone.geometry_ok
    eng.configure(eng.settings.replace(pose_require_odom=False))
    alone = eng.query(render(SEEDS[2], R_TRUE, C_TRUE), NOW + 4 * 10**9)
    assert alone.accepted and alone.localized and alone.geometry_ok


def test_a_pose_far_from_its_keyframe_or_too_uncertain_is_no_match(parts):
    # The keyframes of the scene map stand 10 m apart; the query camera is near keyframe 1.
    from distilvpr_core.localize.geometry import plausible, pose_std_m
    eng = _engine(parts, pose_consistency_n=1)
    q = eng.query(render(SEEDS[1], R_TRUE, C_TRUE), NOW)
    assert q.localized and q.ids[0] == 1
    kf = np.asarray(eng.map.poses[1], np.float64)
    d = float(np.linalg.norm(q.pose[:3] - kf[:3]))
    s = eng.settings
    assert plausible(q.pose, q.pose_cov, kf, s)
    assert not plausible(q.pose, q.pose_cov, kf, s.replace(pose_max_keyframe_m=0.5 * d))
    assert not plausible(q.pose, q.pose_cov, kf + np.r_[20.0, 0, 0, 0, 0, 0, 0], s.replace(pose_max_keyframe_m=10.0))
    std = pose_std_m(q.pose_cov)
    assert not plausible(q.pose, q.pose_cov, kf, s.replace(pose_max_std_m=0.5 * std))
    turned = kf.copy()
    turned[3:] = rotation_to_quat(rot_y(60.0) @ pose_to_matrix(kf)[:3, :3])
    assert not plausible(q.pose, q.pose_cov, turned, s.replace(pose_max_keyframe_deg=30.0))
    # Through the engine: the only candidate with a pose is refused, so nothing is verified.
    strict = _engine(parts, pose_consistency_n=1, pose_max_std_m=0.5 * std)
    r = strict.query(render(SEEDS[1], R_TRUE, C_TRUE), NOW)
    assert not r.accepted and r.reject == "geometry" and r.pose is None
    assert r.checks.implausible >= 1 and r.checks.metric_map
