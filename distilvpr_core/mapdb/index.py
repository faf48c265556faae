"""Descriptor indices over L2-normalised float32 rows, inner-product metric.

Three kinds behind one small interface, chosen by name through ``INDEX_TYPES``:

* ``flat``  exact.  Rows are a plain float32 matrix (``vectors.npy``, read
  into memory on load); one query runs FAISS's SIMD inner-product kernel on it,
  a batch runs numpy's sgemm (exact.py); both beat FAISS's IndexFlatIP.search
  on the same rows in ``distilvpr bench map`` (docs/map.md).
* ``hnsw``  FAISS ``IndexHNSWFlat``: graph search, full rows kept (exact scores).
* ``ivfpq`` FAISS ``IndexIVFPQ``: compressed codes, trained at the first add;
  raw rows are kept in ``vectors.npy`` to re-rank candidates exactly and to
  merge maps.

The interface is in index_base.py, the FAISS kinds in ann.py; this module
holds the exact kind and the registry.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..foundation.errors import UserError
from .ann import HNSWIndex, IVFPQIndex
from .index_base import INDEX_FILE, VECTORS_FILE, DescriptorIndex
from .rows import RowBuffer
from .schema import FileEntry

__all__ = ["INDEX_FILE", "VECTORS_FILE", "DescriptorIndex", "FlatIndex", "HNSWIndex", "IVFPQIndex",
           "INDEX_TYPES", "new_index", "read_index", "resolve_params"]



class FlatIndex(DescriptorIndex):
    """Exact search over rows kept as a plain float32 matrix, searched with BLAS."""

    kind = "flat"
    exact = True
    defaults: dict[str, Any] = {}

    def __init__(self, dim: int, params: dict[str, Any], rows: RowBuffer | None = None):
        super().__init__(dim, params)
        self._rows = rows if rows is not None else RowBuffer(dim)

    @property
    def ntotal(self) -> int:
        return len(self._rows)

    def add(self, x: np.ndarray) -> None:
        self._rows.append(x)

    def vectors(self) -> np.ndarray:
        return self._rows.view()

    def _ann_search(self, queries, k, sel):  # pragma: no cover - exact kind never calls it
        raise AssertionError("flat index searches exactly")

    def write(self, directory: Path) -> dict[str, FileEntry]:
        return {VECTORS_FILE: self._rows.save(directory / VECTORS_FILE)}

    @classmethod
    def read(cls, directory: Path, dim: int, params: dict[str, Any], n: int) -> "FlatIndex":
        return cls(dim, params, RowBuffer.load(directory / VECTORS_FILE, dim, n))


INDEX_TYPES: dict[str, type[DescriptorIndex]] = {
    c.kind: c for c in (FlatIndex, HNSWIndex, IVFPQIndex)}


def resolve_params(kind: str, params: dict[str, Any] | None) -> dict[str, Any]:
    """Defaults of ``kind`` updated with ``params``; unknown names raise UserError."""
    if kind not in INDEX_TYPES:
        raise UserError(f"unknown index type {kind!r}; valid types are {sorted(INDEX_TYPES)}")
    defaults = INDEX_TYPES[kind].defaults
    params = dict(params or {})
    unknown = sorted(set(params) - set(defaults))
    if unknown:
        raise UserError(f"index_params: unknown parameter {unknown[0]!r} for index {kind!r}; "
                        f"valid parameters are {sorted(defaults) or 'none'}")
    out = {**defaults, **params}
    for name, value in out.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise UserError(f"index_params.{name} for index {kind!r} must be an integer >= 1, "
                            f"got {value!r}")
    return out


def new_index(kind: str, dim: int, params: dict[str, Any] | None) -> DescriptorIndex:
    """An empty index of ``kind`` (see ``INDEX_TYPES``)."""
    params = resolve_params(kind, params)
    return INDEX_TYPES[kind](dim, params)


def read_index(kind: str, directory: Path, dim: int, params: dict[str, Any], n: int) -> DescriptorIndex:
    """Load the index files of a map directory, checking row count and dim."""
    index = INDEX_TYPES[kind].read(directory, dim, resolve_params(kind, params), n)
    got_d = index.vectors().shape[1] if index.ntotal else dim
    inner = getattr(index, "_index", None)
    inner_n, inner_d = (int(inner.ntotal), int(inner.d)) if inner is not None else (index.ntotal, got_d)
    if index.ntotal != n or inner_n != n or inner_d != dim or got_d != dim:
        raise UserError(f"{directory}: index holds {inner_n} rows of dim {inner_d}, "
                        f"but schema.json records {n} keyframes of dim {dim}; the map is "
                        "inconsistent, rebuild it")
    return index
