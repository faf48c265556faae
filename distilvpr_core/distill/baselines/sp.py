"""Similarity-preserving KD (Tung & Mori, ICCV 2019) on final embeddings.

G = X X^T with each row L2-normalised; loss ||G_s - G_t||_F^2 / B^2.  The
paper weights it by gamma = 3000 (config ``sp_weight``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _row_normalised_gram(x: Tensor) -> Tensor:
    """[B, D] -> [B, B]."""
    return F.normalize(x @ x.T, dim=1)


class SimilarityPreservingLoss(nn.Module):
    """Squared Frobenius distance of row-normalised Gram matrices over B^2."""

    def forward(self, student: Tensor, teacher: Tensor) -> Tensor:
        with torch.no_grad():
            g_t = _row_normalised_gram(teacher)
        g_s = _row_normalised_gram(student)
        return ((g_s - g_t) ** 2).sum() / student.shape[0] ** 2
