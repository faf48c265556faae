"""Probabilistic knowledge transfer (Passalis & Tefas, ECCV 2018).

Cosine-kernel affinities (cos + 1) / 2 between the embeddings of a batch,
normalised per row to conditional probabilities; the loss is the KL
divergence from the teacher's to the student's, averaged over all entries.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _conditional_probabilities(x: Tensor) -> Tensor:
    """[B, D] -> [B, B], rows sum to 1 (self-affinity included, as in PKT)."""
    x = F.normalize(x, dim=-1)
    k = (x @ x.T + 1.0) / 2.0
    return k / k.sum(dim=1, keepdim=True)


class PKTLoss(nn.Module):
    """mean(p_t * log((p_t + eps) / (p_s + eps))) over the [B, B] matrices."""

    def __init__(self, eps: float = 1e-7) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, student: Tensor, teacher: Tensor) -> Tensor:
        with torch.no_grad():
            p_t = _conditional_probabilities(teacher)
        p_s = _conditional_probabilities(student)
        return (p_t * torch.log((p_t + self.eps) / (p_s + self.eps))).mean()
