"""Embedding regression (FitNets-style hint on the final descriptor)."""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class EmbeddingMSELoss(nn.Module):
    """Mean squared error between raw student and teacher embeddings, [B, D] each."""

    requires_same_dim = True

    def forward(self, student: Tensor, teacher: Tensor) -> Tensor:
        return F.mse_loss(student, teacher.detach())
