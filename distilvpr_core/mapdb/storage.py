"""Writing and reading a PriorMap directory (see docs/map.md for the files).

Written atomically (temp dir + rename, so a crash leaves the old map); read
with every checksum, shape, dtype and finiteness verified, and the model's
fingerprint and descriptor dim compared with the map's, naming both on a
mismatch.  A writer holds ``.NAME.lock`` beside the map (flock, released by
the kernel even on ``kill -9``); the next writer or ``map verify`` that gets
the lock removes the ``.NAME.XXXXXXXX.partial`` directories of writers that
died, since no live writer can own them.
"""
from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import logging
import os
import re
import shutil
import stat
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np

from ..foundation.atomic import atomic_directory
from ..foundation.errors import UserError
from .index import DescriptorIndex, read_index, resolve_params
from .invariants import check_frames, check_poses, check_stamps, check_unit_rows
from .schema import SCHEMA_FILE, MapSchema, load_npy, read_schema, save_npy, verify_files

_log = logging.getLogger(__name__)
_PID_FIELD = 21  # bytes of the lock file's pid field: 20 digits and a newline
_DAMAGED = "the map is damaged (or was edited), rebuild or restore it"

COLUMNS = {  # file -> (attribute, dtype, trailing shape)
    "ids.npy": ("_ids", np.int64, ()),
    "stamps_ns.npy": ("_stamps", np.int64, ()),
    "poses.npy": ("_poses", np.float64, (7,)),
    "frame_index.npy": ("_frames", np.int64, ()),
    "source_index.npy": ("_source_idx", np.int32, ()),
}


@dataclasses.dataclass(frozen=True)
class MapArrays:
    """What a map directory holds, as arrays: what :func:`write_map` writes and
    :func:`read_map` returns.  PriorMap builds itself from it and checks nothing
    here is changed behind its back.

    ``columns``: file name (:data:`COLUMNS`) -> array [N, ...] of that file's dtype;
    ``source_names``: the source of each ``source_idx`` value; ``index``: the
    descriptor index (its rows are the vectors); ``schema``: the parsed schema.json
    (None when writing: the writer builds it from the files' checksums).
    """

    index: DescriptorIndex
    columns: Mapping[str, np.ndarray]
    source_names: Sequence[str]
    schema: MapSchema | None = None


def write_map(path: str | Path, arrays: MapArrays, schema_for: Callable[[dict[str, Any]], MapSchema],
              extra_files: Callable[[Path], dict[str, Any]] | None = None,
              overwrite: bool = True) -> tuple[dict[str, Any], list[tuple[Path, int]]]:
    """Write a map directory atomically (temp dir + rename).

    Returns (file name -> checksum entry, partial directories of dead writers removed).
    ``schema_for(files)`` makes schema.json from the written files' entries;
    ``extra_files(tmp)`` writes more files (local features) and returns their entries.
    An existing *map* at ``path`` is replaced when ``overwrite``; any other non-empty
    directory is refused.  A crash leaves the old map intact.  The existence check runs
    with the writer lock held, so of two writers racing to a new path without
    ``overwrite`` the second is refused instead of silently replacing the first one's map.
    """
    path = Path(path)
    try:
        with writer_lock(path) as removed:
            _check_target(path, overwrite)
            with atomic_directory(path, overwrite=True) as tmp:
                files = arrays.index.write(tmp)
                for name, (_, dtype, _) in COLUMNS.items():
                    files[name] = save_npy(tmp / name, np.asarray(arrays.columns[name]).astype(dtype, copy=False))
                files["source_names.npy"] = save_npy(
                    tmp / "source_names.npy", np.asarray(list(arrays.source_names), dtype=str).reshape(-1))
                if extra_files is not None:
                    files.update(extra_files(tmp))
                text = json.dumps(schema_for(files).to_dict(), indent=2) + "\n"
                with open(tmp / SCHEMA_FILE, "w") as fh:
                    fh.write(text)
                    fh.flush()
                    os.fsync(fh.fileno())
    except FileExistsError as exc:
        raise UserError(str(exc)) from None
    return files, removed


def _check_target(path: Path, overwrite: bool) -> None:
    """Refuse to replace anything but a map, and a map unless ``overwrite``; call with
    the writer lock held (a check before the lock races with another writer)."""
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        raise UserError(f"{path}: exists and is not a directory; choose another output directory")
    if path.is_dir() and any(path.iterdir()):
        if not (path / SCHEMA_FILE).is_file():
            raise UserError(f"{path}: exists, is not empty and is not a distilvpr map; "
                            "choose another output directory")
        if not overwrite:
            raise UserError(f"{path}: a map exists already (pass --overwrite to replace it)")


@contextlib.contextmanager
def writer_lock(path: Path, clean: bool = True) -> Iterator[list[tuple[Path, int]]]:
    """Hold the writer lock of the map at ``path``; yields the stale partial
    directories removed (path, bytes) when ``clean``.

    UserError naming the holder's pid when another live process writes the
    map now.  The lock file ``.NAME.lock`` stays (deleting a lock file races
    with the next writer opening it).
    """
    lock = path.parent / f".{path.name}.lock"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # O_NOFOLLOW: a symlink planted as the lock must not make us write to its target.
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise LockUnavailable(f"{lock}: cannot open the writer lock ({exc.strerror or exc}); "
                              "a map can only be written where a lock file can be created "
                              "(not a read-only filesystem, not a directory or link in its place)") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
            # A hard link to another file would let the pid we write overwrite its first bytes.
            raise LockUnavailable(f"{lock}: is not a plain lock file (a special file or a hard link "
                                  "to another file); remove it and retry")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, _PID_FIELD, 0).decode("ascii", "replace").strip() or "unknown"
            raise UserError(f"{path}: another process (pid {holder[:20]}) is writing this map "
                            "now; wait for it to finish or write elsewhere") from None
        # A fixed-width field, never truncating: the file is ours (regular, one link) and tiny.
        os.pwrite(fd, f"{os.getpid():<{_PID_FIELD - 1}}\n".encode(), 0)
        yield remove_stale_partials(path) if clean else []
    finally:
        os.close(fd)  # releases the flock


class LockUnavailable(UserError):
    """The writer lock file cannot be created or is not a plain file; nothing was written."""


def remove_stale_partials(path: Path) -> list[tuple[Path, int]]:
    """Remove the temp directories of dead writers of the map at ``path``; call
    with :func:`writer_lock` held.  Returns (directory, bytes) of each removed
    and logs a warning for each."""
    pattern = re.compile(rf"\.{re.escape(path.name)}\.([a-z0-9_]{{8}}\.partial|old-\d+)")
    removed = []
    for p in sorted(path.parent.iterdir()) if path.parent.is_dir() else []:
        if p.is_dir() and not p.is_symlink() and pattern.fullmatch(p.name):
            size = sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
            shutil.rmtree(p, ignore_errors=True)
            removed.append((p, size))
            _log.warning("removed %s (%.1f MB), left by a writer of %s that died mid-save",
                         p, size / 1e6, path)
    return removed



def read_map(path: str | Path, expect_fingerprint: str | None = None,
             expect_dim: int | None = None, verify_checksums: bool = True) -> MapArrays:
    """Read and verify a map directory's arrays.

    Checks schema version, every file's size and sha256, array shapes and
    dtypes against the counts, the invariants ``add`` enforces, and (when
    given) the model fingerprint and descriptor dim; any mismatch raises
    UserError naming both values.
    """
    path = Path(path)
    schema = read_schema(path)
    if expect_dim is not None and int(expect_dim) != schema.dim:
        raise UserError(f"{path}: map descriptors have dim {schema.dim} but the model "
                        f"produces dim {int(expect_dim)}; rebuild the map with this model")
    if expect_fingerprint is not None and expect_fingerprint != schema.model_fingerprint:
        raise UserError(f"{path}: map was built with model fingerprint "
                        f"{schema.model_fingerprint} but the loaded model has fingerprint "
                        f"{expect_fingerprint}; rebuild the map with this model "
                        "('distilvpr map build') or load the model the map was built with")
    resolve_params(schema.index_type, dict(schema.index_params))
    needed = set(COLUMNS) | {"source_names.npy"}
    missing = sorted(needed - set(schema.files))
    if missing:
        raise UserError(f"{path / SCHEMA_FILE}: does not list {missing[0]}; the map is damaged")
    verify_files(path, schema, checksums=verify_checksums)
    n = schema.keyframes
    index = read_index(schema.index_type, path, schema.dim, dict(schema.index_params), n)
    columns = {name: load_npy(path / name, dtype, (n, *trail)) for name, (_, dtype, trail) in COLUMNS.items()}
    names = load_npy(path / "source_names.npy", None, (schema.sources,),
                     check=lambda dt, shape: None if dt.kind == "U" else f"expected strings, got {dt.name}")
    arrays = MapArrays(index=index, columns=columns, source_names=[str(s) for s in names], schema=schema)
    check_map_content(arrays, path, "vectors.npy" if "vectors.npy" in schema.files else "index.faiss")
    return arrays


def check_map_content(arrays: MapArrays, path: Path, vectors_file: str) -> None:
    """The invariants ``add`` enforces (mapdb/invariants.py), on a map's arrays."""
    cols, n, sources = arrays.columns, len(arrays.columns["ids.npy"]), len(arrays.source_names)
    check_unit_rows(arrays.index.vectors(), str(path / vectors_file), _DAMAGED)
    check_poses(cols["poses.npy"], str(path / "poses.npy"), _DAMAGED)
    check_stamps(cols["stamps_ns.npy"], str(path / "stamps_ns.npy"), _DAMAGED)
    check_frames(cols["frame_index.npy"], str(path / "frame_index.npy"), _DAMAGED)
    if not np.array_equal(cols["ids.npy"], np.arange(n)):
        raise UserError(f"{path / 'ids.npy'}: ids must be 0..{n - 1} in order; {_DAMAGED}")
    src = cols["source_index.npy"]
    if n and (src.min() < 0 or src.max() >= sources):
        raise UserError(f"{path / 'source_index.npy'}: values outside 0..{sources - 1}; {_DAMAGED}")
