"""``config/local_features.yaml``: what ``distilvpr train-local`` renders and how it trains."""
from __future__ import annotations

from dataclasses import dataclass, field

from ..foundation.config import spec


def _seeds() -> list[int]:
    return [1]


def _crop() -> list[int]:
    return [128, 160]


@dataclass
class LocalTrainConfig:
    """Root of ``config/local_features.yaml`` (every field has a default)."""
    synth_config: str = field(default="config/synth_towns.yaml", metadata=spec(
        "synthetic-town config whose world and drives are rendered (its traversals give the looks "
        "and the places)"))
    seeds: list[int] = field(default_factory=_seeds, metadata=spec(
        "world seeds of the training towns (synth_config's seed replaced); never a test town"))
    places: int = field(default=120, metadata=spec("training places rendered per town", ge=1))
    val_places: int = field(default=12, metadata=spec("held-out places for the best checkpoint", ge=1))
    forward_m: float = field(default=4.0, metadata=spec("second viewpoint: +- metres along base_link x", ge=0))
    lateral_m: float = field(default=1.0, metadata=spec("second viewpoint: +- metres along base_link y", ge=0))
    yaw_deg: float = field(default=8.0, metadata=spec("second viewpoint: +- degrees of yaw", ge=0, le=45))
    steps: int = field(default=600, metadata=spec("optimiser steps", ge=1))
    batch_pairs: int = field(default=4, metadata=spec("view pairs per step", ge=1))
    crop: list[int] = field(default_factory=_crop, metadata=spec(
        "training crop [height, width], pixels (multiples of 4)"))
    points: int = field(default=128, metadata=spec("correspondences per pair", ge=8))
    lr: float = field(default=1e-3, metadata=spec("Adam learning rate (cosine decay to 0)", gt=0))
    temperature: float = field(default=0.07, metadata=spec("InfoNCE temperature", gt=0))
    radius_px: float = field(default=6.0, metadata=spec(
        "cells within this many pixels of the true correspondence are not negatives", ge=0))
    score_weight: float = field(default=0.5, metadata=spec("weight of the score head's loss", ge=0))
    desc_dim: int = field(default=128, metadata=spec("descriptor width", choices=(128,)))
    width: int = field(default=32, metadata=spec("channels of the network's first stage", ge=4, le=256))
    val_every: int = field(default=100, metadata=spec("steps between validations", ge=1))
    seed: int = field(default=0, metadata=spec("random seed of places, pairs and initial weights", ge=0))
    threads: int = field(default=1, metadata=spec("torch CPU threads", ge=1, le=256))

    def __post_init__(self) -> None:
        from ..foundation.config import ConfigError
        if len(self.crop) != 2 or any(int(v) < 16 or int(v) % 4 for v in self.crop):
            raise ConfigError(f"crop: {self.crop} must be [height, width], each a multiple of 4 and >= 16")
        if not self.seeds:
            raise ConfigError("seeds: give at least one training-town seed")
