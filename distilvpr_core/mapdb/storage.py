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
import fcntl
import json
import logging
import os
import re
import shutil
import stat
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from ..foundation.atomic import atomic_directory
from ..foundation.errors import UserError
from .index import read_index, resolve_params
from .rows import GrowableArray
from .invariants import check_frames, check_poses, check_stamps, check_unit_rows
from .schema import SCHEMA_FILE, load_npy, read_schema, save_npy, verify_files

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


def save_map(self: Any, path: str | Path, overwrite: bool = True) -> Path:
    """Write the map directory atomically (temp dir + rename); returns the path.

    An existing *map* at ``path`` is replaced when ``overwrite``; any other
    non-empty directory is refused.  A crash leaves the old map intact.  The
    existence check runs with the writer lock held, so of two writers racing
    to a new path without ``overwrite`` the second is refused instead of
    silently replacing the first one's map.
    """
    path = Path(path)
    fix = "the map in memory was changed behind add(); nothing was written"
    check_unit_rows(self._index.vectors(), "save: descriptors", fix)
    check_poses(self._poses, "save: poses", fix)
    check_stamps(self._stamps, "save: stamps", fix)
    try:
        with writer_lock(path) as removed:
            _check_target(path, overwrite)
            with atomic_directory(path, overwrite=True) as tmp:
                files = self._index.write(tmp)
                for name, (attr, dtype, _) in COLUMNS.items():
                    files[name] = save_npy(tmp / name, getattr(self, attr).astype(dtype, copy=False))
                files["source_names.npy"] = save_npy(
                    tmp / "source_names.npy", np.asarray(self._source_names, dtype=str).reshape(-1))
                if getattr(self, "_features", None) is not None:  # local features (mapdb/features.py)
                    files.update(self._features.write(tmp))
                text = json.dumps(self._schema(files).to_dict(), indent=2) + "\n"
                with open(tmp / SCHEMA_FILE, "w") as fh:
                    fh.write(text)
                    fh.flush()
                    os.fsync(fh.fileno())
    except FileExistsError as exc:
        raise UserError(str(exc)) from None
    self._files = dict(files)
    self.removed_partials = removed
    return path


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



def load_map(cls: Any, path: str | Path, expect_fingerprint: str | None = None,
         expect_dim: int | None = None, verify_checksums: bool = True) -> Any:
    """Load and verify a map directory.

    Checks schema version, every file's size and sha256, array shapes and
    dtypes against the counts, and (when given) the model fingerprint and
    descriptor dim; any mismatch raises UserError naming both values.
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
    m = cls(schema.dim, schema.model_fingerprint, schema.preprocessing, index, schema.created_at)
    for name, (attr, dtype, trail) in COLUMNS.items():
        m._cols[attr] = GrowableArray(dtype, trail, load_npy(path / name, dtype, (n, *trail)))
    names = load_npy(path / "source_names.npy", None, (schema.sources,),
                     check=lambda dt, shape: None if dt.kind == "U" else f"expected strings, got {dt.name}")
    m._source_names = [str(s) for s in names]
    m._files = dict(schema.files)
    check_map_content(m, path, n, schema.sources,
                      "vectors.npy" if "vectors.npy" in schema.files else "index.faiss")
    return m


def check_map_content(m: Any, path: Path, n: int, sources: int, vectors_file: str) -> None:
    """The invariants ``add`` enforces (mapdb/invariants.py), on a loaded map's arrays."""
    check_unit_rows(m._index.vectors(), str(path / vectors_file), _DAMAGED)
    check_poses(m._poses, str(path / "poses.npy"), _DAMAGED)
    check_stamps(m._stamps, str(path / "stamps_ns.npy"), _DAMAGED)
    check_frames(m._frames, str(path / "frame_index.npy"), _DAMAGED)
    if not np.array_equal(m._ids, np.arange(n)):
        raise UserError(f"{path / 'ids.npy'}: ids must be 0..{n - 1} in order; {_DAMAGED}")
    if n and (m._source_idx.min() < 0 or m._source_idx.max() >= sources):
        raise UserError(f"{path / 'source_index.npy'}: values outside 0..{sources - 1}; {_DAMAGED}")
