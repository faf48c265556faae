"""The data passed between extraction, matching, the map and pose estimation.

:class:`Features` is the one structure every extractor returns, the map's
FeatureStore stores and returns, and matching and pose take: keypoints in
pixels of the image as captured, descriptors whose dtype and width the
``kind`` fixes (features/registry.py), and the kind itself, so features of
two kinds are never matched against each other by mistake.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Intrinsics:
    """Pinhole intrinsics in pixels of the image as captured (no distortion)."""
    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int

    def matrix(self) -> np.ndarray:
        """float64 [3, 3] camera matrix K."""
        return np.array([[self.fx, 0, self.cx], [0, self.fy, self.cy], [0, 0, 1]], np.float64)


@dataclass
class Features:
    """keypoints float32 [F, 2] (x, y pixels of the original image, pixel centre at
    integer coordinates), descriptors [F, D] of ``kind`` (uint8 [F, 32] binary ORB,
    uint8 [F, 128] quantised RootSIFT or learned descriptors), ``kind`` the extractor's
    registry name.  ``dense``: a query's own dense map for refining its matches before
    PnP (the patch kind's coarse-to-fine FineMap, features/patch/coarse_to_fine.py), None
    otherwise; never stored in a map."""
    keypoints: np.ndarray
    descriptors: np.ndarray
    kind: str = "orb"
    dense: Any = None

    def __len__(self) -> int:
        return int(self.keypoints.shape[0])
