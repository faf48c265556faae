"""``schema.json`` of a prior map: what is stored, how, with which model.

The schema is the contract between the writer and every later reader.  It
records the format version (a reader refuses maps from a newer format), the
descriptor dimension and metric, the index type and its parameters, the model
fingerprint (sha256 of the student weights) and preprocessing contract the
descriptors were made with, counts, creation time and the sha256 + size of
every other file in the directory.

Since format version 2 it also records ``schema_sha256``, the sha256 of its
own canonical JSON (every other key, sorted, compact, ASCII).  The per-file
checksums protect the data files; this one protects the checksums, so a
damaged ``schema.json`` is blamed on itself and not on an intact data file.
Parsing is strict: an unknown or missing key is an error naming the key.
Version-1 maps (no ``schema_sha256``) are still read, strictly, but a damaged
version-1 schema can only be caught where it breaks a check.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import Any, Mapping

from ..foundation.errors import UserError
from ..foundation.safe_files import open_regular, read_bytes, read_npy
from .schema_fields import FileEntry, _files, _int, _keys, _obj, _preprocessing, _str

FORMAT = "distilvpr-map"
FORMAT_VERSION = 2
SCHEMA_FILE = "schema.json"
DIGEST_KEY = "schema_sha256"
METRIC = "inner_product"
_HASH_CHUNK = 16 << 20  # 16 MiB: large reads keep hashlib near memory speed
_MAX_SCHEMA_BYTES = 16 << 20  # a schema lists a few files: anything larger is not one
_REQUIRED = ("format", "format_version", "dim", "metric", "index", "model_fingerprint",
             "preprocessing", "counts", "created_at", "faiss_version", "files")
_OPTIONAL = ("features",)
V1_NOTE = ("format version 1: schema.json has no checksum of its own, so a damaged schema.json "
           "is only caught where it breaks a check (and a damaged recorded checksum is blamed on "
           "the data file); re-save the map to upgrade it to version 2")


@dataclasses.dataclass(frozen=True)
class MapSchema:
    """The parsed ``schema.json``; frozen so a loaded map cannot drift from it."""

    dim: int
    index_type: str
    index_params: Mapping[str, Any]
    model_fingerprint: str
    preprocessing: Mapping[str, Any]
    keyframes: int
    sources: int
    created_at: str
    files: Mapping[str, FileEntry]
    faiss_version: str = ""
    metric: str = METRIC
    format_version: int = FORMAT_VERSION
    #: Local features for geometric verification (mapdb/features.py validates
    #: its content), or None for a map without them.
    features: Mapping[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict in the on-disk layout (see docs/map.md), with
        ``schema_sha256`` from version 2 on."""
        d: dict[str, Any] = {
            "format": FORMAT,
            "format_version": self.format_version,
            "dim": self.dim,
            "metric": self.metric,
            "index": {"type": self.index_type, "params": dict(self.index_params)},
            "model_fingerprint": self.model_fingerprint,
            "preprocessing": dict(self.preprocessing),
            "counts": {"keyframes": self.keyframes, "sources": self.sources},
            "created_at": self.created_at,
            "faiss_version": self.faiss_version,
            "files": {name: dataclasses.asdict(e) for name, e in sorted(self.files.items())},
        }
        if self.features is not None:
            d["features"] = dict(self.features)
        return seal(d) if self.format_version >= 2 else d

    @classmethod
    def from_dict(cls, data: Any, where: str) -> "MapSchema":
        """Parse and check a ``schema.json`` dict strictly; ``where`` names the file in errors."""
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise UserError(f"{where}: not a distilvpr map schema (expected \"format\": "
                            f"\"{FORMAT}\"); point at a directory written by 'distilvpr map build'")
        version = data.get("format_version")
        recorded = data.get(DIGEST_KEY)
        intact = recorded is not None and recorded == schema_digest(data)
        if recorded is not None and not intact and not (isinstance(version, int) and version > FORMAT_VERSION):
            raise UserError(f"{where}: schema.json is damaged: its content hashes to "
                            f"{schema_digest(data)} but it records {DIGEST_KEY} {str(recorded)[:80]!r}; "
                            "the data files were not checked; restore schema.json from a copy "
                            "of the map or rebuild the map")
        if not isinstance(version, int) or isinstance(version, bool):
            raise UserError(f"{where}: format_version must be an integer, got {version!r}")
        if version > FORMAT_VERSION:
            damaged = "" if intact else (" (or schema.json is damaged: its own checksum does "
                                         "not match)")
            raise UserError(f"{where}: map format version {version} is newer than this "
                            f"distilvpr reads (version {FORMAT_VERSION}){damaged}; upgrade "
                            "distilvpr or rebuild the map with this version")
        if version < 1:
            raise UserError(f"{where}: invalid format_version {version}")
        if version >= 2 and DIGEST_KEY in data and not intact:
            # Present but null (or not a string): a version-2 schema always records its digest.
            raise UserError(f"{where}: schema.json is damaged: {DIGEST_KEY} is {str(recorded)[:80]!r}, "
                            f"not the sha256 of its content; restore schema.json or rebuild the map")
        allowed = set(_REQUIRED) | set(_OPTIONAL) | ({DIGEST_KEY} if version >= 2 else set())
        _keys(data, where, "", _REQUIRED + ((DIGEST_KEY,) if version >= 2 else ()), allowed)
        index = _keys(data["index"], where, "index.", ("type", "params"))
        counts = _keys(data["counts"], where, "counts.", ("keyframes", "sources"))
        features = data.get("features")
        if "features" in data and not isinstance(features, dict):
            raise UserError(f"{where}: features must be a JSON object, got {features!r:.80}")
        schema = cls(
            dim=_int(data["dim"], where, "dim", 1),
            metric=_str(data["metric"], where, "metric"),
            index_type=_str(index["type"], where, "index.type"),
            index_params=_obj(index["params"], where, "index.params"),
            model_fingerprint=_str(data["model_fingerprint"], where, "model_fingerprint"),
            preprocessing=_preprocessing(data["preprocessing"], where),
            keyframes=_int(counts["keyframes"], where, "counts.keyframes", 0),
            sources=_int(counts["sources"], where, "counts.sources", 0),
            created_at=_str(data["created_at"], where, "created_at"),
            faiss_version=_str(data["faiss_version"], where, "faiss_version"),
            files=_files(data["files"], where),
            format_version=version,
            features=features,
        )
        if schema.metric != METRIC:
            raise UserError(f"{where}: metric {schema.metric!r} is not supported "
                            f"(only {METRIC!r})")
        return schema


def canonical_json(data: Mapping[str, Any]) -> str:
    """The bytes ``schema_sha256`` is taken over: every key but the digest,
    sorted, compact, ASCII (so whitespace and key order do not matter)."""
    body = {k: v for k, v in data.items() if k != DIGEST_KEY}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def schema_digest(data: Mapping[str, Any]) -> str:
    """sha256 hex of :func:`canonical_json` of ``data``."""
    try:
        return hashlib.sha256(canonical_json(data).encode("ascii")).hexdigest()
    except (TypeError, ValueError):  # not JSON-representable: cannot match any recorded digest
        return "<not JSON>"


def seal(data: Mapping[str, Any]) -> dict[str, Any]:
    """``data`` with ``schema_sha256`` set to its digest (the last key)."""
    out = {k: v for k, v in data.items() if k != DIGEST_KEY}
    out[DIGEST_KEY] = schema_digest(out)
    return out


def file_entry(path: Path) -> FileEntry:
    """sha256 and size of ``path`` (read in 16 MiB chunks); a symlink or a file that is
    not regular is a UserError (foundation.safe_files.open_regular)."""
    h = hashlib.sha256()
    size = 0
    fd = open_regular(path)
    try:
        with os.fdopen(os.dup(fd), "rb") as fh:
            while chunk := fh.read(_HASH_CHUNK):
                h.update(chunk)
                size += len(chunk)
    except OSError as exc:
        raise UserError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    finally:
        os.close(fd)
    return FileEntry(sha256=h.hexdigest(), bytes=size)


class _HashingWriter:
    """File-like wrapper that hashes and counts what ``np.save`` writes through it."""

    def __init__(self, fh: Any):
        self._fh = fh
        self.sha = hashlib.sha256()
        self.size = 0

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        self.sha.update(view)
        self.size += view.nbytes
        return self._fh.write(view)


def save_npy(path: Path, array: Any) -> FileEntry:
    """``np.save`` (no pickle) that hashes while writing and fsyncs; returns the entry."""
    import numpy as np
    with open(path, "wb") as fh:
        w = _HashingWriter(fh)
        np.save(w, np.asarray(array), allow_pickle=False)
        fh.flush()
        os.fsync(fh.fileno())  # the directory rename must not publish unwritten data
    return FileEntry(sha256=w.sha.hexdigest(), bytes=w.size)


def load_npy(path: Path, dtype: Any, shape: tuple[int, ...] | None, **kw: Any) -> Any:
    """A map array read into memory (no pickle, no mmap) that must have ``dtype`` and
    ``shape`` (as schema.json's counts imply; None = any, with ``check`` in ``kw``);
    a symlink, a truncated or garbage file, or a wrong header is a UserError naming
    the file, raised before any allocation (foundation.safe_files.read_npy)."""
    return read_npy(path, dtype, shape, fix="the map is damaged, rebuild or restore it", **kw)


def read_schema(directory: Path) -> MapSchema:
    """Read and parse ``directory/schema.json``; a UserError names what is wrong."""
    path = directory / SCHEMA_FILE
    if not directory.is_dir():
        raise UserError(f"{directory}: map directory not found")
    if not path.is_file() and not path.is_symlink():
        raise UserError(f"{path}: missing; {directory} is not a distilvpr map directory")
    return parse_schema(read_bytes(path, _MAX_SCHEMA_BYTES), str(path))


def parse_schema(raw: bytes, where: str) -> MapSchema:
    """Parse the bytes of a ``schema.json`` strictly (UTF-8, no duplicate keys, no NaN)."""
    try:
        data = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates,
                          parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError) as exc:
        raise UserError(f"{where}: cannot be read as JSON ({exc}); schema.json is damaged, "
                        "restore it from a copy of the map or rebuild the map") from None
    return MapSchema.from_dict(data, where)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # json keeps the last of two equal keys; a flipped bit can make a key a
    # duplicate of its neighbour, so two equal keys are damage, not a choice.
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"key {key!r:.80} appears twice")
        out[key] = value
    return out


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def verify_files(directory: Path, schema: MapSchema, checksums: bool = True) -> None:
    """Check every listed file exists with the recorded size (and sha256).

    Raises UserError naming the first file that is missing, truncated or
    modified, with the expected and found values.
    """
    for name, entry in sorted(schema.files.items()):
        path = directory / name
        if path.is_symlink():
            raise UserError(f"{path}: is a symbolic link; a map holds its own files (a link may "
                            "point outside the map or at a special file), copy the file in place")
        if not path.is_file():
            raise UserError(f"{path}: listed in {SCHEMA_FILE} but missing; the map is "
                            "incomplete, rebuild or restore it")
        size = path.stat().st_size
        if size != entry.bytes:
            raise UserError(f"{path}: size {size} bytes, but {SCHEMA_FILE} records "
                            f"{entry.bytes} bytes (truncated or replaced); rebuild or restore the map")
        if checksums:
            found = file_entry(path).sha256
            if found != entry.sha256:
                blame = ("the file is corrupted" if schema.format_version >= 2 else
                         f"the file is corrupted, or {SCHEMA_FILE} is ({V1_NOTE})")
                raise UserError(f"{path}: checksum mismatch (sha256 {found}, {SCHEMA_FILE} "
                                f"records {entry.sha256}); {blame}; rebuild or restore the map")
