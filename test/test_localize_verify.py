"""Geometric verification with real ORB features and real OpenCV RANSAC on ray-cast views."""
from __future__ import annotations

import numpy as np

from distilvpr_core.features import orb, two_view, types
from distilvpr_core.localize.geometry import relative_covariance, rotation_to_quat

from two_plane_scene import H, K, W, render, rot_y

CAM = types.Intrinsics(K[0, 0], K[1, 1], K[0, 2], K[1, 2], W, H)
R_TRUE, C_TRUE = rot_y(6.0), np.array([0.6, 0.05, 0.3])


def _angle_deg(Ra: np.ndarray, Rb: np.ndarray) -> float:
    return float(np.degrees(np.arccos(np.clip((np.trace(Ra.T @ Rb) - 1) / 2, -1, 1))))


def test_two_views_of_one_scene_verify_with_the_true_rotation():
    key, query = orb.extract(render(1), 300), orb.extract(render(1, R_TRUE, C_TRUE), 300)
    assert 0 < len(key) <= 300 and key.descriptors.dtype == np.uint8 and key.descriptors.shape[1] == 32
    res = two_view.verify(query, key, CAM)
    assert res.inliers >= 40 and res.ratio > 0.5, (res.inliers, res.matches)
    assert _angle_deg(res.rotation, R_TRUE) < 3.0
    # Direction only (two views carry no scale); small-baseline estimate, so loose.
    cos = float(res.direction @ (C_TRUE / np.linalg.norm(C_TRUE)))
    assert np.isclose(np.linalg.norm(res.direction), 1.0) and cos > np.cos(np.radians(30))


def test_another_scene_does_not_verify():
    key = orb.extract(render(1), 300)
    same = two_view.verify(orb.extract(render(1, R_TRUE, C_TRUE), 300), key, CAM)
    other = two_view.verify(orb.extract(render(2), 300), key, CAM)
    assert other.inliers < 8 <= same.inliers


def test_black_frame_has_no_features_and_never_verifies():
    black = orb.extract(np.zeros((H, W, 3), np.uint8), 300)
    assert len(black) == 0 and black.keypoints.shape == (0, 2) and black.descriptors.shape == (0, 32)
    res = two_view.verify(black, orb.extract(render(1), 300), CAM)
    assert res.inliers == 0 and res.rotation is None and res.direction is None


def test_same_inputs_give_the_same_answer():
    key, query = orb.extract(render(3), 300), orb.extract(render(3, R_TRUE, C_TRUE), 300)
    a, b = two_view.verify(query, key, CAM, seed=7), two_view.verify(query, key, CAM, seed=7)
    assert a.inliers == b.inliers and np.allclose(a.rotation, b.rotation)


def test_small_images_are_upscaled_and_keypoints_map_back_to_original_pixels():
    small = render(1)[::2, ::2].copy()           # 160 x 120, like the synthetic town
    f = orb.extract(small, 300)
    assert len(f) > 20
    assert f.keypoints[:, 0].max() < small.shape[1] and f.keypoints[:, 1].max() < small.shape[0]
    assert f.keypoints.min() > -1


def test_relative_covariance_is_large_only_along_the_unknown_scale():
    res = two_view.verify(orb.extract(render(1, R_TRUE, C_TRUE), 300), orb.extract(render(1), 300), CAM)
    cov = relative_covariance(res, scale_sigma_m=100.0)
    d = res.direction
    assert np.isclose(d @ cov[:3, :3] @ d, 100.0 ** 2, rtol=1e-3)
    side = np.cross(d, [0.0, 1.0, 0.0])
    side /= np.linalg.norm(side)
    assert side @ cov[:3, :3] @ side < 1.0
    assert np.allclose(cov, cov.T) and np.all(np.linalg.eigvalsh(cov) > 0)


def test_rotation_to_quat_round_trips():
    from distilvpr_core.loopeval.stages import _quat_matrix
    for R in (np.eye(3), R_TRUE, rot_y(170.0), rot_y(-90.0) @ np.array([[1, 0, 0], [0, 0, -1], [0, 1, 0]])):
        assert np.allclose(_quat_matrix(rotation_to_quat(R)), R, atol=1e-9)
