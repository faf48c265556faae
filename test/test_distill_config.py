"""The distill: config section, the method registry and the on/off switches."""
from __future__ import annotations

from dataclasses import dataclass, field

import pytest
import torch

from distilvpr_core.foundation.config import ConfigError, dump_yaml, load_config
from distilvpr_core.distill import METHODS, DistillConfig, build_distill_loss, get_method
from distilvpr_core.foundation.errors import UserError

ALL_TERMS = {f"{k}_{m}" for k in ("self", "cross") for m in ("euclidean", "sphere", "poincare")}


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


@dataclass
class _Trainer:  # how the trainer embeds the section
    distill: DistillConfig = field(default_factory=DistillConfig)


def _cfg(**kw) -> DistillConfig:
    return load_config(DistillConfig, data=kw)


def _batch(seed=0, b=8, d=16, d_t=None):
    g = torch.Generator().manual_seed(seed)
    s = torch.randn(b, d, generator=g).requires_grad_(True)
    t = torch.randn(b, d_t or d, generator=g)
    return s, t


def test_defaults_are_the_papers_and_total_is_weighted_sum():
    cfg = DistillConfig()
    assert (cfg.method, cfg.lambda_self, cfg.curvature, cfg.cross_sphere_weight) == ("distilvpr", 10.0, 0.1, 0.1)
    loss, parts = build_distill_loss(cfg)(*_batch())
    assert set(parts) == ALL_TERMS | {"distill"}
    expected = sum(0.1 * parts[f"cross_{m}"] + 10.0 * parts[f"self_{m}"]
                   for m in ("euclidean", "sphere", "poincare"))
    assert loss.item() == pytest.approx(expected, rel=1e-5) and parts["distill"] == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("overrides,expected", [
    (dict(use_cross=False), {t for t in ALL_TERMS if t.startswith("self")}),
    (dict(use_self=False), {t for t in ALL_TERMS if t.startswith("cross")}),
    (dict(manifolds=["euclidean", "sphere"]), {t for t in ALL_TERMS if not t.endswith("poincare")}),
    (dict(manifolds=["sphere", "poincare"]), {t for t in ALL_TERMS if not t.endswith("euclidean")}),
    (dict(manifolds=["euclidean", "poincare"]), {t for t in ALL_TERMS if not t.endswith("sphere")}),
    (dict(cross_sphere_weight=0.0, self_poincare_weight=0.0), ALL_TERMS - {"cross_sphere", "self_poincare"}),
    (dict(lambda_self=0.0), {t for t in ALL_TERMS if t.startswith("cross")}),
])
def test_switches_really_switch(overrides, expected):
    module = build_distill_loss(_cfg(**overrides))
    assert set(module.terms) == expected
    s, t = _batch(1)
    loss, parts = module(s, t)
    assert set(parts) == expected | {"distill"}
    # Removed terms change the value: the full loss differs from the ablated one.
    full, _ = build_distill_loss(DistillConfig())(s, t)
    assert loss.item() != pytest.approx(full.item(), rel=1e-6)


def test_lambda_self_scales_only_the_self_terms():
    s, t = _batch(2)
    l10, p = build_distill_loss(_cfg(lambda_self=10.0))(s, t)
    l1, _ = build_distill_loss(_cfg(lambda_self=1.0))(s, t)
    self_sum = sum(p[f"self_{m}"] for m in ("euclidean", "sphere", "poincare"))
    assert l10.item() - l1.item() == pytest.approx(9.0 * self_sum, rel=1e-4)


@pytest.mark.parametrize("method", list(METHODS))
def test_every_method_builds_runs_and_backpropagates(method):
    s, t = _batch(3)
    loss, parts = build_distill_loss(_cfg(method=method))(s, t)
    assert loss.ndim == 0 and torch.isfinite(loss) and "distill" in parts
    loss.backward()
    if method == "none":
        assert loss.item() == 0.0 and parts == {"distill": 0.0}
    else:
        assert s.grad.abs().sum() > 0 and parts["distill"] == pytest.approx(loss.item(), rel=1e-6)


def test_none_adds_nothing_to_the_task_gradient():
    s, t = _batch(4)
    task = (s ** 2).sum()
    loss, _ = build_distill_loss(_cfg(method="none"))(s, t)
    (task + loss).backward()
    assert torch.equal(s.grad, 2 * s.detach())


def test_teacher_gets_no_gradient_and_half_precision_inputs_are_upcast():
    s, t = _batch(5)
    t.requires_grad_(True)
    module = build_distill_loss(DistillConfig())
    loss, _ = module(s, t)
    loss.backward()
    assert t.grad is None
    ref, _ = module(s.detach(), t.detach())
    half, _ = module(s.detach().bfloat16(), t.detach().bfloat16())
    assert half.dtype == torch.float32 and torch.isfinite(half)
    assert half.item() == pytest.approx(ref.item(), rel=0.1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        auto, _ = module(s.detach(), t.detach())
    assert auto.dtype == torch.float32 and auto.item() == pytest.approx(ref.item(), rel=1e-5)


def test_descriptor_size_mismatch_is_a_user_error_only_where_it_matters():
    s, t = _batch(6, d=16, d_t=12)
    with pytest.raises(UserError, match="student gives D=16 and the teacher D=12"):
        build_distill_loss(DistillConfig())(s, t)
    with pytest.raises(UserError, match="D=16"):
        build_distill_loss(_cfg(method="mse"))(s, t)
    for ok in (_cfg(method="rkd"), _cfg(use_cross=False), _cfg(method="kd")):
        module = build_distill_loss(ok)
        assert not module.requires_same_dim
        module(s, t)[0].backward()
    with pytest.raises(ValueError, match="same B"):
        build_distill_loss(DistillConfig())(torch.zeros(4, 8), torch.zeros(5, 8))


@pytest.mark.parametrize("overrides,shrinks", [
    ({}, ("self_euclidean", "self_sphere", "self_poincare", "distill")),
    (dict(use_self=False), ("cross_euclidean", "cross_sphere", "cross_poincare")),
])
def test_distillation_pulls_student_relations_towards_teacher(overrides, shrinks):
    torch.manual_seed(0)
    teacher = torch.randn(16, 24)
    student = torch.nn.Parameter(torch.randn(16, 24))
    module = build_distill_loss(_cfg(**overrides))
    opt = torch.optim.Adam([student], lr=0.02)
    _, first = module(student, teacher)
    for _ in range(150):
        loss, _ = module(student, teacher)
        opt.zero_grad()
        loss.backward()
        opt.step()
    _, last = module(student, teacher)
    for term in shrinks:
        assert last[term] < 0.8 * first[term], term


def test_registry_and_config_errors(tmp_path):
    assert list(METHODS) == ["none", "mse", "kd", "rkd", "pkt", "sp", "cc", "distilvpr"]
    with pytest.raises(ValueError, match=r"'fitnet'.*\['none', 'mse'"):
        get_method("fitnet")
    bad = tmp_path / "distil.yaml"
    bad.write_text("distill:\n  method: fitnet\n")
    with pytest.raises(ConfigError, match=r"distil.yaml: distill.method: expected one of \['none'"):
        load_config(_Trainer, bad)
    bad.write_text("distill:\n  manifolds: [euclidean, hyperbolic]\n")
    with pytest.raises(ConfigError, match="distill.manifolds: unknown manifold 'hyperbolic'"):
        load_config(_Trainer, bad)
    with pytest.raises(ConfigError, match="lists a manifold twice"):
        _cfg(manifolds=["sphere", "sphere"])
    with pytest.raises(ConfigError, match="set method: none"):
        _cfg(use_self=False, use_cross=False)
    with pytest.raises(ConfigError, match=r"distill.curvature: expected a value > 0"):
        load_config(_Trainer, None, overrides=["distill.curvature=0"])
    with pytest.raises(ConfigError, match="unknown key"):
        load_config(_Trainer, None, overrides=["distill.lambda_slef=1"])
    # The resolved config round-trips through YAML.
    cfg = load_config(_Trainer, None, overrides=["distill.manifolds=[sphere]", "distill.lambda_self=1"])
    good = tmp_path / "resolved.yaml"
    good.write_text(dump_yaml(cfg))
    assert load_config(_Trainer, good) == cfg


def test_cross_agent_terms_start_at_their_step_and_count_from_then_on():
    cfg = _cfg(cross_start_step=5)
    module = build_distill_loss(cfg)
    s, t = _batch(7)
    before, parts_before = module(s, t, 4)
    assert set(parts_before) == {t for t in ALL_TERMS if t.startswith("self")} | {"distill"}
    after, parts_after = module(s, t, 5)
    assert set(parts_after) == ALL_TERMS | {"distill"}
    # Before the start step the loss is the self-agent half exactly; from it on, the full method.
    self_only, _ = build_distill_loss(_cfg(use_cross=False))(s, t)
    full, _ = build_distill_loss(DistillConfig())(s, t)
    assert before.item() == pytest.approx(self_only.item(), rel=1e-6)
    assert after.item() == pytest.approx(full.item(), rel=1e-6)
    assert module(s, t)[0].item() == pytest.approx(full.item(), rel=1e-6)   # no step: every term
    # Only cross-agent terms have a start: baselines are unaffected at step 0.
    sp = build_distill_loss(_cfg(method="sp", cross_start_step=5))
    assert sp(s, t, 0)[0].item() == pytest.approx(sp(s, t)[0].item(), rel=1e-6) and sp(s, t, 0)[0].item() > 0
    with pytest.raises(ConfigError):
        _cfg(cross_start_step=-1)
