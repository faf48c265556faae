"""Crash-safe writes: build in a temporary sibling, then rename into place.

A reader never sees a half-written file or directory: either the old content
or the complete new one.  ``os.replace`` is atomic on POSIX within one
filesystem, which is why the temporary lives next to the target.

Modes follow the process umask like ``open()``/``mkdir`` would (0644 files,
0755 directories with the usual 022): ``mkstemp``/``mkdtemp`` create 0600 /
0700, and renaming them would leave maps, models and reports private to
their writer, unreadable by a node running as another user or in a
container.  A target directory that cannot be written raises
:class:`OutputNotWritable` (a UserError and an OSError) naming the target.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from .errors import UserError


class OutputNotWritable(UserError, OSError):
    """The output's directory cannot be created or written; nothing was written."""


def current_umask() -> int:
    """The process umask, read without changing it where Linux allows."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # elsewhere: set and restore (not thread-safe, rare)
    os.umask(mask)
    return mask


def _temp_in(parent: Path, target: Path, make) -> str:
    """Create ``parent`` and a temp entry in it with ``make(dir=...)``; a
    permission or missing-directory problem names the target, not the temp."""
    try:
        parent.mkdir(parents=True, exist_ok=True)
        return make(dir=parent)
    except OSError as exc:
        raise OutputNotWritable(f"{target}: cannot write there ({exc.strerror or exc}); choose a "
                                "writable output directory (nothing was written)") from None


_RENAME_EXCHANGE = 2  # linux/fs.h


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths with Linux renameat2(RENAME_EXCHANGE).

    Returns False where the kernel, libc or filesystem does not support it, so
    the caller can fall back to two renames.
    """
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd = -100
    res = renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), _RENAME_EXCHANGE)
    return res == 0


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` via a temp file + rename."""
    path = Path(path)
    fd, tmp = _temp_in(path.parent, path, lambda dir: tempfile.mkstemp(
        prefix=f".{path.name}.", suffix=".tmp", dir=dir))
    try:
        os.fchmod(fd, 0o666 & ~current_umask())
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)
    return path


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` via a temp file + rename."""
    return write_bytes_atomic(path, text.encode("utf-8"))


@contextlib.contextmanager
def atomic_directory(target: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temp directory that replaces ``target`` only if the block succeeds.

    With ``overwrite=False`` an existing non-empty ``target`` is an error.  With
    ``overwrite=True`` the old and new directories are swapped atomically
    (renameat2 RENAME_EXCHANGE on Linux; two renames elsewhere), so a crash
    leaves one complete version in place.
    """
    target = Path(target)
    if target.exists() and not target.is_dir():
        raise FileExistsError(f"{target}: exists and is not a directory")
    if target.exists() and any(target.iterdir()) and not overwrite:
        raise FileExistsError(f"{target}: directory exists and is not empty "
                              "(pass --overwrite to replace it)")
    tmp = Path(_temp_in(target.parent, target, lambda dir: tempfile.mkdtemp(
        prefix=f".{target.name}.", suffix=".partial", dir=dir)))
    try:
        os.chmod(tmp, 0o777 & ~current_umask())
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if target.exists() and _exchange(tmp, target):
        # One atomic step: readers see either the old or the new directory,
        # never neither; tmp now holds the old content.
        _fsync_dir(target.parent)
        shutil.rmtree(tmp, ignore_errors=True)
        return
    old = None
    if target.exists():  # fallback: a crash between these renames leaves .old
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        os.replace(target, old)
    os.replace(tmp, target)
    _fsync_dir(target.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
