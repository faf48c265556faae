"""Manifold identities in float32 and float64, against independent formulas."""
from __future__ import annotations

import math

import pytest
import torch

from distilvpr_core.distill.manifolds import (GUARDS, Euclidean, PoincareBall, Sphere, get_manifold,
                                              guards_for, mobius_add)

DTYPES = [torch.float32, torch.float64]
MANIFOLDS = [Euclidean(), Sphere(), PoincareBall(0.1), PoincareBall(1.0)]
TOL = {torch.float32: dict(atol=2e-4, rtol=1e-4), torch.float64: dict(atol=1e-9, rtol=1e-9)}


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def _points(manifold, n: int, dtype, seed: int = 0, scale: float = 1.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return manifold.embed(scale * torch.randn(n, 6, generator=g, dtype=torch.float64).to(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("manifold", MANIFOLDS, ids=repr)
def test_metric_axioms_and_matrix_matches_rowwise(manifold, dtype):
    # Scale 0.5 keeps ball points away from the edge, where artanh amplifies
    # float32 rounding (the edge has its own gradient test below).
    x = _points(manifold, 7, dtype, seed=1, scale=0.5)
    y = _points(manifold, 5, dtype, seed=2, scale=0.5)
    dxx = manifold.dist(x, x)
    assert dxx.dtype == dtype
    assert torch.allclose(dxx, torch.zeros_like(dxx), atol=TOL[dtype]["atol"])
    assert torch.allclose(torch.diagonal(manifold.dist_matrix(x, x)), torch.zeros(7, dtype=dtype),
                          atol=TOL[dtype]["atol"])
    dm = manifold.dist_matrix(x, y)
    assert dm.shape == (7, 5) and dm.dtype == dtype
    assert (dm >= 0).all()
    assert torch.allclose(dm, manifold.dist_matrix(y, x).T, **TOL[dtype])
    loop = torch.tensor([[float(manifold.dist(x[i], y[j])) for j in range(5)] for i in range(7)], dtype=dtype)
    assert torch.allclose(dm, loop, **TOL[dtype])
    assert torch.allclose(manifold.dist(x[:5], y), manifold.dist(y, x[:5]), **TOL[dtype])
    # Triangle inequality on every triple.
    dxy = manifold.dist_matrix(x, y)
    dyy = manifold.dist_matrix(y, y)
    assert (dxy.unsqueeze(2) <= dxy.unsqueeze(1) + dyy.unsqueeze(0) + 1e-3).all()


@pytest.mark.parametrize("dtype", DTYPES)
def test_euclidean_distance_is_the_textbook_one(dtype):
    x = torch.tensor([[0.0, 0.0], [3.0, 4.0]], dtype=dtype)
    assert Euclidean().dist_matrix(x, x).tolist() == [[0.0, 5.0], [5.0, 0.0]]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("c", [0.1, 1.0])
def test_poincare_distance_matches_arcosh_formula(dtype, c):
    # Independent closed form: arcosh(1 + 2c|x-y|^2 / ((1-c|x|^2)(1-c|y|^2))) / sqrt(c).
    ball = PoincareBall(c)
    x = _points(ball, 6, dtype, seed=3, scale=0.8)
    y = _points(ball, 6, dtype, seed=4, scale=0.8)
    nx, ny = (x * x).sum(-1), (y * y).sum(-1)
    arg = 1 + 2 * c * ((x - y) ** 2).sum(-1) / ((1 - c * nx) * (1 - c * ny))
    expected = torch.acosh(arg) / math.sqrt(c)
    assert torch.allclose(ball.dist(x, y), expected, **TOL[dtype])
    assert torch.allclose(torch.diagonal(ball.dist_matrix(x, y)), expected, **TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
def test_poincare_exp0_maps_norm_to_twice_the_distance_from_origin(dtype):
    ball = PoincareBall(0.1)
    v = torch.randn(8, 6, dtype=dtype, generator=torch.Generator().manual_seed(5))
    v = v / v.norm(dim=-1, keepdim=True) * torch.linspace(0.1, 8.0, 8, dtype=dtype).unsqueeze(1)
    y = ball.expmap0(v)
    zero = torch.zeros_like(y)
    # The ball metric is 2x Euclidean at the origin: dist(0, exp0(v)) = 2|v|.
    assert torch.allclose(ball.dist(zero, y), 2 * v.norm(dim=-1), atol=1e-3, rtol=1e-4)
    assert torch.allclose(ball.logmap0(y), v, atol=1e-3, rtol=1e-4)


@pytest.mark.parametrize("dtype", DTYPES)
def test_poincare_projection_keeps_points_inside_and_interior_untouched(dtype):
    c = 0.1
    ball = PoincareBall(c)
    radius = (1 - GUARDS[dtype].ball_eps) / math.sqrt(c)
    huge = torch.randn(10, 6, dtype=dtype) * 1e6
    assert (ball.projx(huge).norm(dim=-1) <= radius * (1 + 1e-6)).all()
    assert (ball.embed(huge).norm(dim=-1) <= radius * (1 + 1e-6)).all()
    inner = torch.randn(10, 6, dtype=dtype)
    inner = inner / inner.norm(dim=-1, keepdim=True) * 0.5 * radius
    assert torch.equal(ball.projx(inner), inner)


@pytest.mark.parametrize("dtype", DTYPES)
def test_mobius_addition_identities(dtype):
    c = 0.1
    ball = PoincareBall(c)
    x = _points(ball, 4, dtype, seed=6)
    y = _points(ball, 4, dtype, seed=7)
    assert torch.allclose(mobius_add(torch.zeros_like(x), x, c), x, **TOL[dtype])
    assert torch.allclose(mobius_add(x, torch.zeros_like(x), c), x, **TOL[dtype])
    assert torch.allclose(mobius_add(-x, x, c), torch.zeros_like(x), atol=TOL[dtype]["atol"])
    # Left cancellation law: (-x) (+) (x (+) y) = y.
    assert torch.allclose(mobius_add(-x, mobius_add(x, y, c), c), y, atol=1e-3 if dtype == torch.float32 else 1e-8)


@pytest.mark.parametrize("dtype", DTYPES)
def test_poincare_gradients_finite_at_ball_edge(dtype):
    c = 0.1
    ball = PoincareBall(c)
    direction = torch.randn(6, 6, dtype=dtype)
    direction = direction / direction.norm(dim=-1, keepdim=True)
    for radius in [(1 - 1e-3) / math.sqrt(c), (1 - 1e-6) / math.sqrt(c), 10.0]:
        x = (direction * radius).requires_grad_(True)
        ball.dist_matrix(ball.projx(x), ball.projx(x)).sum().backward()
        assert torch.isfinite(x.grad).all()
    # Raw features far outside the saturating tanh, and exactly zero.
    v = torch.cat([direction * 1e4, torch.zeros(1, 6, dtype=dtype)]).requires_grad_(True)
    e = ball.embed(v)
    (ball.dist_matrix(e, e).sum() + ball.dist(e[:-1], e[1:]).sum()).backward()
    assert torch.isfinite(v.grad).all()


@pytest.mark.parametrize("dtype", DTYPES)
def test_sphere_distance_is_the_angle_and_exp_log_round_trip(dtype):
    sphere = Sphere()
    x = _points(sphere, 6, dtype, seed=8)
    y = _points(sphere, 6, dtype, seed=9)
    angle = torch.arccos((x * y).sum(-1).clamp(-1, 1))
    assert torch.allclose(sphere.dist(x, y), angle, **TOL[dtype])
    u = torch.randn(6, 6, dtype=dtype)
    u = u - (u * x).sum(-1, keepdim=True) * x          # tangent at x
    u = u / u.norm(dim=-1, keepdim=True) * torch.linspace(0.1, 3.0, 6, dtype=dtype).unsqueeze(1)
    z = sphere.expmap(x, u)
    assert torch.allclose(z.norm(dim=-1), torch.ones(6, dtype=dtype), **TOL[dtype])
    assert torch.allclose(sphere.dist(x, z), u.norm(dim=-1), atol=1e-3 if dtype == torch.float32 else 1e-8)
    assert torch.allclose(sphere.logmap(x, z), u, atol=2e-3 if dtype == torch.float32 else 1e-7)


@pytest.mark.parametrize("dtype", DTYPES)
def test_sphere_gradients_finite_at_zero_and_antipodal(dtype):
    sphere = Sphere()
    x = sphere.embed(torch.randn(3, 5, dtype=dtype))
    pts = torch.cat([x, x, -x]).requires_grad_(True)
    d = sphere.dist_matrix(pts, pts)
    assert torch.allclose(d[0, 6], torch.tensor(math.pi, dtype=dtype))
    d.sum().backward()
    assert torch.isfinite(pts.grad).all()


def test_registry_and_dtype_guards():
    assert isinstance(get_manifold("poincare", curvature=0.5), PoincareBall)
    assert get_manifold("poincare", curvature=0.5).c == 0.5
    assert isinstance(get_manifold("sphere"), Sphere)
    with pytest.raises(ValueError, match=r"'hyperboloid'.*\['euclidean', 'poincare', 'sphere'\]"):
        get_manifold("hyperboloid")
    with pytest.raises(ValueError, match="float16.*cast the embeddings to float32"):
        guards_for(torch.float16)
    with pytest.raises(ValueError, match="float16"):
        PoincareBall(0.1).dist_matrix(torch.zeros(2, 3, dtype=torch.float16), torch.zeros(2, 3, dtype=torch.float16))
    with pytest.raises(ValueError, match="curvature"):
        PoincareBall(0.0)
