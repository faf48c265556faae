"""GeM in fp16/bf16: finite and equal to fp32 on activations of a trained network's size.

x^3 overflows fp16 (max 65504) above ~40; a trained student's 1x1-conv
activations reach that (random init stays below ~4, so the tests scale them).
The safe form must equal the textbook GeM exactly in float64, gradients included.
"""
from __future__ import annotations

import pytest
import torch

from distilvpr_core.infer.torch_backend import pin_pooling_fp32
from distilvpr_core.models import GeM, StudentConfig, build_student


def textbook_gem(x: torch.Tensor, p: torch.Tensor, eps: float) -> torch.Tensor:
    return x.clamp(min=eps).pow(p).mean(dim=(2, 3)).pow(1.0 / p)


def activations(seed: int = 0, scale: float = 60.0) -> torch.Tensor:
    """ReLU'd heavy-tailed activations [4, 384, 15, 20]; max ~ 5 x scale, sparse like real features."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(4, 384, 15, 20, generator=g).relu() * scale
    return x * (torch.rand(4, 384, 1, 1, generator=g) + 0.05)


def test_safe_form_equals_textbook_gem_with_gradients_float64():
    gem = GeM(p=3.0).double()
    x = (torch.randn(2, 8, 5, 7, dtype=torch.float64) * 3).requires_grad_()
    x2 = x.detach().clone().requires_grad_()
    p2 = gem.p.detach().clone().requires_grad_()
    y, ref = gem(x), textbook_gem(x2, p2, gem.eps)
    torch.testing.assert_close(y, ref, rtol=1e-12, atol=1e-12)
    w = torch.randn_like(y)
    (y * w).sum().backward()
    (ref * w).sum().backward()
    torch.testing.assert_close(x.grad, x2.grad, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(gem.p.grad, p2.grad, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_gem_low_precision_is_finite_and_matches_fp32(dtype):
    x = activations()
    assert x.max() > 100  # the textbook form overflows fp16 here ...
    assert not torch.isfinite(textbook_gem(x.half(), torch.tensor([3.0]).half(), 1e-6)).all()
    gem = GeM(p=3.0)
    ref = gem(x)
    low = gem.to(dtype)(x.to(dtype)).float()
    assert torch.isfinite(low).all()
    torch.testing.assert_close(low, ref, rtol=2e-2 if dtype == torch.bfloat16 else 3e-3, atol=1e-3)
    cos = torch.nn.functional.cosine_similarity(low, ref)
    assert cos.min() > 0.9999


def test_gem_all_below_eps_stays_finite_in_fp16():
    x = torch.zeros(1, 4, 3, 3, dtype=torch.float16)
    y = GeM().half()(x)
    assert torch.isfinite(y).all() and (y > 0).all()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_student_low_precision_matches_fp32_with_trained_size_activations(dtype):
    torch.manual_seed(0)
    model = build_student(StudentConfig(dim=64)).eval()
    with torch.no_grad():
        model.proj.weight.mul_(25.0)  # activations of a trained network's size (max > 40)
        x = torch.randn(2, 3, 120, 160)
        assert model.proj(model.backbone(x)).max() > 40
        ref = model(x)
        low = build_student(StudentConfig(dim=64)).eval()
        low.load_state_dict(model.state_dict())
        out = low.to(dtype)(x.to(dtype)).float()
    assert torch.isfinite(out).all()
    cos = torch.nn.functional.cosine_similarity(out, ref)
    assert cos.min() > (0.999 if dtype == torch.float16 else 0.995), cos


def test_torch_backend_pins_pooling_to_fp32():
    model = build_student(StudentConfig(dim=32)).eval().half()
    assert pin_pooling_fp32(model) == 1
    assert model.pool.p.dtype == torch.float32
    with torch.no_grad():
        out = model.pool(activations(scale=80.0)[:, :32].half())
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
