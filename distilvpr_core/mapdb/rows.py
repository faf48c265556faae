"""A growable float32 [N, D] row matrix that can start as a read-only file mapping.

A loaded map maps ``vectors.npy`` (``np.load(mmap_mode="r")``): loading costs
no copy and the pages are shared with the page cache.  The first ``append``
copies the rows into an owned buffer that grows by doubling, so online adds
of one keyframe at a time stay O(1) amortised.  Views handed out earlier keep
their buffer alive (numpy reference counting), so they never dangle.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..foundation.errors import UserError
from .schema import FileEntry, save_npy


class GrowableArray:
    """A column of ``dtype`` [N, *trail] with amortised O(1) append (capacity doubles).

    :meth:`view` is the first N rows; like any view it may go stale after
    the next append (read it again).  A wrapped array (a loaded map, maybe a
    read-only file mapping) is never written: the first append copies it.
    """

    def __init__(self, dtype: Any, trail: tuple[int, ...] = (), rows: np.ndarray | None = None):
        self.dtype, self.trail = np.dtype(dtype), tuple(trail)
        self._buf = rows if rows is not None else np.empty((0, *self.trail), self.dtype)
        self._n = self._buf.shape[0]
        self._owned = rows is None

    def __len__(self) -> int:
        return self._n

    def view(self) -> np.ndarray:
        """The rows so far, C-contiguous; read-only while file-mapped."""
        return self._buf[:self._n]

    def append(self, x: np.ndarray) -> None:
        """Append ``dtype`` [M, *trail] rows."""
        need = self._n + x.shape[0]
        if not self._owned or need > self._buf.shape[0]:
            grown = np.empty((max(need, 2 * self._buf.shape[0]), *self.trail), self.dtype)
            grown[:self._n] = self._buf[:self._n]
            self._buf, self._owned = grown, True
        self._buf[self._n:need] = x
        self._n = need


class RowBuffer(GrowableArray):
    """float32 [N, D] rows with amortised O(1) append."""

    def __init__(self, dim: int, rows: np.ndarray | None = None):
        super().__init__(np.float32, (dim,), rows)
        self.dim = dim

    def save(self, path: Path) -> FileEntry:
        """Write the rows as .npy; returns its sha256/size (hashed while writing)."""
        return save_npy(path, self.view())

    @classmethod
    def load(cls, path: Path, dim: int, n: int) -> "RowBuffer":
        """Map ``path`` (float32 [n, dim] .npy) read-only; UserError on a wrong shape/dtype."""
        try:
            rows = np.load(path, mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise UserError(f"{path}: cannot be read as .npy ({exc}); the map is damaged") from None
        if rows.dtype != np.float32 or rows.shape != (n, dim) or not rows.flags.c_contiguous:
            raise UserError(f"{path}: expected float32 [{n}, {dim}] (from schema.json), got "
                            f"{rows.dtype} {list(rows.shape)}; the map is damaged, rebuild it")
        return cls(dim, rows)


#: Rows whose norms are all within this of 1 are taken as already normalised.
NORM_TOL = 1e-3


def unit_rows(x: Any, dim: int, what: str) -> np.ndarray:
    """float32 C-contiguous [N, D] with unit rows; rejects wrong shapes and non-finite values."""
    x = np.asarray(x)
    if x.ndim == 1:
        x = x[None]
    if x.ndim != 2 or x.shape[1] != dim:
        raise UserError(f"{what}: expected float32 [N, {dim}] descriptors, got shape {x.shape}")
    if x.dtype.kind != "f":
        raise UserError(f"{what}: expected floating point descriptors, got dtype {x.dtype}")
    x = np.ascontiguousarray(x, dtype=np.float32)
    if not np.all(np.isfinite(x)):
        raise UserError(f"{what}: descriptors contain NaN or inf")
    norms = np.linalg.norm(x, axis=1)
    if np.any(norms < 1e-12):
        raise UserError(f"{what}: descriptor row {int(np.argmin(norms))} has zero norm")
    if np.all(np.abs(norms - 1) < NORM_TOL):
        return x  # the Embedder already normalises; avoid a copy of large maps
    return np.ascontiguousarray(x / norms[:, None], dtype=np.float32)
