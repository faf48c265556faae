"""A traversal that wraps another: frames and sensors come from the wrapped one.

The wrappers (the native reader's view, a town's namespaced drive) change names,
roles or positions; what a frame holds is always the wrapped traversal's.
"""
from __future__ import annotations

from typing import Any

import numpy as np


class TraversalView:
    """Delegates ``load_image``/``load_lidar`` to ``self._trav``; ``len`` = rows of ``self.positions``
    (float64 [N, 2] x y, metres), which the subclass sets."""

    _trav: Any
    positions: np.ndarray

    def __len__(self) -> int:
        return len(self.positions)

    def load_image(self, i: int) -> np.ndarray:
        """uint8 [H, W, 3] RGB of frame ``i``."""
        return self._trav.load_image(i)

    def load_lidar(self, i: int) -> np.ndarray:
        """float32 [P, 4] x y z intensity of frame ``i`` (lidar frame)."""
        return self._trav.load_lidar(i)
