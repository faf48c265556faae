"""Hinton KD on similarity distributions (there are no class logits in VPR).

For each anchor, the cosine similarities to the other B-1 embeddings of the
batch, divided by a temperature, define a softmax distribution; the student's
is matched to the teacher's with KL(p_t || p_s) * T^2 (the T^2 keeps gradient
size independent of T, as in Hinton et al.).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _off_diagonal_similarities(x: Tensor) -> Tensor:
    """Cosine similarities without self-pairs: [B, D] -> [B, B-1]."""
    b = x.shape[0]
    x = F.normalize(x, dim=-1)
    sim = x @ x.T
    keep = ~torch.eye(b, dtype=torch.bool, device=x.device)
    return sim[keep].view(b, b - 1)


class SimilarityKDLoss(nn.Module):
    """KL(softmax(S_t / T) || softmax(S_s / T)) * T^2, averaged over anchors."""

    def __init__(self, temperature: float = 0.1) -> None:
        super().__init__()
        if not temperature > 0:
            raise ValueError(f"KD temperature must be > 0, got {temperature!r}")
        self.temperature = temperature

    def forward(self, student: Tensor, teacher: Tensor) -> Tensor:
        t = self.temperature
        with torch.no_grad():
            p_t = F.softmax(_off_diagonal_similarities(teacher) / t, dim=1)
        log_p_s = F.log_softmax(_off_diagonal_similarities(student) / t, dim=1)
        return F.kl_div(log_p_s, p_t, reduction="batchmean") * t * t

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}"
