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
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from ..foundation.atomic import atomic_directory
from ..foundation.errors import UserError
from .index import read_index, resolve_params
from .rows import GrowableArray
from .schema import SCHEMA_FILE, load_npy, read_schema, save_npy, verify_files

_log = logging.getLogger(__name__)
_FINITE_CHUNK = 1 << 16  # rows per finiteness check: bounded memory on a file-mapped map

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
    non-empty directory is refused.  A crash leaves the old map intact.
    """
    path = Path(path)
    if path.exists() and path.is_dir() and any(path.iterdir()):
        if not (path / SCHEMA_FILE).is_file():
            raise UserError(f"{path}: exists, is not empty and is not a distilvpr map; "
                            "choose another output directory")
        if not overwrite:
            raise UserError(f"{path}: a map exists already (pass --overwrite to replace it)")
    _check_finite(self._index.vectors(), "save: descriptors")
    _check_finite(self._poses, "save: poses")
    try:
        with writer_lock(path) as removed, atomic_directory(path, overwrite=True) as tmp:
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


@contextlib.contextmanager
def writer_lock(path: Path, clean: bool = True) -> Iterator[list[tuple[Path, int]]]:
    """Hold the writer lock of the map at ``path``; yields the stale partial
    directories removed (path, bytes) when ``clean``.

    UserError naming the holder's pid when another live process writes the
    map now.  The lock file ``.NAME.lock`` stays (deleting a lock file races
    with the next writer opening it).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path.parent / f".{path.name}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            raise UserError(f"{path}: another process (pid {holder}) is writing this map now; "
                            "wait for it to finish or write elsewhere") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield remove_stale_partials(path) if clean else []
    finally:
        os.close(fd)  # releases the flock


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
    names = np.load(path / "source_names.npy", allow_pickle=False)
    if names.dtype.kind != "U" or names.shape != (schema.sources,):
        raise UserError(f"{path / 'source_names.npy'}: expected {schema.sources} strings, "
                        f"got {names.dtype} {names.shape}; the map is damaged")
    m._source_names = [str(s) for s in names]
    m._files = dict(schema.files)
    _check_finite(index.vectors(), str(path / ("vectors.npy" if "vectors.npy" in schema.files
                                              else "index.faiss")))
    _check_finite(m._poses, str(path / "poses.npy"))
    if not np.array_equal(m._ids, np.arange(n)):
        raise UserError(f"{path / 'ids.npy'}: ids must be 0..{n - 1} in order; the map is damaged")
    if n and (m._source_idx.min() < 0 or m._source_idx.max() >= schema.sources):
        raise UserError(f"{path / 'source_index.npy'}: values outside 0..{schema.sources - 1}")
    return m


def _check_finite(arr: np.ndarray, where: str) -> None:
    """UserError naming ``where`` and the first row holding NaN or inf."""
    for start in range(0, arr.shape[0], _FINITE_CHUNK):
        chunk = np.asarray(arr[start:start + _FINITE_CHUNK])
        bad = np.flatnonzero(~np.isfinite(chunk).reshape(len(chunk), -1).all(axis=1))
        if bad.size:
            raise UserError(f"{where}: row {start + int(bad[0])} holds NaN or inf; the map is "
                            "damaged (or was written by a broken tool), rebuild it")
