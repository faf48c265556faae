"""Distillation methods by name: each builds its dict of weighted terms.

``METHODS[name](cfg) -> {term_name: (weight, nn.Module)}``; an empty dict is
"no distillation".  :func:`get_method` raises ``ValueError`` listing the valid
names for an unknown one.
"""
from __future__ import annotations

from typing import Callable

from torch import nn

from .baselines.cc import CorrelationCongruenceLoss
from .baselines.kd import SimilarityKDLoss
from .baselines.mse import EmbeddingMSELoss
from .baselines.pkt import PKTLoss
from .baselines.sp import SimilarityPreservingLoss
from .config import METHOD_NAMES, DistillConfig
from .distilvpr import distilvpr_terms
from .manifolds import Euclidean
from .relations import ManifoldDistance
from .self_agent import SelfAgentAngleLoss, SelfAgentDistanceLoss
from .weighted import WeightedDistillLoss

Terms = dict[str, tuple[float, nn.Module]]


def _rkd_terms(cfg: DistillConfig) -> Terms:
    # RKD (Park et al., CVPR 2019) is the Euclidean distance + angle self-agent pair.
    return {"rkd_distance": (cfg.rkd_distance_weight,
                             SelfAgentDistanceLoss(ManifoldDistance(Euclidean()), cfg.smooth_l1_beta)),
            "rkd_angle": (cfg.rkd_angle_weight, SelfAgentAngleLoss(cfg.smooth_l1_beta))}


METHODS: dict[str, Callable[[DistillConfig], Terms]] = {
    "none": lambda cfg: {},
    "mse": lambda cfg: {"mse": (cfg.mse_weight, EmbeddingMSELoss())},
    "kd": lambda cfg: {"kd": (cfg.kd_weight, SimilarityKDLoss(cfg.kd_temperature))},
    "rkd": _rkd_terms,
    "pkt": lambda cfg: {"pkt": (cfg.pkt_weight, PKTLoss())},
    "sp": lambda cfg: {"sp": (cfg.sp_weight, SimilarityPreservingLoss())},
    "cc": lambda cfg: {"cc": (cfg.cc_weight, CorrelationCongruenceLoss(cfg.cc_gamma))},
    "distilvpr": distilvpr_terms,
}
assert tuple(METHODS) == METHOD_NAMES, "config.METHOD_NAMES must list the registry"


def get_method(name: str) -> Callable[[DistillConfig], Terms]:
    """The term builder of method ``name``."""
    if name not in METHODS:
        raise ValueError(f"unknown distillation method {name!r}; valid names: {list(METHODS)}")
    return METHODS[name]


def build_distill_loss(cfg: DistillConfig) -> nn.Module:
    """The distillation term for ``cfg`` as a :class:`WeightedDistillLoss`.

    ``loss, parts = module(student float [B, D], teacher float [B, D], step)``: the
    scalar loss tensor (to be added to the task loss) and ``{term: float}``
    for logging (``parts["distill"]`` is the weighted total).
    """
    terms = get_method(cfg.method)(cfg)
    starts = {name: cfg.cross_start_step for name in terms if name.startswith("cross_")}
    return WeightedDistillLoss(cfg.method, terms, starts)
