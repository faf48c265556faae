"""Batch-hard triplet loss against a loop and a hand-computed case."""
from __future__ import annotations

import math

import pytest
import torch

from distilvpr_core.distill import BatchHardTripletLoss


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def _loop_triplet(emb, pos, neg, margin, swap):
    n = len(emb)
    d = lambda i, j: math.sqrt(sum((a - b) ** 2 for a, b in zip(emb[i], emb[j])))  # noqa: E731
    terms, d_ap_all = [], []
    for a in range(n):
        ps = [j for j in range(n) if pos[a][j] and j != a]
        ns = [j for j in range(n) if neg[a][j] and j != a]
        if not ps or not ns:
            continue
        p = max(ps, key=lambda j: d(a, j))
        k = min(ns, key=lambda j: d(a, j))
        d_an = min(d(a, k), d(p, k)) if swap else d(a, k)
        terms.append(max(d(a, p) - d_an + margin, 0.0))
        d_ap_all.append(d(a, p))
    non_zero = [t for t in terms if t > 0]
    return (sum(non_zero) / len(non_zero) if non_zero else 0.0), len(terms), len(non_zero)


def _masks_from_positions(xy: torch.Tensor, pos_m: float = 10.0, neg_m: float = 50.0):
    """What the trainer does: positives <= 10 m, negatives > 50 m."""
    d = torch.cdist(xy, xy)
    return d <= pos_m, d > neg_m


@pytest.mark.parametrize("swap", [True, False])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_loop_with_pose_masks(swap, seed):
    g = torch.Generator().manual_seed(seed)
    # 6 places x 2 views each, places 0..250 m apart; some pairs fall in the
    # ignored 10-50 m band.
    centres = torch.tensor([[0.0, 0], [30, 0], [100, 0], [100, 40], [250, 0], [0, 200]])
    xy = (centres.repeat_interleave(2, 0) + torch.rand(12, 2, generator=g) * 5).double()
    pos, neg = _masks_from_positions(xy)
    emb = torch.randn(12, 8, generator=g, dtype=torch.float64) * 0.15
    loss, stats = BatchHardTripletLoss(margin=0.2, swap=swap)(emb, pos, neg)
    expected, n_trip, n_nz = _loop_triplet(emb.tolist(), pos.tolist(), neg.tolist(), 0.2, swap)
    assert loss.item() == pytest.approx(expected, rel=1e-9)
    assert stats.num_triplets == n_trip == 12
    assert stats.non_zero_fraction == pytest.approx(n_nz / n_trip)


def test_hand_computed_one_dimensional_case():
    # Anchors on a line: 0 and 0.1 are the same place, 0.5 and 1.0 are others.
    emb = torch.tensor([[0.0], [0.1], [0.5], [1.0]], requires_grad=True)
    pos = torch.tensor([[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]], dtype=torch.bool)
    neg = ~pos
    loss, stats = BatchHardTripletLoss(margin=0.2, swap=False)(emb, pos, neg)
    # Only anchors 0 and 1 have a positive: a=0: 0.1 - 0.5 + 0.2 < 0; a=1: 0.1 - 0.4 + 0.2 = -0.1 < 0.
    assert stats.num_triplets == 2 and stats.non_zero_fraction == 0.0 and loss.item() == 0.0
    loss.backward()  # a zero loss still back-propagates
    loss, stats = BatchHardTripletLoss(margin=0.5, swap=False)(emb, pos, neg)
    # a=0: 0.1 - 0.5 + 0.5 = 0.1; a=1: 0.1 - 0.4 + 0.5 = 0.2; mean over non-zero = 0.15
    assert loss.item() == pytest.approx(0.15)
    assert stats.mean_pos_dist == pytest.approx(0.1) and stats.mean_neg_dist == pytest.approx(0.45)
    # Swap: for a=1, p=0, n=2: min(d(1,2)=0.4, d(0,2)=0.5) = 0.4 -> unchanged; a=0: min(0.5, 0.4) = 0.4.
    loss, _ = BatchHardTripletLoss(margin=0.5, swap=True)(emb, pos, neg)
    assert loss.item() == pytest.approx((0.2 + 0.2) / 2)


def test_no_valid_triplet_gives_zero_loss_that_backpropagates():
    emb = torch.randn(4, 3, requires_grad=True)
    eye = torch.eye(4, dtype=torch.bool)
    loss, stats = BatchHardTripletLoss()(emb, eye, ~eye)  # only self-positives: ignored
    loss.backward()
    assert loss.item() == 0.0 and stats.num_triplets == 0 and torch.equal(emb.grad, torch.zeros(4, 3))


def test_training_separates_places():
    torch.manual_seed(0)
    emb = torch.nn.Parameter(torch.randn(8, 4) * 0.01)
    place = torch.arange(8) // 2
    pos, neg = place[:, None] == place[None], place[:, None] != place[None]
    opt = torch.optim.SGD([emb], lr=0.05)
    crit = BatchHardTripletLoss()
    _, before = crit(emb, pos, neg)
    for _ in range(300):
        loss, _ = crit(emb, pos, neg)
        opt.zero_grad()
        loss.backward()
        opt.step()
    _, after = crit(emb, pos, neg)
    assert before.non_zero_fraction == 1.0
    assert after.non_zero_fraction == 0.0  # every hardest triplet now satisfies the margin


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match=r"\[B, D\] and masks \[B, B\]"):
        BatchHardTripletLoss()(torch.zeros(4, 3), torch.zeros(3, 3, dtype=torch.bool),
                               torch.zeros(4, 4, dtype=torch.bool))
