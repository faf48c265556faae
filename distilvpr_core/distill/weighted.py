"""The distillation term the trainer calls: a weighted sum of named losses.

Every distillation method (DistilVPR, each baseline, none) is a dict of named
terms ``{name: (weight, module)}``; this module runs them in float32 (or
float64) with autocast off, so AMP training cannot push the manifold clamps
into float16, and returns the sum plus per-term values for logging.
"""
from __future__ import annotations

from typing import Mapping

import torch
from torch import Tensor, nn

from ..foundation.errors import UserError


class WeightedDistillLoss(nn.Module):
    """forward(student float [B, D_s], teacher float [B, D_t]) -> (loss, parts).

    ``loss`` is a scalar tensor sum_k w_k * term_k(student, teacher) (a zero
    tensor that supports ``backward`` when there are no terms); ``parts`` maps
    each term name to its unweighted value and ``"distill"`` to the weighted
    sum, as Python floats.  The teacher is detached.  Terms with weight 0 are
    never computed, nor are terms before their start step: ``starts`` maps a
    term name to the first optimiser step (0-based) at which it counts, and
    ``forward(..., step)`` leaves it out before then (``step=None``: every term).
    """

    def __init__(self, method: str, terms: Mapping[str, tuple[float, nn.Module]],
                 starts: Mapping[str, int] | None = None) -> None:
        super().__init__()
        self.method = method
        self.weights = {name: float(w) for name, (w, _) in terms.items() if w != 0}
        self.terms = nn.ModuleDict({name: m for name, (w, m) in terms.items() if w != 0})
        self.starts = {name: int(k) for name, k in (starts or {}).items() if name in self.terms}

    @property
    def requires_same_dim(self) -> bool:
        """True if some term compares student and teacher descriptors directly."""
        return any(getattr(m, "requires_same_dim", False) for m in self.terms.values())

    def forward(self, student: Tensor, teacher: Tensor, step: int | None = None
                ) -> tuple[Tensor, dict[str, float]]:
        self._check_shapes(student, teacher)
        active = {name: term for name, term in self.terms.items()
                  if step is None or step >= self.starts.get(name, 0)}
        dtype = torch.float64 if student.dtype == torch.float64 else torch.float32
        with torch.autocast(device_type=student.device.type, enabled=False):
            s = student.to(dtype)
            t = teacher.detach().to(device=student.device, dtype=dtype)
            values = {name: term(s, t) for name, term in active.items()}
        if not values:
            zero = torch.zeros((), device=student.device, dtype=dtype, requires_grad=True)
            return zero, {"distill": 0.0}
        loss = sum(self.weights[name] * v for name, v in values.items())
        # One device sync for all logged numbers instead of one per term.
        floats = torch.stack([v.detach() for v in values.values()] + [loss.detach()]).tolist()
        parts = dict(zip(list(values) + ["distill"], floats))
        return loss, parts

    def _check_shapes(self, student: Tensor, teacher: Tensor) -> None:
        if student.ndim != 2 or teacher.ndim != 2 or student.shape[0] != teacher.shape[0]:
            raise ValueError(f"distillation expects student [B, D] and teacher [B, D] with the same B; "
                             f"got {tuple(student.shape)} and {tuple(teacher.shape)}")
        if self.terms and student.shape[0] < 2:
            raise ValueError(f"relational distillation needs a batch of >= 2 places, got B={student.shape[0]}")
        if self.requires_same_dim and student.shape[1] != teacher.shape[1]:
            raise UserError(
                f"distill.method {self.method!r} compares student and teacher descriptors directly, but "
                f"the student gives D={student.shape[1]} and the teacher D={teacher.shape[1]}; use a "
                f"teacher whose descriptor size equals the student's, or a method that compares each side "
                f"only with itself (rkd, kd, pkt, sp, cc, or distilvpr with use_cross: false)")

    def extra_repr(self) -> str:
        starts = f", starts={self.starts}" if any(self.starts.values()) else ""
        return f"method={self.method!r}, weights={self.weights}{starts}"
