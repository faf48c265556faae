"""The prior map: descriptors in a FAISS index plus per-keyframe metadata.

Row ``i`` of the index is keyframe id ``i``: ids are assigned in add order,
never reused, and ``merge`` renumbers the second map after the first.

On disk a map is a directory written atomically: ``schema.json`` (format,
dim, metric, index, model, counts, checksums), the FAISS index or
``vectors.npy``, one ``.npy`` per metadata column and, when built with local
features, the feature arrays (mapdb/features.py).  docs/map.md lists them.

All ``.npy`` files are written and read with ``allow_pickle=False``.
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import json
from pathlib import Path
from typing import Any, Mapping

import faiss
import numpy as np

from ..foundation.errors import UserError
from .features import FeatureStore
from .filters import allowed_rows, check_filter_args
from .invariants import check_frames, check_poses, check_stamps, check_unit_rows
from .index import DescriptorIndex, new_index, resolve_params
from .rows import GrowableArray, unit_rows
from .schema import MapSchema
from .storage import COLUMNS, MapArrays, read_map, write_map


def _column(attr: str) -> property:
    # The metadata columns grow in place (amortised O(1) per added keyframe);
    # readers get a view of the rows so far.
    return property(lambda self: self._cols[attr].view())


@dataclasses.dataclass(frozen=True)
class SearchResult:
    """Top-k per query: ids int64 [Q, k] (-1 padded), scores float32 [Q, k] (-inf padded).

    Scores are inner products of L2-normalised descriptors (cosine, in [-1, 1]),
    best first.
    """

    ids: np.ndarray
    scores: np.ndarray


class PriorMap:
    """Keyframe descriptors + poses + stamps, searchable by descriptor.

    Create with ``PriorMap.create`` or ``PriorMap.load``; not thread-safe (the
    node serialises add and search on one executor thread).
    """

    def __init__(self, dim: int, fingerprint: str, contract: Mapping[str, Any],
                 index: DescriptorIndex, created_at: str | None = None):
        self._dim = int(dim)
        self._fingerprint = str(fingerprint)
        self._contract = dict(contract)
        self._index = index
        self._created_at = created_at or _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        self._cols = {attr: GrowableArray(dtype, trail) for attr, dtype, trail in COLUMNS.values()}
        self._source_names: list[str] = []
        self._files: dict[str, Any] = {}  # checksums as last saved or loaded
        self.removed_partials: list[tuple[Path, int]] = []  # by the last save (storage.py)
        self._features: FeatureStore | None = None  # local features, or None without them

    _ids = _column("_ids")
    _stamps = _column("_stamps")
    _poses = _column("_poses")
    _frames = _column("_frames")
    _source_idx = _column("_source_idx")

    # ---- construction -------------------------------------------------
    @classmethod
    def create(cls, dim: int, fingerprint: str, contract: Mapping[str, Any] | Any,
               index: str = "flat", index_params: Mapping[str, Any] | None = None) -> "PriorMap":
        """An empty map for ``dim``-dimensional descriptors of the model ``fingerprint``.

        contract: the preprocessing contract (dict, or an object with ``to_dict()``).
        index: "flat" (exact, default), "hnsw" or "ivfpq"; index_params override
        that type's defaults (see ``distilvpr_core.mapdb.index``).
        """
        if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim < 1:
            raise UserError(f"dim must be a positive integer, got {dim!r}")
        if hasattr(contract, "to_dict"):
            contract = contract.to_dict()
        if not isinstance(contract, Mapping):
            raise UserError(f"contract must be a dict (preprocessing contract), got {type(contract).__name__}")
        try:
            json.dumps(dict(contract))  # it goes into schema.json
        except TypeError as exc:
            raise UserError(f"contract: not JSON-serialisable ({exc})") from None
        return cls(int(dim), fingerprint, contract, new_index(index, int(dim), dict(index_params or {})))

    # ---- read access --------------------------------------------------
    def __len__(self) -> int:
        return int(self._ids.shape[0])

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def fingerprint(self) -> str:
        return self._fingerprint

    @property
    def contract(self) -> dict[str, Any]:
        return dict(self._contract)

    @property
    def index_type(self) -> str:
        return self._index.kind

    @property
    def index_params(self) -> dict[str, Any]:
        return dict(self._index.params)

    @property
    def ids(self) -> np.ndarray:
        """int64 [N] keyframe ids (== row)."""
        return self._ids

    @property
    def stamps_ns(self) -> np.ndarray:
        """int64 [N] keyframe image stamps, ns."""
        return self._stamps

    @property
    def poses(self) -> np.ndarray:
        """float64 [N, 7] x y z qx qy qz qw, base_link in the map frame (m)."""
        return self._poses

    @property
    def frame_index(self) -> np.ndarray:
        """int64 [N] frame number of each keyframe within its source."""
        return self._frames

    @property
    def source_names(self) -> list[str]:
        """Distinct sources (bag paths / traversal names) in first-add order."""
        return list(self._source_names)

    @property
    def source_index(self) -> np.ndarray:
        """int32 [N] index of each keyframe's source in ``source_names``."""
        return self._source_idx

    @property
    def sources(self) -> np.ndarray:
        """str [N] source of each keyframe (numpy unicode array)."""
        names = np.asarray(self._source_names if self._source_names else [""], dtype=str)
        return names[self._source_idx]

    @property
    def descriptors(self) -> np.ndarray:
        """float32 [N, D] L2-normalised rows (read-only use; a copy for HNSW maps)."""
        rows = self._index.vectors()
        # HNSW rows live inside FAISS; a view would dangle after the next add.
        return np.array(rows) if self._index.kind == "hnsw" else rows

    @property
    def features(self) -> Any:
        """Local features (:class:`.features.FeatureStore`, row = keyframe id), or None."""
        return self._features

    def attach_features(self, store: FeatureStore) -> None:
        """Use ``store`` (one row per keyframe, in id order; None = none) as the features."""
        if store is not None and len(store) != len(self):
            raise UserError(f"features: {len(store)} rows for a map of {len(self)} keyframes")
        self._features = store

    @property
    def schema(self) -> MapSchema:
        """Schema of the map now; ``files`` are the checksums of the last save/load."""
        return self._schema(self._files)

    def _schema(self, files: Mapping[str, Any]) -> MapSchema:
        return MapSchema(dim=self._dim, index_type=self._index.kind,
                         index_params=dict(self._index.params), model_fingerprint=self._fingerprint,
                         preprocessing=dict(self._contract), keyframes=len(self),
                         sources=len(self._source_names), created_at=self._created_at,
                         files=dict(files), faiss_version=faiss.__version__,
                         features=None if self._features is None else self._features.meta())

    # ---- growth -------------------------------------------------------
    def add(self, desc: Any, stamps_ns: Any, poses: Any, source: str,
            frame_index: Any) -> np.ndarray:
        """Append keyframes; returns their ids, int64 [N].

        desc float32 [N, D] (normalised here if not unit length); stamps_ns
        int64 [N]; poses float64 [N, 7] x y z qx qy qz qw in the map frame;
        source: bag path or traversal name, or one such str per row [N];
        frame_index int64 [N].
        """
        x = unit_rows(desc, self._dim, "add(desc)")
        n = x.shape[0]
        stamps = self._column(stamps_ns, np.int64, (n,), "stamps_ns", "iu")
        frames = self._column(frame_index, np.int64, (n,), "frame_index", "iu")
        poses = self._column(poses, np.float64, (n, 7), "poses", "fiu")
        fix = "pass finite poses with unit quaternions and sane stamps"
        check_poses(poses, "add(poses)", fix)   # the checks load runs too (invariants.py)
        check_stamps(stamps, "add(stamps_ns)", fix)
        check_frames(frames, "add(frame_index)", fix)
        poses = poses.copy()
        poses[:, 3:] /= np.linalg.norm(poses[:, 3:], axis=1, keepdims=True)
        per_row = [source] * n if isinstance(source, str) else list(source)
        if len(per_row) != n or not all(isinstance(s, str) and s for s in per_row):
            raise UserError(f"add(source): expected a non-empty string or {n} of them, got {source!r:.80}")
        self._index.add(x)  # may refuse (untrained IVF-PQ); nothing is changed before it
        src = self._register_sources(per_row)
        start = len(self)
        ids = np.arange(start, start + n, dtype=np.int64)
        for attr, rows in (("_ids", ids), ("_stamps", stamps), ("_poses", poses), ("_frames", frames),
                           ("_source_idx", src)):
            self._cols[attr].append(rows)
        if self._features is not None:  # rows stay ids; the engine fills them when mapping online
            self._features.pad_to(len(self))
        return ids

    def _register_sources(self, per_row: list[str]) -> np.ndarray:
        """int32 [n] indices into ``source_names`` (new names are appended)."""
        lookup = {name: i for i, name in enumerate(self._source_names)}
        for name in dict.fromkeys(per_row):
            if name not in lookup:
                lookup[name] = len(self._source_names)
                self._source_names.append(name)
        return np.fromiter((lookup[s] for s in per_row), np.int32, count=len(per_row))

    @staticmethod
    def _column(value: Any, dtype: Any, shape: tuple[int, ...], name: str, kinds: str) -> np.ndarray:
        arr = np.asarray(value)
        if arr.shape != shape or arr.dtype.kind not in kinds:
            raise UserError(f"add({name}): expected {np.dtype(dtype).name} {list(shape)}, "
                            f"got {arr.dtype.name} {list(arr.shape)}")
        return arr.astype(dtype, copy=False)

    _SEARCH_PARAMS = {"hnsw": ("ef_search",), "ivfpq": ("nprobe", "rerank")}

    def set_search_params(self, **params: int) -> None:
        """Change search-time knobs (hnsw: ef_search; ivfpq: nprobe, rerank); saved with the map."""
        allowed = self._SEARCH_PARAMS.get(self._index.kind, ())
        bad = sorted(set(params) - set(allowed))
        if bad:
            raise UserError(f"set_search_params: {bad[0]!r} is not a search parameter of index "
                            f"{self._index.kind!r}; valid: {list(allowed) or 'none'}")
        self._index.params = resolve_params(self._index.kind, {**self._index.params, **params})

    # ---- search -------------------------------------------------------
    def search(self, queries: Any, k: int, query_stamp_ns: Any = None,
               exclude_within_s: float = 0.0, exclude_last_n: int = 0,
               center_xyz: Any = None, radius_m: float | None = None) -> SearchResult:
        """Top-k keyframes per query by inner product.

        queries float32 [Q, D] or [D]; query_stamp_ns int (or int64 [Q]) with
        exclude_within_s (s): drop keyframes stamped after stamp - window;
        exclude_last_n: drop the n most recently added keyframes; center_xyz
        float [3] or [Q, 3] (m, map frame) with radius_m: keep keyframes within
        the radius.  Returns ids int64 [Q, k] (-1 padded), scores float32 [Q, k].
        """
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise UserError(f"k must be an integer >= 1, got {k!r}")
        q = unit_rows(queries, self._dim, "search(queries)")
        stamps, centers = check_filter_args(q.shape[0], query_stamp_ns, exclude_within_s,
                                            exclude_last_n, center_xyz, radius_m)
        masks: list[np.ndarray | None] = []
        positions = self._poses[:, :3]
        for i in range(q.shape[0]):
            masks.append(allowed_rows(
                self._stamps, positions,
                query_stamp_ns=None if stamps is None else int(stamps[i]),
                exclude_within_s=exclude_within_s, exclude_last_n=int(exclude_last_n),
                center_xyz=None if centers is None else centers[i], radius_m=radius_m))
        rows, scores = self._index.search(q, int(k), masks)
        ids = np.where(rows >= 0, self._ids[np.clip(rows, 0, None)] if len(self) else -1, -1)
        return SearchResult(ids=ids.astype(np.int64), scores=scores)

    # ---- persistence (mapdb/storage.py) -------------------------------
    def save(self, path: str | Path, overwrite: bool = True) -> Path:
        """Write the map directory atomically (temp dir + rename); returns the path.

        An existing *map* at ``path`` is replaced when ``overwrite``; any other
        non-empty directory is refused.  A crash leaves the old map intact.
        """
        fix = "the map in memory was changed behind add(); nothing was written"
        check_unit_rows(self._index.vectors(), "save: descriptors", fix)
        check_poses(self._poses, "save: poses", fix)
        check_stamps(self._stamps, "save: stamps", fix)
        arrays = MapArrays(index=self._index, source_names=list(self._source_names),
                           columns={name: self._cols[attr].view() for name, (attr, _, _) in COLUMNS.items()})
        features = self._features
        files, removed = write_map(path, arrays, self._schema,
                                   features.write if features is not None else None, overwrite)
        self._files = dict(files)
        self.removed_partials = removed
        return Path(path)

    @classmethod
    def load(cls, path: str | Path, expect_fingerprint: str | None = None,
             expect_dim: int | None = None, verify_checksums: bool = True) -> "PriorMap":
        """Load and verify a map directory.

        Checks schema version, every file's size and sha256 (feature files too),
        array shapes and dtypes against the counts, and (when given) the model
        fingerprint and descriptor dim; any mismatch raises UserError naming both.
        """
        arrays = read_map(path, expect_fingerprint, expect_dim, verify_checksums)
        schema = arrays.schema
        assert schema is not None  # read_map always returns the schema it verified against
        m = cls(schema.dim, schema.model_fingerprint, schema.preprocessing, arrays.index, schema.created_at)
        m._cols = {attr: GrowableArray(dtype, trail, arrays.columns[name])
                   for name, (attr, dtype, trail) in COLUMNS.items()}
        m._source_names = list(arrays.source_names)
        m._files = dict(schema.files)
        if schema.features is not None:  # its files were checksummed by read_map
            m._features = FeatureStore.load(Path(path), schema.features, len(m), schema.files)
        return m
