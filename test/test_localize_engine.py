"""LocalizationEngine with a real ONNX student and a real FAISS map (no ROS)."""
from __future__ import annotations

import numpy as np
import pytest

from distilvpr_core.localize.engine import LocalizationEngine
from distilvpr_core.localize.settings import LocalizerSettings as MatchSettings
from distilvpr_ros import synthetic_assets

PlaceMatcher = LocalizationEngine

NOW = 1_800_000_000 * 10**9


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    import torch
    torch.set_num_threads(1)
    from distilvpr_core.infer import load_embedder
    assets = synthetic_assets.build(tmp_path_factory.mktemp("matcher"), places=4, image_size=(160, 120))
    return assets, load_embedder(assets.model, intra_op_threads=1)


def fresh(parts, **settings):
    from distilvpr_core.mapdb import PriorMap
    assets, emb = parts
    return PlaceMatcher(emb, PriorMap.load(assets.map, emb.fingerprint, emb.dim),
                        MatchSettings(**{"exclude_recent_s": 0.0, **settings}))


def test_top1_and_rank_order(parts):
    assets, _ = parts
    m = fresh(parts, top_k=3, score_threshold=0.5)
    for i in range(4):
        r = m.query(assets.images[i], NOW)
        assert r.ids[0] == i and r.accepted and r.reject is None
        assert len(r.ids) == 3 and np.all(np.diff(r.scores) <= 0)
        np.testing.assert_allclose(r.poses[0, 0], 10.0 * i)
        assert r.stamps_ns[0] == assets.stamps_ns[i] and r.embed_s > 0 and r.search_s >= 0


def test_threshold_and_consistency(parts):
    assets, _ = parts
    m = fresh(parts, score_threshold=0.5, consistency_n=2, consistency_radius_m=5.0)
    assert m.query(assets.images[1], NOW).reject == "consistency"   # nothing to agree with yet
    assert m.query(assets.images[1], NOW + 1).accepted               # same place twice
    assert m.query(assets.images[3], NOW + 2).reject == "consistency"  # jumped 20 m
    unmapped = synthetic_assets.place_image(77, 160, 120)
    m.configure(MatchSettings(score_threshold=-1.0, exclude_recent_s=0.0))
    score = float(m.query(unmapped, NOW + 3).scores[0])
    m.configure(MatchSettings(score_threshold=score + 1e-6, exclude_recent_s=0.0))
    r = m.query(unmapped, NOW + 4)
    assert r.reject == "score" and not r.accepted and len(r.ids) == 4  # still returned as candidates


def test_online_mapping_adds_after_search_and_exclusion_hides_it(parts):
    m = fresh(parts, online_mapping=True)
    new = synthetic_assets.place_image(50, 160, 120)
    pose = np.array([7.0, 8.0, 0.0, 0, 0, 0, 1.0])
    r = m.query(new, NOW, odom_pose=pose)
    assert r.added_id == 4 and 4 not in r.ids            # searched before it was added
    assert m.query(new, NOW + 1, odom_pose=None).ids[0] == 4  # no pose: not added, but found
    assert len(m.map) == 5 and m.map.poses[4, 0] == 7.0
    m.configure(MatchSettings(exclude_recent_n=1, exclude_recent_s=0.0))
    assert 4 not in m.query(new, NOW + 2).ids
    m.configure(MatchSettings(exclude_recent_s=1.0))       # stamped NOW: within 1 s of NOW + 0.5 s
    assert 4 not in m.query(new, NOW + 500_000_000).ids


def test_empty_map_is_rejected_not_an_error(parts):
    from distilvpr_core.mapdb import PriorMap
    assets, emb = parts
    m = PlaceMatcher(emb, PriorMap.create(emb.dim, emb.fingerprint, emb.contract), MatchSettings())
    r = m.query(assets.images[0], NOW)
    assert r.reject == "empty" and len(r.ids) == 0 and r.poses.shape == (0, 7)


def test_huge_finite_odometry_is_ignored_without_numpy_overflow_warnings(parts):
    """1e308 is finite: it used to be buffered, and the gate's distance then
    overflowed with a numpy RuntimeWarning on every frame (issue 18)."""
    import warnings
    assets, _ = parts
    m = fresh(parts, min_interval_s=0.0, min_distance_m=1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any numpy overflow warning fails the test
        assert m.add_odometry(NOW, [0, 0, 0, 0, 0, 0, 1])
        for k, x in enumerate((1e308, -1e308, 1e10, -np.finfo(float).max)):
            assert m.add_odometry(NOW + (k + 1) * 10**8, [x, x, 0, 0, 0, 0, 1]) is False
            r = m.process_rgb(assets.images[0], NOW + (k + 1) * 10**8)
            assert r.odom is not None and np.all(r.odom == [0, 0, 0, 0, 0, 0, 1])
        assert m.add_odometry(NOW + 10**9, [1e9, 0, 0, 0, 0, 0, 1])  # the largest accepted value
    assert len(m.odom) == 2
