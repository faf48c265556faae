"""The DistilVPR distillation term (Wang et al., AAAI 2024).

    L_distil = sum_m w_cross[m] * Cross_m  +  lambda_self * sum_m w_self[m] * Self_m

over the manifolds m in {euclidean, sphere, poincare}:

===========  ============================================  ==========================
manifold     self-agent (raw embeddings, Smooth-L1)         cross-agent (L2-normed, MSE)
===========  ============================================  ==========================
euclidean    distance matrix / its mean positive entry      distance matrix
sphere       cosines of all triplet angles (RKD-angle)      cosine similarity matrix
poincare     ball distance of projx(expmap0(x)) / mean      ball distance matrix
===========  ============================================  ==========================

Defaults follow the paper's Oxford setting: cross weights 0.1, lambda_self 10.
"""
from __future__ import annotations

from typing import Callable

from torch import nn

from .config import DistillConfig
from .cross_agent import CrossAgentLoss
from .manifolds import Euclidean, PoincareBall
from .relations import CosineSimilarity, ManifoldDistance, MeanNormScaled
from .self_agent import SelfAgentAngleLoss, SelfAgentDistanceLoss

# manifold name -> builder of its self-agent loss (beta, curvature)
SELF_AGENT: dict[str, Callable[[float, float], nn.Module]] = {
    "euclidean": lambda beta, c: SelfAgentDistanceLoss(ManifoldDistance(Euclidean()), beta),
    "sphere": lambda beta, c: SelfAgentAngleLoss(beta),
    # Raw embeddings are rescaled onto the informative part of the ball (relations.MeanNormScaled;
    # the reference maps them unscaled and relies on its artanh gradient through the clamp).
    "poincare": lambda beta, c: SelfAgentDistanceLoss(
        MeanNormScaled(ManifoldDistance(PoincareBall(c)), 1.0 / c ** 0.5), beta),
}

# manifold name -> builder of its cross-agent loss (curvature)
CROSS_AGENT: dict[str, Callable[[float], nn.Module]] = {
    "euclidean": lambda c: CrossAgentLoss(ManifoldDistance(Euclidean())),
    "sphere": lambda c: CrossAgentLoss(CosineSimilarity()),
    "poincare": lambda c: CrossAgentLoss(ManifoldDistance(PoincareBall(c))),
}


def distilvpr_terms(cfg: DistillConfig) -> dict[str, tuple[float, nn.Module]]:
    """Named, weighted terms of the DistilVPR loss enabled by ``cfg``."""
    terms: dict[str, tuple[float, nn.Module]] = {}
    for m in cfg.manifolds:
        if cfg.use_cross:
            terms[f"cross_{m}"] = (getattr(cfg, f"cross_{m}_weight"), CROSS_AGENT[m](cfg.curvature))
    for m in cfg.manifolds:
        if cfg.use_self:
            weight = cfg.lambda_self * getattr(cfg, f"self_{m}_weight")
            terms[f"self_{m}"] = (weight, SELF_AGENT[m](cfg.smooth_l1_beta, cfg.curvature))
    return terms
