"""Generalised-mean (GeM) pooling, ONNX-exportable and safe in fp16.

GeM(x) = (mean_{h,w} max(x, eps)^p)^(1/p) per channel, with a learnable p.

Computed as ``m * (mean((x / m)^p))^(1/p)`` with ``m`` the per-channel
spatial maximum: GeM is positively homogeneous of degree 1, so this equals
the textbook form exactly, but every power stays in (0, 1].  The textbook
form overflows fp16 (max 65504) once an activation exceeds ~40 at p = 3,
giving inf and then NaN after L2 normalisation, in torch half/autocast and
in a TensorRT fp16 engine alike.  ``m`` is detached: for a 1-homogeneous
function treating the scale as a constant gives the exact gradient, and it
keeps the non-smooth max out of backprop.  Plain ONNX ops (Clip, ReduceMax,
Div, Pow, ReduceMean, Mul): no plugin in TensorRT.
"""
from __future__ import annotations

import torch
from torch import nn


class GeM(nn.Module):
    """GeM pooling: float [B, C, H, W] -> [B, C] (same dtype as ``x``).

    ``p`` is learnable (init 3) as in Radenović et al.; ``eps`` keeps the pow
    of non-positive activations finite.
    """

    def __init__(self, p: float = 3.0, eps: float = 1e-6, learn_p: bool = True) -> None:
        super().__init__()
        self.p = nn.Parameter(torch.full((1,), float(p)), requires_grad=learn_p)
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.p
        x = x.clamp(min=self.eps)
        m = x.amax(dim=(2, 3), keepdim=True).detach()
        return (x / m).pow(p).mean(dim=(2, 3)).pow(1.0 / p) * m.flatten(1)

    def extra_repr(self) -> str:
        return f"p={self.p.item():.3f}, eps={self.eps}"
