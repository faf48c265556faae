"""Descriptor indices over L2-normalised float32 rows, inner-product metric.

Three kinds behind one small interface, chosen by name through ``INDEX_TYPES``:

* ``flat``  exact.  Rows are a plain float32 matrix (``vectors.npy``, mapped
  from disk on load); one query runs FAISS's SIMD inner-product kernel on it,
  a batch runs numpy's sgemm (exact.py); both beat FAISS's IndexFlatIP.search
  on the same rows in ``distilvpr bench map`` (docs/map.md).
* ``hnsw``  FAISS ``IndexHNSWFlat``: graph search, full rows kept (exact scores).
* ``ivfpq`` FAISS ``IndexIVFPQ``: compressed codes, trained at the first add;
  raw rows are kept in ``vectors.npy`` to re-rank candidates exactly and to
  merge maps.

Filtered searches that leave few rows are answered exactly over those rows,
since graph/IVF search with a very selective filter loses recall.
"""
from __future__ import annotations

import abc
import os
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from ..errors import UserError
from .exact import exact_search, subset_search
from .rows import RowBuffer
from .schema import FileEntry, file_entry
from .topk import topk

INDEX_FILE = "index.faiss"
VECTORS_FILE = "vectors.npy"
# Below this many allowed rows a filtered ANN query is answered exactly.
_EXACT_SUBSET_MAX = 20_000


def _view(flat: Any, n: int, d: int) -> np.ndarray:
    """Zero-copy float32 [n, d] view of a FAISS IndexFlat's rows.

    The view does not keep the rows alive: it is for immediate use inside one
    search; ``PriorMap.descriptors`` copies it for HNSW maps.
    """
    if n == 0:
        return np.empty((0, d), np.float32)
    return faiss.rev_swig_ptr(flat.get_xb(), n * d).reshape(n, d)


def _pad(rows: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """FAISS marks missing results with -1 and a huge negative score; use -inf."""
    scores = scores.astype(np.float32, copy=True)
    scores[rows < 0] = -np.inf
    return rows.astype(np.int64), scores


class DescriptorIndex(abc.ABC):
    """Rows of L2-normalised float32 descriptors and top-k inner-product search."""

    kind: str = ""

    def __init__(self, dim: int, params: dict[str, Any]):
        self.dim = dim
        self.params = params

    @property
    @abc.abstractmethod
    def ntotal(self) -> int:
        """Number of rows."""

    @abc.abstractmethod
    def add(self, x: np.ndarray) -> None:
        """Append float32 [N, D] rows (already L2-normalised, C-contiguous)."""

    @abc.abstractmethod
    def vectors(self) -> np.ndarray:
        """All rows, float32 [N, D]; a view that may go stale after ``add``."""

    @abc.abstractmethod
    def _ann_search(self, queries: np.ndarray, k: int,
                    sel: Any | None) -> tuple[np.ndarray, np.ndarray]:
        """Approximate search; only called by non-exact kinds."""

    exact = False

    def search(self, queries: np.ndarray, k: int,
               masks: list[np.ndarray | None]) -> tuple[np.ndarray, np.ndarray]:
        """Top-k rows and scores for float32 [Q, D] queries; see ``exact_search``."""
        if self.exact or self.ntotal == 0:
            return exact_search(self.vectors(), queries, k, masks)
        if all(m is None for m in masks):
            return self._ann_search(queries, k, None)
        rows = np.full((queries.shape[0], k), -1, np.int64)
        scores = np.full((queries.shape[0], k), -np.inf, np.float32)
        for i, mask in enumerate(masks):
            if mask is None:
                rows[i], scores[i] = (a[0] for a in self._ann_search(queries[i:i + 1], k, None))
            elif int(mask.sum()) <= _EXACT_SUBSET_MAX:
                rows[i], scores[i] = subset_search(self.vectors(), queries[i], k, mask)
            else:
                bitmap = np.packbits(mask, bitorder="little")
                sel = faiss.IDSelectorBitmap(mask.shape[0], faiss.swig_ptr(bitmap))
                r, s = self._ann_search(queries[i:i + 1], k, sel)
                rows[i], scores[i] = r[0], s[0]
        return rows, scores

    @abc.abstractmethod
    def write(self, directory: Path) -> dict[str, FileEntry]:
        """Write the index files into ``directory``; return {name: sha256/size}."""

    @classmethod
    @abc.abstractmethod
    def read(cls, directory: Path, dim: int, params: dict[str, Any], n: int) -> "DescriptorIndex":
        """Read what ``write`` wrote; n is the expected row count."""


def _write_faiss(index: Any, path: Path) -> FileEntry:
    faiss.write_index(index, str(path))
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())  # the directory rename must not publish unwritten data
    return file_entry(path)


def _read_faiss(path: Path, expected: type, kind: str) -> Any:
    """The FAISS index in ``path``; UserError unless it reads and is an ``expected`` (``kind`` names it)."""
    try:
        index = faiss.read_index(str(path))
    except RuntimeError as exc:
        raise UserError(f"{path}: FAISS cannot read this index ({str(exc).splitlines()[0]}); "
                        "the file is damaged, rebuild the map") from None
    if not isinstance(index, expected):
        raise UserError(f"{path}: expected {kind} index, found {type(index).__name__}; "
                        "the map is damaged, rebuild it")
    return index


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


class HNSWIndex(DescriptorIndex):
    """FAISS HNSW graph over full rows; params M, ef_construction, ef_search."""

    kind = "hnsw"
    defaults: dict[str, Any] = {"M": 32, "ef_construction": 80, "ef_search": 128}

    def __init__(self, dim: int, params: dict[str, Any], index: Any | None = None):
        super().__init__(dim, params)
        if index is None:
            index = faiss.IndexHNSWFlat(dim, int(params["M"]), faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = int(params["ef_construction"])
        self._index = index

    @property
    def ntotal(self) -> int:
        return int(self._index.ntotal)

    def add(self, x: np.ndarray) -> None:
        self._index.add(x)

    def vectors(self) -> np.ndarray:
        return _view(faiss.downcast_index(self._index.storage), self.ntotal, self.dim)

    def _ann_search(self, queries, k, sel):
        p = faiss.SearchParametersHNSW()
        p.efSearch = max(int(self.params["ef_search"]), k)
        if sel is not None:
            p.sel = sel
        return _pad(*self._index.search(queries, k, params=p)[::-1])

    def write(self, directory: Path) -> dict[str, FileEntry]:
        return {INDEX_FILE: _write_faiss(self._index, directory / INDEX_FILE)}

    @classmethod
    def read(cls, directory: Path, dim: int, params: dict[str, Any], n: int) -> "HNSWIndex":
        index = _read_faiss(directory / INDEX_FILE, faiss.IndexHNSWFlat, "an HNSW")
        return cls(dim, params, index)


class IVFPQIndex(DescriptorIndex):
    """FAISS IVF-PQ (params nlist, m, nbits, nprobe, rerank) plus raw rows for exact re-ranking."""

    kind = "ivfpq"
    defaults: dict[str, Any] = {"nlist": 1024, "m": 48, "nbits": 8, "nprobe": 16, "rerank": 4}

    def __init__(self, dim: int, params: dict[str, Any], index: Any | None = None,
                 rows: RowBuffer | None = None):
        super().__init__(dim, params)
        if dim % int(params["m"]):
            raise UserError(f"index_params.m={params['m']} must divide the descriptor dim {dim}")
        if index is None:
            index = faiss.index_factory(dim, f"IVF{int(params['nlist'])},PQ{int(params['m'])}"
                                        f"x{int(params['nbits'])}", faiss.METRIC_INNER_PRODUCT)
            # Polysemous training (Hamming pre-filter codes, unused here) is 50x the rest of training.
            faiss.downcast_index(index).do_polysemous_training = False
        self._index = index
        self._rows = rows if rows is not None else RowBuffer(dim)

    @property
    def ntotal(self) -> int:
        return len(self._rows)

    def min_train_rows(self) -> int:
        """FAISS needs >= nlist points for k-means and 2**nbits for each PQ codebook."""
        return max(int(self.params["nlist"]), 2 ** int(self.params["nbits"]))

    def add(self, x: np.ndarray) -> None:
        if not self._index.is_trained:
            need = self.min_train_rows()
            if x.shape[0] < need:
                raise UserError(f"ivfpq index: the first add trains the index and needs >= {need} "
                                f"descriptors (nlist={self.params['nlist']}, nbits="
                                f"{self.params['nbits']}), got {x.shape[0]}; add more at once, "
                                "lower index_params.nlist, or use index 'flat'")
            self._index.train(x)
        self._index.add(x)
        self._rows.append(x)

    def vectors(self) -> np.ndarray:
        return self._rows.view()

    def _ann_search(self, queries, k, sel):
        p = faiss.SearchParametersIVF()
        p.nprobe = int(self.params["nprobe"])
        if sel is not None:
            p.sel = sel
        fetch = k * max(1, int(self.params["rerank"]))
        _, cand = self._index.search(queries, fetch, params=p)
        rows = np.full((queries.shape[0], k), -1, np.int64)
        scores = np.full((queries.shape[0], k), -np.inf, np.float32)
        vecs = self.vectors()
        for i in range(queries.shape[0]):
            c = cand[i][cand[i] >= 0]
            exact = vecs[c] @ queries[i]  # PQ scores are approximate; re-rank with the raw rows
            r, v = topk(exact, k)
            rows[i, :r.shape[0]], scores[i, :v.shape[0]] = c[r], v
        return rows, scores

    def write(self, directory: Path) -> dict[str, FileEntry]:
        return {INDEX_FILE: _write_faiss(self._index, directory / INDEX_FILE),
                VECTORS_FILE: self._rows.save(directory / VECTORS_FILE)}

    @classmethod
    def read(cls, directory: Path, dim: int, params: dict[str, Any], n: int) -> "IVFPQIndex":
        index = _read_faiss(directory / INDEX_FILE, faiss.IndexIVFPQ, "an IVF-PQ")
        return cls(dim, params, index, RowBuffer.load(directory / VECTORS_FILE, dim, n))


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
