"""Keyframe gating and temporal consistency (pure logic)."""
from __future__ import annotations

import numpy as np
import pytest

from distilvpr_core.localize.filters import ConsistencyFilter, KeyframeGate


def test_interval_gate_without_odometry():
    gate = KeyframeGate(min_interval_s=0.5, min_distance_m=1.0)
    passed = [t for t in np.arange(0, 3.0, 1 / 30) if gate.check(float(t)) is None]
    # 30 Hz for 3 s at >= 0.5 s spacing: 6 queries, evenly spaced
    assert len(passed) == 6
    assert np.all(np.diff(passed) >= 0.5 - 1e-9)


def test_stationary_robot_produces_one_query_only():
    gate = KeyframeGate(min_interval_s=0.5, min_distance_m=1.0)
    here = np.array([3.0, 4.0, 0.0])
    results = [gate.check(t, here + 0.01 * np.sin(t)) for t in np.arange(0, 60, 0.1)]
    assert results.count(None) == 1
    assert set(results) - {None} == {"interval", "distance"}


def test_moving_robot_is_queried_every_metre():
    gate = KeyframeGate(min_interval_s=0.0, min_distance_m=1.0)
    xs = np.arange(0, 10.0, 0.25)
    passed = [x for x in xs if gate.check(float(x), np.array([x, 0, 0])) is None]
    np.testing.assert_allclose(passed, np.arange(0, 10.0, 1.0))


def test_due_does_not_record_and_time_going_backwards_resets():
    gate = KeyframeGate(min_interval_s=1.0)
    assert gate.due(10.0) is None and gate.due(10.1) is None  # nothing marked yet
    gate.mark(10.0)
    assert gate.due(10.5) == "interval"
    assert gate.due(2.0) is None  # bag restarted


def test_consistency_off_accepts_every_match_but_not_none():
    f = ConsistencyFilter(n=1)
    assert f.update(np.zeros(3)) and not f.update(None) and f.update(np.ones(3) * 100)


def test_consistency_needs_n_agreeing_matches():
    f = ConsistencyFilter(n=3, radius_m=5.0)
    track = [np.array([x, 0.0, 0.0]) for x in (0.0, 1.0, 2.0, 3.0)]
    assert [f.update(p) for p in track] == [False, False, True, True]
    assert not f.update(np.array([500.0, 0, 0]))   # a jump breaks it
    assert not f.update(np.array([501.0, 0, 0]))
    assert f.update(np.array([502.0, 0, 0]))
    assert not f.update(None)                      # a rejected query breaks the streak
    assert not f.update(np.array([503.0, 0, 0]))


def test_consistency_reconfigure():
    f = ConsistencyFilter(n=3, radius_m=5.0)
    f.update(np.zeros(3))
    f.configure(1, 5.0)
    assert f.update(np.array([50.0, 0, 0]))


def test_odom_buffer_picks_the_nearest_stamp_within_timeout():
    from distilvpr_core.localize.odom import OdomBuffer
    buf = OdomBuffer(size=3)
    assert buf.at(0, 1.0) is None
    for t in (3, 1, 2):  # out of order
        buf.add(t * 10**9, np.array([t, 0, 0, 0, 0, 0, 1.0]))
    assert buf.at(int(2.4e9), 0.5)[0] == 2 and buf.at(int(2.6e9), 0.5)[0] == 3
    assert buf.at(int(5e9), 1.0) is None and buf.at(int(4e9), 1.0)[0] == 3
    buf.add(4 * 10**9, np.array([4, 0, 0, 0, 0, 0, 1.0]))
    assert len(buf) == 3 and buf.at(10**9, 0.5) is None  # the oldest was dropped


def _pose(x: float) -> np.ndarray:
    return np.array([x, 0, 0, 0, 0, 0, 1.0])


def test_a_future_stamped_odometry_message_does_not_stop_lookups():
    """Issue 31 item 8: one message stamped in 2038 must not pin the buffer; the
    real poses that follow are found, however many arrive."""
    from distilvpr_core.localize.odom import OdomBuffer
    buf = OdomBuffer(size=3)
    t0 = 1_700_000_000 * 10**9
    for i in range(3):
        buf.add(t0 + i * 10**8, _pose(i))
    buf.add(2_153_000_000 * 10**9, _pose(999))  # 2038
    for i in range(3, 10):
        buf.add(t0 + i * 10**8, _pose(i))
        assert buf.at(t0 + i * 10**8, 0.05)[0] == i
    assert buf.at(2_153_000_000 * 10**9, 1.0) is None  # the future pose was dropped


def test_a_bag_restart_starts_the_odometry_buffer_over():
    """Time jumps back by the bag's length: the new poses must be kept, not evicted
    at once as the oldest stamps in a full buffer."""
    from distilvpr_core.localize.odom import OdomBuffer
    buf = OdomBuffer(size=5)
    t0 = 1_700_000_000 * 10**9
    for i in range(100):  # a 10 s bag at 10 Hz, then the same bag again
        buf.add(t0 + i * 10**8, _pose(i))
    for i in range(20):
        buf.add(t0 + i * 10**8, _pose(1000 + i))
        assert buf.at(t0 + i * 10**8, 0.05)[0] == 1000 + i
    assert len(buf) == 5


def test_out_of_order_odometry_within_the_restart_window_is_kept():
    from distilvpr_core.localize.odom import RESTART_S, OdomBuffer
    buf = OdomBuffer(size=10)
    buf.add(10 * 10**9, _pose(10))
    buf.add(int((10 - RESTART_S / 2) * 1e9), _pose(7))  # late, not a restart
    assert len(buf) == 2 and buf.at(10 * 10**9, 0.1)[0] == 10


@pytest.mark.parametrize("pose", [[0, 0, 0, 0, 0, 0, 0.0], [0, 0, 0, 0, 0, 0, 2.0], [5e9, 0, 0, 0, 0, 0, 1.0]])
def test_odometry_the_map_would_refuse_is_not_buffered(pose):
    """Online mapping adds the buffered pose to the map: a pose PriorMap.add refuses
    (zero or non-unit quaternion, position beyond 1e9 m) would make every frame fail."""
    from distilvpr_core.foundation.errors import UserError
    from distilvpr_core.localize.odom import OdomBuffer
    from distilvpr_core.mapdb import PriorMap
    assert OdomBuffer().add(10**9, np.array(pose)) is False
    m = PriorMap.create(4, "f" * 64, {})
    with pytest.raises(UserError):
        m.add(np.eye(4, dtype=np.float32)[:1], [10**9], [pose], "online", [0])
