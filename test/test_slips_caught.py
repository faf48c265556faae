"""Tests for one-line slips that the suite did not catch (issue 31, "tests that would
have caught it").  Each test names the slip it catches; each was checked by
applying the slip by hand (the test failed) and reverting it.  The engine's
slip (threshold on the top-1 score instead of the verified candidate's) is
caught in test_localize_engine_verify.py, where its scene fixture lives.
"""
from __future__ import annotations

import numpy as np
import pytest

from distilvpr_core.foundation.errors import UserError


def _features(n: int, seed: int):
    from distilvpr_core.features.types import Features
    rng = np.random.default_rng(seed)
    kp = rng.uniform(0, 100, (n, 2)).astype(np.float32)
    return Features(kp, rng.integers(0, 256, (n, 32), dtype=np.uint8))


@pytest.mark.parametrize("n", [5, 6, 7])
def test_five_to_seven_matches_verify_nothing_with_the_default_minimum(n):
    """features/two_view.py: ``max(5, min_matches)`` -> ``min(5, ...)`` would try to fit a
    fundamental matrix to 5-7 matches although the default minimum is 8."""
    from distilvpr_core.features.two_view import verify
    from distilvpr_core.features.types import Intrinsics
    f = _features(n, 3)
    out = verify(f, f, Intrinsics(80.0, 80.0, 50.0, 50.0, 100, 100))  # every feature matches itself
    assert out.matches == n and out.inliers == 0 and out.why == f"{n} matches"


@pytest.mark.parametrize("deg", [170.0, -170.0, 179.0, -100.0])
def test_quaternions_have_w_at_least_zero_near_half_turns(deg):
    """localize/geometry.py: dropping the sign fix leaves w < 0 for some rotations near
    180 deg; the round trip alone cannot see it (q and -q are the same rotation)."""
    from distilvpr_core.localize.geometry import rotation_to_quat
    a = np.radians(deg)
    R = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
    q = rotation_to_quat(R)
    half = a / 2
    expect = np.array([0.0, np.sin(half), 0.0, np.cos(half)])
    expect = expect if expect[3] >= 0 else -expect
    assert q[3] >= 0 and np.allclose(q, expect, atol=1e-12)


def test_a_frame_exactly_min_interval_after_the_last_passes_the_gate():
    """localize/filters.py: the time gate ``<`` -> ``<=`` would hold back a frame that
    is exactly ``min_interval_s`` after the last query."""
    from distilvpr_core.localize.filters import KeyframeGate
    gate = KeyframeGate(min_interval_s=0.5)
    assert gate.check(10.0) is None
    assert gate.due(10.25) == "interval"
    assert gate.due(10.5) is None  # 0.5 s later exactly (both values exact in binary)


def test_poses_npy_of_shape_n_by_6_with_consistent_checksums_is_refused(tmp_path):
    """mapdb/schema.py: dropping the shape check of the map's .npy loader would load
    a poses.npy of [n, 6] whose checksums were recomputed."""
    from distilvpr_core.mapdb import PriorMap
    from map_tamper import build, rewrite
    path = build(tmp_path / "m")
    rewrite(path, "poses.npy", np.load(path / "poses.npy")[:, :6].copy())
    with pytest.raises(UserError, match=r"poses.npy: expected float64 \[6, 7\], got float64 \[6, 6\]"):
        PriorMap.load(path)


def test_a_source_index_equal_to_the_number_of_sources_is_refused(tmp_path):
    """mapdb/storage.py: ``source_idx.max() >= sources`` -> ``>`` would accept index 1
    in a map of one source (and then index past ``source_names``)."""
    from distilvpr_core.mapdb import PriorMap
    from map_tamper import build, rewrite
    path = build(tmp_path / "m")
    idx = np.load(path / "source_index.npy").copy()
    idx[2] = 1  # == counts.sources
    rewrite(path, "source_index.npy", idx)
    with pytest.raises(UserError, match=r"source_index.npy: values outside 0..0"):
        PriorMap.load(path)


def test_chance_r1_divides_by_the_database_run_length():
    """evaluation/protocols.py: chance R@1 divided by the query run's length instead of
    the database's.  Hand-computed: query run of 2 frames, database run of 5 frames
    on a line 10 m apart, radius 12 m."""
    from distilvpr_core.evaluation.protocols import pair_chance_r1
    query = np.array([[0.0, 0.0], [100.0, 0.0]])            # frame 1 has no true neighbour
    database = np.array([[x, 0.0] for x in (-10.0, 0.0, 10.0, 20.0, 30.0)])
    # Query 0 has 3 true neighbours (-10, 0, 10 m) among 5 database frames: chance 3/5.
    # Only queries with a neighbour count, as in Recall@N: mean = 60 %.
    assert pair_chance_r1([query, database], [(0, 1)], 12.0) == pytest.approx(60.0)
    # The other way round, database of 2 frames: query -10 m and 10 m see frame 0 m (1/2),
    # query 0 m sees it too (1/2), 20 m and 30 m see nothing: mean 50 %.
    assert pair_chance_r1([query, database], [(1, 0)], 12.0) == pytest.approx(50.0)
