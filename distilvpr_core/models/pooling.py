"""Generalised-mean (GeM) pooling, ONNX-exportable.

GeM(x) = (mean_{h,w} max(x, eps)^p)^(1/p) per channel, with a learnable p.
Written as clamp + pow + mean so it exports to plain ONNX ops (Max/Pow/
ReduceMean) with any spatial size, and runs in TensorRT without plugins.
"""
from __future__ import annotations

import torch
from torch import nn


class GeM(nn.Module):
    """GeM pooling: float32 [B, C, H, W] -> [B, C].

    ``p`` is learnable (init 3) as in Radenović et al.; ``eps`` keeps the pow
    of non-positive activations finite.
    """

    def __init__(self, p: float = 3.0, eps: float = 1e-6, learn_p: bool = True) -> None:
        super().__init__()
        self.p = nn.Parameter(torch.full((1,), float(p)), requires_grad=learn_p)
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.p
        return x.clamp(min=self.eps).pow(p).mean(dim=(2, 3)).pow(1.0 / p)

    def extra_repr(self) -> str:
        return f"p={self.p.item():.3f}, eps={self.eps}"
