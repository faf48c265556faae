"""Boundaries and defaults that a hand-made mutation sample found untested.

Each test pins one value a realistic slip would change: a radius or a time
window compared with ``<`` instead of ``<=``, ``int`` instead of ``round``,
a default margin, mean/std indexed by the wrong channel, an atomic write
done in place, a squared distance compared with an unsquared threshold.
"""
from __future__ import annotations

import os

import numpy as np
import pytest


def _onehot(ids, dim):
    out = np.zeros((len(ids), dim), np.float32)
    out[np.arange(len(ids)), ids] = 1.0
    return out


def test_a_frame_exactly_25_m_away_is_a_true_neighbour():
    from distilvpr_core.evaluation.recall import recall_one_pair, true_neighbours
    assert true_neighbours(np.zeros((1, 2)), np.array([[25.0, 0.0], [25.001, 0.0]]), 25.0).tolist() \
        == [[True, False]]
    hits, _, n = recall_one_pair(_onehot([0], 2), np.zeros((1, 2)), _onehot([0, 1], 2),
                                 np.array([[0.0, 25.0], [500.0, 0.0]]), top_k=2, radius_m=25.0)
    assert (n, hits.tolist()) == (1, [1, 1])


def test_recall_at_1_percent_rounds_the_cut_off():
    """150 database frames: the 1 % cut-off is round(1.5) = 2 retrievals, not int(1.5) = 1."""
    from distilvpr_core.evaluation.recall import recall_one_pair
    m = 150
    db = _onehot(list(range(m)), m)
    db_pos = np.stack([1000.0 + 100.0 * np.arange(m), np.zeros(m)], axis=1)
    db_pos[1] = (0.0, 0.0)                       # the only true neighbour, retrieved second
    q = 0.9 * _onehot([0], m) + 0.5 * _onehot([1], m)
    hits, hits_1pct, n = recall_one_pair(q, np.zeros((1, 2)), db, db_pos, top_k=5)
    assert (n, hits[:2].tolist(), hits_1pct) == (1, [0, 1], 1)


def test_triplet_margin_defaults_to_0_2():
    torch = pytest.importorskip("torch")
    from distilvpr_core.distill.triplet import BatchHardTripletLoss
    # Two places on a unit square: every hardest positive and negative are 1 m
    # from the anchor, so each hinge is exactly the margin.
    emb = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    same = torch.tensor([0, 0, 1, 1])[:, None] == torch.tensor([0, 0, 1, 1])[None, :]
    loss, stats = BatchHardTripletLoss()(emb, same, ~same)
    assert stats.num_triplets == 4 and float(loss) == pytest.approx(0.2, abs=1e-5)


def test_time_exclusion_keeps_the_keyframe_exactly_at_the_window_edge():
    from distilvpr_core.mapdb import PriorMap
    q_ns = 2_000_000_000_000_000_000
    m = PriorMap.create(4, "f" * 64, {})
    stamps = np.array([q_ns - 30_000_000_000, q_ns - 29_999_999_999, q_ns - 40_000_000_000], np.int64)
    desc = np.array([[1, 0, 0, 0], [1, 0.01, 0, 0], [0, 1, 0, 0]], np.float32)
    m.add(desc, stamps, np.tile([0, 0, 0, 0, 0, 0, 1.0], (3, 1)), "s", np.arange(3))
    res = m.search(np.array([1, 0.01, 0, 0], np.float32), 5, query_stamp_ns=q_ns, exclude_within_s=30.0)
    ids = res.ids[0][res.ids[0] >= 0].tolist()
    assert ids == [0, 2]                         # 30 s old: kept; 29.999999999 s old: excluded


def test_bgr_contract_takes_mean_and_std_of_the_input_channel():
    from distilvpr_core.foundation.contract import PreprocessContract
    from distilvpr_core.foundation.preprocess import preprocess
    c = PreprocessContract(input_size=(4, 4), resize="stretch", channel_order="BGR",
                           mean=(0.1, 0.2, 0.3), std=(0.5, 0.25, 0.125), descriptor_dim=8)
    img = np.zeros((4, 4, 3), np.uint8)
    img[..., 0], img[..., 1], img[..., 2] = 255, 0, 51     # R, G, B
    x = preprocess(img, c)[0]
    np.testing.assert_allclose(x[0], (51 / 255 - 0.3) / 0.125, rtol=1e-5)   # B first, B's mean/std
    np.testing.assert_allclose(x[1], (0 - 0.2) / 0.25, rtol=1e-5)
    np.testing.assert_allclose(x[2], (1.0 - 0.1) / 0.5, rtol=1e-5)


@pytest.mark.parametrize("fail", ["os.fsync", "os.replace"])
def test_a_failed_atomic_write_leaves_the_old_file_and_no_temp(tmp_path, monkeypatch, fail):
    from distilvpr_core.foundation import atomic
    path = tmp_path / "metrics.json"
    path.write_text("old\n")

    def boom(*_a, **_k):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(atomic.os, fail.split(".")[1], boom)
    with pytest.raises(OSError, match="No space left"):
        atomic.write_text_atomic(path, "new\n")
    monkeypatch.undo()
    assert path.read_text() == "old\n"
    assert sorted(os.listdir(tmp_path)) == ["metrics.json"]
    atomic.write_text_atomic(path, "new\n")
    assert path.read_text() == "new\n"


def test_keyframe_gate_compares_metres_not_squared_metres():
    from distilvpr_core.localize.filters import KeyframeGate
    gate = KeyframeGate(min_interval_s=0.0, min_distance_m=2.0)
    assert gate.check(0.0, np.zeros(3)) is None
    assert gate.check(1.0, np.array([1.5, 0.0, 0.0])) == "distance"   # 1.5 m < 2 m (2.25 m^2 > 2)
    assert gate.check(2.0, np.array([1.9, 0.0, 0.0])) == "distance"   # 1.9 m (3.61 m^2)
    assert gate.check(3.0, np.array([2.1, 0.0, 0.0])) is None          # 2.1 m >= 2 m
