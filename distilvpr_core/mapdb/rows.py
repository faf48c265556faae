"""A growable float32 [N, D] row matrix, started empty or from a loaded map's rows.

A loaded map reads ``vectors.npy`` into memory (not a file mapping: a map
truncated or rewritten under a running node must neither kill it with
SIGBUS nor change the rows whose checksums were verified at load; the cost
is in docs/map.md).  The first ``append`` copies the rows into an owned
buffer that grows by doubling, so online adds of one keyframe at a time
stay O(1) amortised.  Views handed out earlier keep
their buffer alive (numpy reference counting), so they never dangle.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..foundation.errors import UserError
from .invariants import NORM_TOL, row_norms
from .schema import FileEntry, load_npy, save_npy


class GrowableArray:
    """A column of ``dtype`` [N, *trail] with amortised O(1) append (capacity doubles).

    :meth:`view` is the first N rows; like any view it may go stale after
    the next append (read it again).  A wrapped array (a loaded map) is never
    written: the first append copies it.
    """

    def __init__(self, dtype: Any, trail: tuple[int, ...] = (), rows: np.ndarray | None = None):
        self.dtype, self.trail = np.dtype(dtype), tuple(trail)
        self._buf = rows if rows is not None else np.empty((0, *self.trail), self.dtype)
        self._n = self._buf.shape[0]
        self._owned = rows is None

    def __len__(self) -> int:
        return self._n

    def view(self) -> np.ndarray:
        """The rows so far, C-contiguous."""
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
        """Read ``path`` (float32 [n, dim] .npy) into memory; UserError naming the file
        on a wrong shape/dtype or a truncated file (the rows' norms: storage.load_map)."""
        return cls(dim, load_npy(path, np.float32, (n, dim)))


def unit_rows(x: Any, dim: int, what: str) -> np.ndarray:
    """float32 C-contiguous [N, D] with unit rows; rejects wrong shapes, non-finite
    values and zero or denormal rows (invariants.row_norms, the check ``load`` runs too)."""
    x = np.asarray(x)
    if x.ndim == 1:
        x = x[None]
    if x.ndim != 2 or x.shape[1] != dim:
        raise UserError(f"{what}: expected float32 [N, {dim}] descriptors, got shape {x.shape}")
    if x.dtype.kind != "f":
        raise UserError(f"{what}: expected floating point descriptors, got dtype {x.dtype}")
    norms = row_norms(x, f"{what}: descriptor", "pass finite descriptors with a direction")
    x = np.ascontiguousarray(x, dtype=np.float32)
    if np.all(np.abs(norms - 1) < NORM_TOL):
        return x  # the Embedder already normalises; avoid a copy of large maps
    out = np.ascontiguousarray(x / norms[:, None].astype(np.float32), dtype=np.float32)
    if x.dtype == np.float32 and not np.isfinite(out).all():  # pragma: no cover - norms are > 1e-12
        raise UserError(f"{what}: descriptors cannot be normalised in float32")
    return out
