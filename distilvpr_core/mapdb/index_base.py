"""The interface every descriptor index implements, and FAISS file I/O shared by the kinds.

Rows are L2-normalised float32 descriptors, metric inner product. Filtered
searches that leave few rows are answered exactly over those rows, since
graph/IVF search with a very selective filter loses recall.
"""
from __future__ import annotations

import abc
import os
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from ..foundation.errors import UserError
from .exact import exact_search, subset_search
from .schema import FileEntry, file_entry

INDEX_FILE = "index.faiss"
VECTORS_FILE = "vectors.npy"
# Below this many allowed rows a filtered ANN query is answered exactly.
_EXACT_SUBSET_MAX = 20_000


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




def write_faiss(index: Any, path: Path) -> FileEntry:
    """Write the FAISS ``index`` to ``path`` and fsync it; its manifest entry (size, sha256)."""
    faiss.write_index(index, str(path))
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())  # the directory rename must not publish unwritten data
    return file_entry(path)


def read_faiss(path: Path, expected: type, kind: str) -> Any:
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
