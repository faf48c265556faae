"""Self- and cross-agent relation losses against slow, obvious loops."""
from __future__ import annotations

import math

import pytest
import torch

from distilvpr_core.distill.cross_agent import CrossAgentLoss
from distilvpr_core.distill.manifolds import Euclidean, PoincareBall
from distilvpr_core.distill.relations import CosineSimilarity, ManifoldDistance
from distilvpr_core.distill.self_agent import SelfAgentAngleLoss, SelfAgentDistanceLoss

B, D = 6, 5


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


# ------------------------------------------------------------ loop references

def _vec(row) -> list[float]:
    return [float(v) for v in row.detach()]


def _norm(a):
    return math.sqrt(sum(v * v for v in a))


def _euclid(a, b):
    return math.sqrt(sum((p - q) ** 2 for p, q in zip(a, b)))


def _to_ball(v, c):
    """projx(expmap0(v)) written out."""
    n = max(_norm(v), 1e-5)
    y = [math.tanh(min(math.sqrt(c) * n, 15.0)) * a / (math.sqrt(c) * n) for a in v]
    max_r = (1 - 1e-3) / math.sqrt(c)
    ny = max(_norm(y), 1e-5)
    return [a / ny * max_r for a in y] if ny > max_r else y


def _ball_dist(x, y, c):
    """2/sqrt(c) artanh(sqrt(c) |(-x) (+) y|), Möbius addition written out, with
    the reference clamp artanh(<= 1 - 1e-5) that saturates points at the edge."""
    a = [-v for v in x]
    ab = sum(p * q for p, q in zip(a, y))
    a2, b2 = sum(v * v for v in a), sum(v * v for v in y)
    num = [(1 + 2 * c * ab + c * b2) * p + (1 - c * a2) * q for p, q in zip(a, y)]
    gyro = _norm(num) / (1 + 2 * c * ab + c * c * a2 * b2)
    return 2 / math.sqrt(c) * math.atanh(min(math.sqrt(c) * gyro, 1 - 1e-5))


def _smooth_l1(a, b, beta=1.0):
    d = abs(a - b)
    return 0.5 * d * d / beta if d < beta else d - 0.5 * beta


def _normalised_matrix(points, dist):
    n = len(points)
    m = [[dist(points[i], points[j]) if i != j else 0.0 for j in range(n)] for i in range(n)]
    pos = [v for row in m for v in row if v > 0]
    mean = sum(pos) / len(pos)
    return [[v / mean for v in row] for row in m]


def _loop_self_distance(s, t, dist, beta=1.0):
    ms, mt = _normalised_matrix(s, dist), _normalised_matrix(t, dist)
    n = len(s)
    return sum(_smooth_l1(ms[i][j], mt[i][j], beta) for i in range(n) for j in range(n)) / n ** 2


def _cos_angle(x, i, j, k):
    if j == i or k == i:
        return 0.0
    u = [a - b for a, b in zip(x[j], x[i])]
    v = [a - b for a, b in zip(x[k], x[i])]
    return sum(p * q for p, q in zip(u, v)) / (_norm(u) * _norm(v))


def _loop_angle(s, t, beta=1.0):
    n = len(s)
    total = sum(_smooth_l1(_cos_angle(s, i, j, k), _cos_angle(t, i, j, k), beta)
                for i in range(n) for j in range(n) for k in range(n))
    return total / n ** 3


def _unit(a):
    n = _norm(a)
    return [v / n for v in a]


def _loop_cross(s, t, rel):
    s, t = [_unit(a) for a in s], [_unit(a) for a in t]
    n = len(s)
    return sum((rel(s[i], s[j]) - rel(s[i], t[j])) ** 2 for i in range(n) for j in range(n)) / n ** 2


def _data(seed: int, scale: float = 1.0, dim_t: int = D):
    g = torch.Generator().manual_seed(seed)
    s = (scale * torch.randn(B, D, generator=g, dtype=torch.float64)).requires_grad_(True)
    t = (scale * torch.randn(B, dim_t, generator=g, dtype=torch.float64)).requires_grad_(True)
    return s, t


# ------------------------------------------------------------ tests

@pytest.mark.parametrize("scale", [0.3, 3.0])
def test_self_euclidean_distance_matches_loop(scale):
    s, t = _data(0, scale, dim_t=7)  # self relations allow different dimensions
    loss = SelfAgentDistanceLoss(ManifoldDistance(Euclidean()))(s, t)
    expected = _loop_self_distance([_vec(r) for r in s], [_vec(r) for r in t], _euclid)
    assert loss.item() == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("scale", [0.3, 3.0, 30.0])
def test_self_poincare_distance_matches_loop(scale):
    c = 0.1
    s, t = _data(1, scale)
    loss = SelfAgentDistanceLoss(ManifoldDistance(PoincareBall(c)), beta=0.5)(s, t)
    dist = lambda a, b: _ball_dist(_to_ball(a, c), _to_ball(b, c), c)  # noqa: E731
    expected = _loop_self_distance([_vec(r) for r in s], [_vec(r) for r in t], dist, beta=0.5)
    assert loss.item() == pytest.approx(expected, rel=1e-6, abs=1e-9)


def test_self_angle_matches_loop():
    s, t = _data(2, dim_t=4)
    loss = SelfAgentAngleLoss()(s, t)
    assert loss.item() == pytest.approx(_loop_angle([_vec(r) for r in s], [_vec(r) for r in t]), rel=1e-9)


@pytest.mark.parametrize("name,relation,loop_rel", [
    ("euclidean", ManifoldDistance(Euclidean()), _euclid),
    ("cosine", CosineSimilarity(), lambda a, b: sum(p * q for p, q in zip(a, b))),
    ("poincare", ManifoldDistance(PoincareBall(0.1)),
     lambda a, b: _ball_dist(_to_ball(a, 0.1), _to_ball(b, 0.1), 0.1)),
])
def test_cross_agent_matches_loop(name, relation, loop_rel):
    s, t = _data(3, scale=4.0)
    loss = CrossAgentLoss(relation)(s, t)
    expected = _loop_cross([_vec(r) for r in s], [_vec(r) for r in t], loop_rel)
    assert loss.item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("module", [
    SelfAgentDistanceLoss(ManifoldDistance(Euclidean())),
    SelfAgentDistanceLoss(ManifoldDistance(PoincareBall(0.1))),
    SelfAgentAngleLoss(),
], ids=repr)
def test_self_agent_gradients_are_exact_and_never_reach_the_teacher(module):
    s, t = _data(4, scale=0.7)
    module(s, t).backward()
    assert t.grad is None and torch.isfinite(s.grad).all() and s.grad.abs().sum() > 0
    # Analytic gradient = finite differences (float64), teacher held fixed.
    s2 = s.detach().clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: module(x, t.detach()), (s2,), eps=1e-6, atol=1e-5)


@pytest.mark.parametrize("relation", [ManifoldDistance(Euclidean()), CosineSimilarity(),
                                      ManifoldDistance(PoincareBall(0.1))], ids=repr)
def test_cross_agent_gradient_treats_student_teacher_matrix_as_target(relation):
    s, t = _data(6, scale=0.7)
    CrossAgentLoss(relation)(s, t).backward()
    assert t.grad is None
    s0 = s.detach()
    unit = lambda x: x / x.norm(dim=-1, keepdim=True)  # noqa: E731
    target = relation(unit(s0), unit(t.detach()))
    frozen = lambda x: ((relation(unit(x), unit(x)) - target) ** 2).mean()  # noqa: E731
    numeric = torch.zeros_like(s0)
    h = 1e-6
    for i in range(B):
        for j in range(D):
            e = torch.zeros_like(s0)
            e[i, j] = h
            numeric[i, j] = (frozen(s0 + e) - frozen(s0 - e)) / (2 * h)
    assert torch.allclose(s.grad, numeric, atol=1e-7, rtol=1e-5)


def test_identical_student_and_teacher_give_zero_self_loss_and_scale_invariance():
    s, _ = _data(5)
    t = s.detach() * 7.0  # the distance relation is normalised, so scale is free
    assert SelfAgentDistanceLoss(ManifoldDistance(Euclidean()))(s, t).item() == pytest.approx(0.0, abs=1e-12)
    assert SelfAgentAngleLoss()(s, t).item() == pytest.approx(0.0, abs=1e-12)
    # Cross relations compare against the teacher itself: zero only for the same directions.
    assert CrossAgentLoss(CosineSimilarity())(s, t).item() == pytest.approx(0.0, abs=1e-12)
    assert CrossAgentLoss(CosineSimilarity())(s, -t).item() > 0.1


def test_collapsed_batch_gives_finite_loss():
    s = torch.ones(B, D, dtype=torch.float64, requires_grad=True)
    t = torch.randn(B, D, dtype=torch.float64)
    for module in [SelfAgentDistanceLoss(ManifoldDistance(Euclidean())),
                   SelfAgentDistanceLoss(ManifoldDistance(PoincareBall(0.1))), SelfAgentAngleLoss()]:
        loss = module(s, t)
        loss.backward()
        assert torch.isfinite(loss) and torch.isfinite(s.grad).all()


def test_angle_matrix_is_precise_in_float32_and_zero_for_coincident_points():
    from distilvpr_core.distill.relations import angle_matrix
    g = torch.Generator().manual_seed(7)
    # Raw embeddings of an untrained net: a large shared offset, small spread.
    x64 = 50.0 + 0.5 * torch.randn(10, 8, generator=g, dtype=torch.float64)
    loop = torch.tensor([[[_cos_angle(x64.tolist(), i, j, k) for k in range(10)] for j in range(10)]
                         for i in range(10)], dtype=torch.float64)
    assert torch.allclose(angle_matrix(x64), loop, atol=1e-10)
    assert torch.allclose(angle_matrix(x64.float()).double(), loop, atol=1e-3)
    x64[1] = x64[0]
    a = angle_matrix(x64)
    assert torch.all(a[0, 1] == 0) and torch.all(a[1, :, 0] == 0) and torch.isfinite(a).all()
