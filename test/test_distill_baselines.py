"""Each KD baseline against a slow, obvious loop; teacher never gets a gradient."""
from __future__ import annotations

import math

import pytest
import torch

from distilvpr_core.distill.baselines.cc import CorrelationCongruenceLoss
from distilvpr_core.distill.baselines.kd import SimilarityKDLoss
from distilvpr_core.distill.baselines.mse import EmbeddingMSELoss
from distilvpr_core.distill.baselines.pkt import PKTLoss
from distilvpr_core.distill.baselines.sp import SimilarityPreservingLoss

B, D = 6, 5


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def _data(seed=0):
    g = torch.Generator().manual_seed(seed)
    s = torch.randn(B, D, generator=g, dtype=torch.float64).requires_grad_(True)
    t = (torch.randn(B, D, generator=g, dtype=torch.float64) * 2).requires_grad_(True)
    return s, t


def _rows(x):
    return x.detach().tolist()


def _dot(a, b):
    return sum(p * q for p, q in zip(a, b))


def _cos(a, b):
    return _dot(a, b) / math.sqrt(_dot(a, a) * _dot(b, b))


def _loop_mse(s, t):
    return sum((a - b) ** 2 for rs, rt in zip(s, t) for a, b in zip(rs, rt)) / (len(s) * len(s[0]))


def _loop_kd(s, t, temp):
    total = 0.0
    for i in range(len(s)):
        others = [j for j in range(len(s)) if j != i]
        zs = [math.exp(_cos(s[i], s[j]) / temp) for j in others]
        zt = [math.exp(_cos(t[i], t[j]) / temp) for j in others]
        ps = [v / sum(zs) for v in zs]
        pt = [v / sum(zt) for v in zt]
        total += sum(q * math.log(q / p) for p, q in zip(ps, pt))
    return total / len(s) * temp * temp


def _loop_pkt(s, t, eps=1e-7):
    def probs(x):
        k = [[(_cos(a, b) + 1) / 2 for b in x] for a in x]
        return [[v / sum(row) for v in row] for row in k]
    ps, pt = probs(s), probs(t)
    n = len(s)
    return sum(pt[i][j] * math.log((pt[i][j] + eps) / (ps[i][j] + eps))
               for i in range(n) for j in range(n)) / n ** 2


def _loop_sp(s, t):
    def gram(x):
        g = [[_dot(a, b) for b in x] for a in x]
        return [[v / math.sqrt(_dot(row, row)) for v in row] for row in g]
    gs, gt = gram(s), gram(t)
    n = len(s)
    return sum((gs[i][j] - gt[i][j]) ** 2 for i in range(n) for j in range(n)) / n ** 2


def _loop_cc(s, t, gamma):
    def corr(x):
        u = [[v / math.sqrt(_dot(a, a)) for v in a] for a in x]
        return [[math.exp(-gamma * sum((p - q) ** 2 for p, q in zip(a, b))) for b in u] for a in u]
    cs, ct = corr(s), corr(t)
    n = len(s)
    return sum((cs[i][j] - ct[i][j]) ** 2 for i in range(n) for j in range(n)) / n ** 2


@pytest.mark.parametrize("module,loop", [
    (EmbeddingMSELoss(), _loop_mse),
    (SimilarityKDLoss(0.1), lambda s, t: _loop_kd(s, t, 0.1)),
    (SimilarityKDLoss(2.0), lambda s, t: _loop_kd(s, t, 2.0)),
    (PKTLoss(), _loop_pkt),
    (SimilarityPreservingLoss(), _loop_sp),
    (CorrelationCongruenceLoss(0.4), lambda s, t: _loop_cc(s, t, 0.4)),
], ids=lambda v: repr(v) if isinstance(v, torch.nn.Module) else "")
def test_baseline_matches_loop_and_trains_student_only(module, loop):
    s, t = _data(1)
    loss = module(s, t)
    assert loss.item() == pytest.approx(loop(_rows(s), _rows(t)), rel=1e-9, abs=1e-15)
    loss.backward()
    assert t.grad is None and torch.isfinite(s.grad).all() and s.grad.abs().sum() > 0
    # Student == teacher is a minimum (0) for each baseline.
    assert module(t.detach(), t.detach()).item() == pytest.approx(0.0, abs=1e-12)


def test_bad_hyperparameters_raise():
    with pytest.raises(ValueError, match="temperature"):
        SimilarityKDLoss(0.0)
    with pytest.raises(ValueError, match="gamma"):
        CorrelationCongruenceLoss(-1.0)
