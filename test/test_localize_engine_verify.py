"""The engine's verification, sequence and relative-pose stages with a real ONNX student,
a real FAISS map with real ORB features, and real RANSAC (no ROS)."""
from __future__ import annotations

import logging

import numpy as np
import pytest

from distilvpr_core.localize.engine import LocalizationEngine
from distilvpr_core.localize.filters import SequenceScore
from distilvpr_core.localize.settings import LocalizerSettings
from distilvpr_ros import synthetic_assets

from two_plane_scene import SEEDS, H, W, build_scene_map, render, rot_y, rotation_error_deg

NOW = 1_800_000_000 * 10**9


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    import torch
    torch.set_num_threads(1)
    from distilvpr_core.infer import load_embedder
    tmp = tmp_path_factory.mktemp("verify")
    assets = synthetic_assets.build(tmp / "assets", places=2, image_size=(W, H))
    emb = load_embedder(assets.model, intra_op_threads=1)
    for with_features in (True, False):
        build_scene_map(emb, tmp / f"map_{with_features}", features=with_features)
    return emb, tmp


def engine(parts, features=True, **kw):
    from distilvpr_core.mapdb import PriorMap
    emb, tmp = parts
    s = LocalizerSettings(**{"exclude_recent_s": 0.0, "min_interval_s": 0.0, "top_k": 4,
                             "verify_top_k": 4, "score_threshold": -1.0, **kw})
    return LocalizationEngine(emb, PriorMap.load(tmp / f"map_{features}", emb.fingerprint, emb.dim), s)


def test_a_new_view_of_a_mapped_place_is_verified_with_its_rotation(parts):
    R = rot_y(6.0)
    q = engine(parts).query(render(SEEDS[2], R, np.array([0.6, 0.05, 0.3])), NOW)
    assert q.accepted and q.verified and q.reject is None
    assert int(q.ids[0]) == 2                     # the verified match is published first
    best = q.checks.result
    assert best.inliers >= 8 and q.checks.inliers[q.match_rank] == best.inliers
    assert rotation_error_deg(best.rotation, R) < 5.0  # the bar for verified true matches
    assert sorted(q.ids.tolist()) == [0, 1, 2, 3]  # every candidate is still returned


def test_a_black_frame_is_never_accepted_as_verified(parts):
    q = engine(parts).query(np.zeros((H, W, 3), np.uint8), NOW)
    assert q.checks is not None and q.checks.query_features == 0
    assert not q.accepted and not q.verified and q.reject == "geometry"
    assert len(q.ids) == 4                        # candidates are still reported


def test_an_unrelated_scene_is_rejected_by_geometry(parts):
    q = engine(parts).query(render(99), NOW)
    assert not q.accepted and q.reject == "geometry" and not q.verified


def test_verification_off_accepts_on_score_and_claims_nothing(parts):
    q = engine(parts, verify=False).query(np.zeros((H, W, 3), np.uint8), NOW)
    assert q.accepted and not q.verified and q.checks is None


def test_a_map_without_features_warns_once_and_runs_unverified(parts, caplog):
    with caplog.at_level(logging.WARNING, logger="distilvpr.localize"):
        e = engine(parts, features=False)
        e.configure(e.settings.replace(top_k=3))
        q = e.query(render(SEEDS[1]), NOW)
    assert sum("no local features" in r.message for r in caplog.records) == 1
    assert not e.verifying and q.accepted and not q.verified and q.checks is None


def test_online_mapping_stores_the_query_features(parts):
    e = engine(parts, online_mapping=True)
    q = e.query(render(SEEDS[0], rot_y(3.0), np.array([0.3, 0, 0.1])), NOW, np.array([1, 2, 3, 0, 0, 0, 1.0]))
    assert q.added_id == 4 and len(e.map.features) == 5 and len(e.map.features.get(4)) > 0


def test_sequence_stage_rejects_without_odometry_and_accepts_consistent_motion(parts):
    e = engine(parts, verify=False, sequence_n=2, sequence_tolerance_m=3.0, sequence_min_score=1.0)
    assert e.query(render(SEEDS[0]), NOW).reject == "sequence"   # no odometry: never consistent
    e = engine(parts, verify=False, sequence_n=2, sequence_tolerance_m=3.0, sequence_min_score=1.0)
    odom = np.array([0, 0, 0, 0, 0, 0, 1.0])
    first = e.query(render(SEEDS[0]), NOW, odom)
    assert first.reject == "sequence"                                 # history too short
    top = int(first.ids[0])
    moved = odom.copy()
    moved[0] += 10.0 * (1 if top < 3 else -1)
    nxt = e.query(render(SEEDS[top + 1 if top < 3 else top - 1]), NOW + 1, moved)
    expected = abs(abs(float(nxt.poses[0, 0]) - float(first.poses[0, 0])) - 10.0) <= 3.0
    assert nxt.accepted == expected and (nxt.sequence_score == 1.0) == expected


def test_sequence_score_counts_agreeing_steps():
    s = SequenceScore(n=3, tolerance_m=1.0)
    assert np.isnan(s.update(np.zeros(3), np.zeros(3), 0))
    assert np.isnan(s.update(np.array([1.0, 0, 0]), np.array([50.0, 0, 0]), 5))
    assert s.update(np.array([2.0, 0, 0]), np.array([51.0, 0, 0]), 6) == 0.5   # first step jumped
    assert s.update(np.array([3.0, 0, 0]), np.array([52.0, 0, 0]), 7) == 1.0
    assert s.update(np.array([4.0, 0, 0]), np.array([53.0, 0, 0]), 3) == 0.5   # order reversed
    s.update(None, np.array([54.0, 0, 0]), 9)
    assert s.update(None, np.array([55.0, 0, 0]), 10) == 0.0                   # no odometry


def test_an_image_of_another_size_than_the_map_camera_is_never_verified(parts):
    q = engine(parts).query(render(SEEDS[2])[::2, ::2].copy(), NOW)   # 160x120 vs the 320x240 camera
    assert not q.accepted and not q.verified and q.reject == "geometry"
    assert q.checks.best == -1 and "160x120" in q.checks.why


def test_a_promoted_candidate_below_the_threshold_is_rejected(parts):
    """engine.py: the threshold must apply to the verified candidate's score, not the
    top-1's.  The top-1 here is a decoy keyframe with the query's own descriptor
    (score 1) but an unrelated scene's features, so it fails geometry; the true
    place verifies at a lower rank with a score below the threshold: rejected."""
    from distilvpr_core.features import orb as V
    from distilvpr_core.mapdb import PriorMap
    emb, tmp = parts
    image = render(SEEDS[2], rot_y(6.0), np.array([0.6, 0.05, 0.3]))
    m = PriorMap.load(tmp / "map_True", emb.fingerprint, emb.dim)
    decoy = int(m.add(emb.embed(image), [NOW - 10**12], [[50.0, 0, 0, 0, 0, 0, 1]], "decoy", [0])[0])
    m.features.set(decoy, V.extract(render(99), 300))
    base = {"exclude_recent_s": 0.0, "min_interval_s": 0.0, "top_k": 5, "verify_top_k": 5}
    first = LocalizationEngine(emb, m, LocalizerSettings(**base, score_threshold=-1.0)).query(image, NOW)
    assert first.accepted and int(first.ids[0]) == 2 and first.match_rank > 0  # promoted over the decoy
    top1, verified = first.raw_score, float(first.scores[0])
    assert top1 > verified
    s = LocalizerSettings(**base, score_threshold=(top1 + verified) / 2)
    q = LocalizationEngine(emb, m, s).query(image, NOW)
    assert not q.accepted and q.reject == "geometry"
