"""The ``distill:`` config section and the factory the trainer calls.

Example YAML (every key optional; these are the defaults)::

    distill:
      method: distilvpr            # none | mse | kd | rkd | pkt | sp | cc | distilvpr
      lambda_self: 10.0
      use_self: true
      use_cross: true
      manifolds: [euclidean, sphere, poincare]

Ablations: ``use_cross: false`` (self only), ``use_self: false`` (cross
only), ``manifolds: [euclidean, sphere]`` (Poincaré removed), or any single
weight set to 0.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..foundation.config import ConfigError, spec

#: The methods that registry.METHODS builds (checked there), kept here so a config is
#: validated without importing torch.
METHOD_NAMES = ("none", "mse", "kd", "rkd", "pkt", "sp", "cc", "distilvpr")

MANIFOLD_NAMES = ("euclidean", "sphere", "poincare")


@dataclass
class DistillConfig:
    """How the student is distilled from the (cached) teacher embeddings."""

    method: str = field(default="distilvpr", metadata=spec(
        "distillation method: none (task loss only), a baseline, or distilvpr",
        choices=list(METHOD_NAMES)))
    # --- DistilVPR
    lambda_self: float = field(default=10.0, metadata=spec(
        "weight of the self-agent sum (paper: 10 on Oxford, 1 on Boreas)", ge=0))
    use_self: bool = field(default=True, metadata=spec(
        "distilvpr: use self-agent relations (teacher-teacher vs student-student)"))
    use_cross: bool = field(default=True, metadata=spec(
        "distilvpr: use cross-agent relations (student-student vs student-teacher)"))
    manifolds: list[str] = field(default_factory=lambda: list(MANIFOLD_NAMES), metadata=spec(
        f"distilvpr: manifolds whose relations are distilled, a subset of {list(MANIFOLD_NAMES)}"))
    self_euclidean_weight: float = field(default=1.0, metadata=spec(
        "self-agent Euclidean distance term, inside lambda_self", ge=0))
    self_sphere_weight: float = field(default=1.0, metadata=spec(
        "self-agent angle (spherical) term, inside lambda_self", ge=0))
    self_poincare_weight: float = field(default=1.0, metadata=spec(
        "self-agent Poincaré distance term, inside lambda_self", ge=0))
    cross_euclidean_weight: float = field(default=0.1, metadata=spec(
        "cross-agent Euclidean distance term", ge=0))
    cross_sphere_weight: float = field(default=0.1, metadata=spec(
        "cross-agent cosine-similarity (spherical) term", ge=0))
    cross_poincare_weight: float = field(default=0.1, metadata=spec(
        "cross-agent Poincaré distance term", ge=0))
    cross_start_step: int = field(default=0, metadata=spec(
        "distilvpr: optimiser step from which the cross-agent terms count (0: from the first step, "
        "the paper's schedule); before it they are not computed", ge=0))
    curvature: float = field(default=0.1, metadata=spec(
        "Poincaré ball curvature c (ball radius 1/sqrt(c))", gt=0))
    smooth_l1_beta: float = field(default=1.0, metadata=spec(
        "Smooth-L1 beta of the self-agent and RKD losses", gt=0))
    # --- baselines (each used only by its own method)
    mse_weight: float = field(default=1.0, metadata=spec("mse: embedding regression weight", ge=0))
    kd_weight: float = field(default=1.0, metadata=spec("kd: similarity-distribution KD weight", ge=0))
    kd_temperature: float = field(default=0.1, metadata=spec(
        "kd: softmax temperature on cosine similarities", gt=0))
    rkd_distance_weight: float = field(default=1.0, metadata=spec("rkd: distance term weight", ge=0))
    rkd_angle_weight: float = field(default=2.0, metadata=spec(
        "rkd: angle term weight (RKD paper ratio distance:angle = 1:2)", ge=0))
    pkt_weight: float = field(default=1.0, metadata=spec("pkt: probabilistic transfer weight", ge=0))
    sp_weight: float = field(default=3000.0, metadata=spec(
        "sp: similarity-preserving weight (paper's gamma = 3000)", ge=0))
    cc_weight: float = field(default=1.0, metadata=spec("cc: correlation congruence weight", ge=0))
    cc_gamma: float = field(default=0.4, metadata=spec("cc: RBF kernel width gamma", gt=0))

    def __post_init__(self) -> None:
        unknown = [m for m in self.manifolds if m not in MANIFOLD_NAMES]
        if unknown:
            raise ConfigError(f"distill.manifolds: unknown manifold {unknown[0]!r}; valid names are "
                              f"{list(MANIFOLD_NAMES)}")
        if len(set(self.manifolds)) != len(self.manifolds):
            raise ConfigError(f"distill.manifolds: {self.manifolds} lists a manifold twice; list each once")
        if self.method == "distilvpr" and not (self.manifolds and (self.use_self or self.use_cross)):
            raise ConfigError("distill: method distilvpr with no manifolds or with use_self and use_cross "
                              "both false distils nothing; set method: none for a plain student")

