"""Knowledge-distillation baselines for the comparison table, one per module.

Each is an ``nn.Module`` with ``forward(student float [B, D], teacher float
[B, D]) -> loss scalar`` whose teacher side carries no gradient.  RKD reuses
the self-agent relation losses (see :mod:`distilvpr_core.distill.registry`).
"""
