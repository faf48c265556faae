"""Correlation congruence (Peng et al., ICCV 2019) on final embeddings.

The correlation between instances is a Gaussian RBF kernel
exp(-gamma ||x_i - x_j||^2) of the L2-normalised embeddings (computed exactly;
the paper's Taylor expansion only saves time at large B); the loss is
||C_s - C_t||_F^2 / B^2.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..manifolds import euclidean_dist_matrix


def _rbf_correlation(x: Tensor, gamma: float) -> Tensor:
    """[B, D] -> [B, B] in (0, 1], ones on the diagonal."""
    x = F.normalize(x, dim=-1)
    return torch.exp(-gamma * euclidean_dist_matrix(x, x) ** 2)


class CorrelationCongruenceLoss(nn.Module):
    """||C_s - C_t||_F^2 / B^2 with RBF correlations of width ``gamma``."""

    def __init__(self, gamma: float = 0.4) -> None:
        super().__init__()
        if not gamma > 0:
            raise ValueError(f"CC kernel gamma must be > 0, got {gamma!r}")
        self.gamma = gamma

    def forward(self, student: Tensor, teacher: Tensor) -> Tensor:
        with torch.no_grad():
            c_t = _rbf_correlation(teacher, self.gamma)
        c_s = _rbf_correlation(student, self.gamma)
        return ((c_s - c_t) ** 2).sum() / student.shape[0] ** 2

    def extra_repr(self) -> str:
        return f"gamma={self.gamma}"
