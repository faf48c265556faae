"""``schema.json`` of a prior map: what is stored, how, with which model.

The schema is the contract between the writer and every later reader.  It
records the format version (a reader refuses maps from a newer format), the
descriptor dimension and metric, the index type and its parameters, the model
fingerprint (sha256 of the student weights) and preprocessing contract the
descriptors were made with, counts, creation time and the sha256 + size of
every other file in the directory.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import Any, Mapping

from ..errors import UserError

FORMAT = "distilvpr-map"
FORMAT_VERSION = 1
SCHEMA_FILE = "schema.json"
METRIC = "inner_product"
_HASH_CHUNK = 16 << 20  # 16 MiB: large reads keep hashlib near memory speed


@dataclasses.dataclass(frozen=True)
class FileEntry:
    """Size (bytes) and sha256 hex digest of one file of a map directory."""

    sha256: str
    bytes: int


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
        """JSON-ready dict in the on-disk layout (see docs/map.md)."""
        out = {
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
            out["features"] = dict(self.features)
        return out

    @classmethod
    def from_dict(cls, data: Any, where: str) -> "MapSchema":
        """Parse and check a ``schema.json`` dict; ``where`` names the file in errors."""
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise UserError(f"{where}: not a distilvpr map schema (expected \"format\": "
                            f"\"{FORMAT}\"); point at a directory written by 'distilvpr map build'")
        version = data.get("format_version")
        if not isinstance(version, int) or isinstance(version, bool):
            raise UserError(f"{where}: format_version must be an integer, got {version!r}")
        if version > FORMAT_VERSION:
            raise UserError(f"{where}: map format version {version} is newer than this "
                            f"distilvpr reads (version {FORMAT_VERSION}); upgrade distilvpr "
                            "or rebuild the map with this version")
        if version < 1:
            raise UserError(f"{where}: invalid format_version {version}")
        try:
            files = {str(n): FileEntry(sha256=str(e["sha256"]), bytes=int(e["bytes"]))
                     for n, e in data["files"].items()}
            schema = cls(
                dim=_int(data["dim"], where, "dim"),
                metric=str(data["metric"]),
                index_type=str(data["index"]["type"]),
                index_params=dict(data["index"].get("params") or {}),
                model_fingerprint=str(data["model_fingerprint"]),
                preprocessing=dict(data.get("preprocessing") or {}),
                keyframes=_int(data["counts"]["keyframes"], where, "counts.keyframes"),
                sources=_int(data["counts"]["sources"], where, "counts.sources"),
                created_at=str(data["created_at"]),
                faiss_version=str(data.get("faiss_version", "")),
                files=files,
                format_version=version,
                features=data.get("features"),
            )
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            raise UserError(f"{where}: malformed schema, missing or invalid entry {exc}; "
                            "the map directory is damaged, rebuild it") from None
        if schema.metric != METRIC:
            raise UserError(f"{where}: metric {schema.metric!r} is not supported "
                            f"(only {METRIC!r})")
        if schema.dim < 1:
            raise UserError(f"{where}: dim must be >= 1, got {schema.dim}")
        return schema


def _int(value: Any, where: str, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise UserError(f"{where}: {key} must be an integer, got {value!r}")
    return value


def file_entry(path: Path) -> FileEntry:
    """sha256 and size of ``path`` (read in 16 MiB chunks)."""
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(_HASH_CHUNK):
            h.update(chunk)
            size += len(chunk)
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


def read_schema(directory: Path) -> MapSchema:
    """Read and parse ``directory/schema.json``; a UserError names what is wrong."""
    path = directory / SCHEMA_FILE
    if not directory.is_dir():
        raise UserError(f"{directory}: map directory not found")
    if not path.is_file():
        raise UserError(f"{path}: missing; {directory} is not a distilvpr map directory")
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{path}: cannot be read as JSON ({exc}); the map is damaged, "
                        "rebuild it") from None
    return MapSchema.from_dict(data, str(path))


def verify_files(directory: Path, schema: MapSchema, checksums: bool = True) -> None:
    """Check every listed file exists with the recorded size (and sha256).

    Raises UserError naming the first file that is missing, truncated or
    modified, with the expected and found values.
    """
    for name, entry in sorted(schema.files.items()):
        path = directory / name
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
                raise UserError(f"{path}: checksum mismatch (sha256 {found}, {SCHEMA_FILE} "
                                f"records {entry.sha256}); the file is corrupted, rebuild "
                                "or restore the map")
