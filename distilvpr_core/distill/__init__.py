"""Losses: the triplet task loss, manifolds, relation losses, DistilVPR, baselines.

    from distilvpr_core.distill import DistillConfig, build_distill_loss, BatchHardTripletLoss
"""
from .config import DistillConfig
from .manifolds import MANIFOLDS, Euclidean, PoincareBall, Sphere, get_manifold
from .registry import METHODS, build_distill_loss, get_method
from .triplet import BatchHardTripletLoss, TripletStats

__all__ = ["DistillConfig", "build_distill_loss", "BatchHardTripletLoss", "TripletStats",
           "MANIFOLDS", "Euclidean", "Sphere", "PoincareBall", "get_manifold", "METHODS", "get_method"]
