"""The geographic split of a synthetic town, computed from the traversal plans.

A test region is a contiguous stretch of the loop, ``[start, end]`` as
fractions of its arc length.  A frame is a *test-region frame* when the arc
length under it lies in a region.  ``split.json`` (written beside
``dataset.json``) holds the regions, their centre lines and, per traversal,
the indices of its test-region frames, so loaders need no geometry of their
own; the 50 m exclusion of training/validation frames is applied at load time
(:mod:`distilvpr_core.data.geosplit`) from positions, which keeps it exact.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ..data.geosplit import near
from ..foundation.errors import UserError
from .config import SynthConfig
from .route import Loop

SPLIT_VERSION = 1


def region_mask(arc_m: np.ndarray, regions_m: Sequence[tuple[float, float]]) -> np.ndarray:
    """bool [N]: arc length ``arc_m`` (metres, float64 [N]) lies in some ``[start_m, end_m]``."""
    arc = np.asarray(arc_m, np.float64)
    out = np.zeros(len(arc), dtype=bool)
    for a, b in regions_m:
        out |= (arc >= a) & (arc <= b)
    return out


def build_split(cfg: SynthConfig, loop: Loop, plans: Sequence[Any]) -> dict[str, Any] | None:
    """The ``split.json`` document for ``plans`` (None without test regions).

    Raises UserError for a test traversal without test-region frames and for a
    region that no test traversal drives through, naming them.
    """
    if not cfg.split.test_regions:
        return None
    regions_m = [(float(a) * loop.length, float(b) * loop.length) for a, b in cfg.split.test_regions]
    masks = {p.cfg.name: region_mask(p.arc_m, regions_m) for p in plans}
    tests = [p for p in plans if p.cfg.role == "test"]
    for p in tests:
        if not masks[p.cfg.name].any():
            raise UserError(f"traversals[{p.cfg.name}]: this test traversal never enters a test region "
                            f"{cfg.split.test_regions}; change its start_fraction/frames or the regions")
    regions = []
    for k, (a, b) in enumerate(regions_m):
        if not any(region_mask(p.arc_m, [(a, b)]).any() for p in tests):
            raise UserError(f"split.test_regions[{k}] {cfg.split.test_regions[k]}: no test traversal drives "
                            "through it; move the region or extend a test traversal")
        s = np.linspace(a, b, max(2, int((b - a) / 2.0) + 1))
        centre, _ = loop.at(s)
        regions.append({"name": f"region{k}", "fraction": [float(x) for x in cfg.split.test_regions[k]],
                        "arc_m": [a, b], "centreline_xy": np.round(centre, 3).tolist()})
    region_xy = np.concatenate([p.poses[masks[p.cfg.name], :2] for p in plans])
    excluded = {p.cfg.name: int(near(p.poses[:, :2], region_xy, cfg.split.buffer_m).sum())
                for p in plans if p.cfg.role in ("train", "val")}
    return {"version": SPLIT_VERSION, "loop_length_m": loop.length, "buffer_m": cfg.split.buffer_m,
            "regions": regions, "stress_traversals": list(cfg.split.stress_traversals),
            "test_region_frames": {name: np.nonzero(m)[0].tolist() for name, m in masks.items()},
            "excluded_at_load": excluded,
            "conditions": {p.cfg.name: list(p.cfg.condition()) for p in plans}}
