"""The local-feature registry: ORB and RootSIFT on real ray-cast views, matching per kind,
and the map refusing a query of another kind (real OpenCV, no fakes)."""
from __future__ import annotations

import numpy as np
import pytest

from distilvpr_core.features import matching, registry, sift, two_view, types
from distilvpr_core.foundation.errors import UserError

from two_plane_scene import H, K, W, render, rot_y

CAM = types.Intrinsics(K[0, 0], K[1, 1], K[0, 2], K[1, 2], W, H)
R_TRUE, C_TRUE = rot_y(6.0), np.array([0.6, 0.05, 0.3])


@pytest.mark.parametrize("kind,dim", [("orb", 32), ("sift", 128)])
def test_each_kind_extracts_its_descriptor_and_verifies_a_true_pair_only(kind, dim):
    key = registry.extract(kind, render(1), 300)
    query = registry.extract(kind, render(1, R_TRUE, C_TRUE), 300)
    other = registry.extract(kind, render(2), 300)
    assert key.kind == kind and key.descriptors.dtype == np.uint8 and key.descriptors.shape[1] == dim
    assert 20 < len(key) <= 300
    same, diff = two_view.verify(query, key, CAM), two_view.verify(other, key, CAM)
    assert same.inliers >= 30 and diff.inliers < 8, (same.inliers, diff.inliers)
    ang = np.degrees(np.arccos(np.clip((np.trace(same.rotation.T @ R_TRUE) - 1) / 2, -1, 1)))
    assert ang < 5.0  # small-baseline essential matrix: a few degrees


def test_root_sift_is_unit_norm_and_hellinger():
    raw = np.abs(np.random.default_rng(0).normal(size=(5, 128))).astype(np.float32) * 50
    q = sift.as_float(sift.root_sift(raw))
    assert np.allclose(np.linalg.norm(q, axis=1), 1.0, atol=0.02)
    # Euclidean distance of RootSIFT == Hellinger distance of the L1-normalised histograms.
    h = raw / raw.sum(1, keepdims=True)
    hell = np.sqrt(((np.sqrt(h[0]) - np.sqrt(h[1])) ** 2).sum())
    assert abs(np.linalg.norm(q[0] - q[1]) - hell) < 0.02


def test_clahe_lets_sift_match_a_dark_copy_better_than_orb():
    # The same view at 15 % brightness (a dusk frame): contrast normalisation keeps SIFT's
    # matches; this is the property that made it a candidate for other conditions.
    dark = (render(1, R_TRUE, C_TRUE).astype(np.float32) * 0.15).astype(np.uint8)
    counts = {}
    for kind in ("orb", "sift"):
        key = registry.extract(kind, render(1), 300)
        counts[kind] = two_view.verify(registry.extract(kind, dark, 300), key, CAM).inliers
    assert counts["sift"] >= 30 and counts["sift"] > counts["orb"], counts


def test_matching_two_kinds_is_a_programming_error_and_an_unknown_kind_a_user_error():
    a = registry.extract("orb", render(1), 100)
    b = registry.extract("sift", render(1), 100)
    with pytest.raises(ValueError, match="orb.*sift"):
        matching.match(a, b)
    with pytest.raises(UserError, match="unknown local feature kind 'surf'.*orb.*sift"):
        registry.get("surf")
    with pytest.raises(UserError, match="'orb'.*'sift'"):
        registry.check_same_kind("orb", "sift", "local_features")


def test_a_black_frame_gives_zero_features_of_either_kind():
    for kind, dim in (("orb", 32), ("sift", 128)):
        f = registry.extract(kind, np.zeros((H, W, 3), np.uint8), 300)
        assert len(f) == 0 and f.descriptors.shape == (0, dim) and f.kind == kind
