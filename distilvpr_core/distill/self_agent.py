"""Self-agent relation losses: teacher-teacher vs student-student relations.

Inputs are raw (not normalised) embeddings, student float [B, D_s] and teacher
float [B, D_t]; the dimensions may differ because each side is only compared
with itself.  The teacher side carries no gradient.  Smooth-L1 (Huber) with
``beta`` compares the two relations, as in the DistilVPR reference / RKD.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .relations import angle_matrix, normalise_by_mean_positive

Relation = Callable[[Tensor, Tensor], Tensor]


class SelfAgentDistanceLoss(nn.Module):
    """Smooth-L1 between scale-normalised distance matrices, D_ss vs D_tt.

    ``relation`` gives the distance matrix (e.g. ``ManifoldDistance(Euclidean())``
    or ``ManifoldDistance(PoincareBall(0.1))``); each matrix is divided by its
    mean positive entry so only the shape of the relation is distilled.
    """

    def __init__(self, relation: Relation, beta: float = 1.0) -> None:
        super().__init__()
        self.relation = relation
        self.beta = beta

    def forward(self, student: Tensor, teacher: Tensor) -> Tensor:
        with torch.no_grad():
            d_t = normalise_by_mean_positive(self.relation(teacher, teacher))
        d_s = normalise_by_mean_positive(self.relation(student, student))
        return F.smooth_l1_loss(d_s, d_t, beta=self.beta)

    def extra_repr(self) -> str:
        return f"relation={self.relation!r}, beta={self.beta}"


class SelfAgentAngleLoss(nn.Module):
    """Smooth-L1 between the cosines of all triplet angles (the spherical relation).

    Cost is O(B^3 + B^2 D); 128 x 384 takes a few ms.
    """

    def __init__(self, beta: float = 1.0) -> None:
        super().__init__()
        self.beta = beta

    def forward(self, student: Tensor, teacher: Tensor) -> Tensor:
        with torch.no_grad():
            a_t = angle_matrix(teacher)
        return F.smooth_l1_loss(angle_matrix(student), a_t, beta=self.beta)

    def extra_repr(self) -> str:
        return f"beta={self.beta}"
