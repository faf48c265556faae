"""FAISS approximate indices: HNSW graph and IVF-PQ codes with exact re-ranking.

Both implement ``DescriptorIndex`` (index_base.py); ``index.INDEX_TYPES`` chooses
between them and the exact ``flat`` kind by name.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import faiss
import numpy as np

from ..foundation.errors import UserError
from .index_base import INDEX_FILE, VECTORS_FILE, DescriptorIndex, read_faiss, write_faiss
from .rows import RowBuffer
from .schema import FileEntry
from .topk import topk



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
        return {INDEX_FILE: write_faiss(self._index, directory / INDEX_FILE)}

    @classmethod
    def read(cls, directory: Path, dim: int, params: dict[str, Any], n: int) -> "HNSWIndex":
        index = read_faiss(directory / INDEX_FILE, faiss.IndexHNSWFlat, "an HNSW")
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
        return {INDEX_FILE: write_faiss(self._index, directory / INDEX_FILE),
                VECTORS_FILE: self._rows.save(directory / VECTORS_FILE)}

    @classmethod
    def read(cls, directory: Path, dim: int, params: dict[str, Any], n: int) -> "IVFPQIndex":
        index = read_faiss(directory / INDEX_FILE, faiss.IndexIVFPQ, "an IVF-PQ")
        _check_ivf_ids(index, n, directory / INDEX_FILE)
        return cls(dim, params, index, RowBuffer.load(directory / VECTORS_FILE, dim, n))


def _damaged(path: Path, what: str) -> UserError:
    return UserError(f"{path}: {what}; the index is damaged (or was edited), rebuild the map")


def _check_ivf_ids(index: Any, n: int, path: Path) -> None:
    """Every row id 0..n-1 exactly once across the inverted lists: an id >= n would make
    every search index past the raw rows (IndexError), a missing one loses a keyframe."""
    invlists = faiss.extract_index_ivf(index).invlists
    seen = np.zeros(n, np.int64)
    for lst in range(invlists.nlist):
        size = int(invlists.list_size(lst))
        if size == 0:
            continue
        ids = np.array(faiss.rev_swig_ptr(invlists.get_ids(lst), size), np.int64)
        if ids.min() < 0 or ids.max() >= n:
            bad = int(ids.max()) if ids.max() >= n else int(ids.min())
            raise _damaged(path, f"inverted list {lst} holds row id {bad}, outside 0..{n - 1}")
        np.add.at(seen, ids, 1)
    if n and not np.all(seen == 1):
        raise _damaged(path, f"row {int(np.argmax(seen != 1))} appears {int(seen[np.argmax(seen != 1)])} "
                             "times in the inverted lists (expected once)")

