"""Cross-agent relation loss: student-student vs student-teacher relations.

Both sides are L2-normalised first, so the student and teacher must have the
same dimension D.  The student-teacher matrix R(s, t) is the target (detached);
the student-student matrix R(s, s) is pulled towards it with MSE, i.e. the
student's neighbourhood structure is aligned with where the teacher puts the
same places (DistilVPR, "st2ss").
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

Relation = Callable[[Tensor, Tensor], Tensor]


class CrossAgentLoss(nn.Module):
    """MSE(R(s, s), R(s, t).detach()) on L2-normalised float [B, D] embeddings."""

    requires_same_dim = True

    def __init__(self, relation: Relation) -> None:
        super().__init__()
        self.relation = relation

    def forward(self, student: Tensor, teacher: Tensor) -> Tensor:
        s = F.normalize(student, dim=-1)
        t = F.normalize(teacher, dim=-1)
        with torch.no_grad():
            target = self.relation(s, t)
        return F.mse_loss(self.relation(s, s), target)

    def extra_repr(self) -> str:
        return f"relation={self.relation!r}"
