"""Reading files an attacker may have edited: regular files only, bounded, whole.

One opener and one ``.npy`` reader for every file the project reads from a
map or a dataset:

* :func:`open_regular` refuses a symbolic link (``O_NOFOLLOW``) and anything
  that is not a regular file (a FIFO would block a reader forever, a device
  would never end); it opens with ``O_NONBLOCK`` so even the open of a FIFO
  cannot hang.
* :func:`read_npy` checks the ``.npy`` header (dtype, shape, no pickled
  objects) and that the file holds exactly the bytes the header promises
  *before* allocating, then reads the data into memory.  A truncated file, a
  header claiming 3e11 rows, trailing garbage or an empty file is one
  UserError naming the file, never an ``EOFError``/``MemoryError`` traceback.
  Reading into memory (not ``mmap``) means a file truncated or rewritten
  after load cannot change what was verified or kill the reader with SIGBUS.
"""
from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import Any, Callable

from .errors import UserError

#: Refuse ``.npy`` headers longer than this (numpy itself writes < 1 KiB).
_MAX_HEADER = 1 << 16


def open_regular(path: str | Path, what: str = "", follow_symlinks: bool = False) -> int:
    """A read-only fd of ``path``, which must be a regular file (and, unless
    ``follow_symlinks``, not a symlink: a map's own files must be in the map).

    ``what`` prefixes the error message (default: the path).  The caller closes the fd.
    """
    where = what or str(path)
    nofollow = 0 if follow_symlinks else os.O_NOFOLLOW
    try:
        fd = os.open(path, os.O_RDONLY | nofollow | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UserError(f"{where}: is a symbolic link; refused (copy the file itself into "
                            "place)") from None
        raise UserError(f"{where}: cannot be opened ({exc.strerror or exc})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UserError(f"{where}: is not a regular file (a FIFO, device or directory); refused")
        os.set_blocking(fd, True)  # a regular file: plain blocking reads from here on
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_bytes(path: str | Path, max_bytes: int, what: str = "", follow_symlinks: bool = False) -> bytes:
    """The whole content of the regular file ``path``; UserError if it exceeds ``max_bytes``."""
    where = what or str(path)
    fd = open_regular(path, what, follow_symlinks)
    try:
        size = os.fstat(fd).st_size
        if size > max_bytes:
            raise UserError(f"{where}: {size} bytes, more than the {max_bytes} allowed; refused")
        with os.fdopen(os.dup(fd), "rb") as fh:
            data = fh.read(max_bytes + 1)
    except OSError as exc:
        raise UserError(f"{where}: cannot be read ({exc.strerror or exc})") from None
    finally:
        os.close(fd)
    if len(data) > max_bytes:
        raise UserError(f"{where}: more than the {max_bytes} bytes allowed; refused")
    return data


def read_npy(path: str | Path, dtype: Any = None, shape: tuple[int, ...] | None = None, *,
             check: Callable[[Any, tuple[int, ...]], str | None] | None = None,
             max_bytes: int | None = None, what: str = "", fix: str = "",
             follow_symlinks: bool = False) -> Any:
    """The array in the ``.npy`` file ``path``, read into memory (no pickle, no mmap).

    dtype / shape: required values (None = any); ``check(dtype, shape)``
    returns a message when the header is not acceptable (called before any
    allocation); ``max_bytes`` caps the data size.  ``fix`` ends each error
    message (what the user should do).  ``follow_symlinks``: see
    :func:`open_regular`.  Every problem is one UserError naming the file.
    """
    import numpy as np
    from numpy.lib import format as npformat

    where = what or str(path)
    tail = f"; {fix}" if fix else ""
    fd = open_regular(path, what, follow_symlinks)
    try:
        with os.fdopen(os.dup(fd), "rb") as fh:
            size = os.fstat(fd).st_size
            try:
                version = npformat.read_magic(fh)
                readers = {(1, 0): npformat.read_array_header_1_0,
                           (2, 0): npformat.read_array_header_2_0}
                if version not in readers:
                    raise ValueError(f"unsupported .npy version {version}")
                got_shape, fortran, got_dtype = readers[version](fh, max_header_size=_MAX_HEADER)
            except Exception as exc:  # noqa: BLE001 - numpy parses the header with ast/tokenize,
                # which raise many types on garbage; every one means "not a .npy file"
                raise UserError(f"{where}: cannot be read as .npy ({str(exc)[:200]}){tail}") from None
            if got_dtype.hasobject:
                raise UserError(f"{where}: refused (it holds pickled Python objects){tail}")
            got_shape = tuple(int(s) for s in got_shape)
            if dtype is not None and got_dtype != np.dtype(dtype) or \
                    shape is not None and got_shape != tuple(shape):
                want = f"{np.dtype(dtype).name if dtype is not None else 'any dtype'} " \
                       f"{list(shape) if shape is not None else '[any shape]'}"
                raise UserError(f"{where}: expected {want}, got {got_dtype.name} {list(got_shape)}{tail}")
            if check is not None and (problem := check(got_dtype, got_shape)):
                raise UserError(f"{where}: {problem}{tail}")
            count = 1
            for s in got_shape:
                count *= s
            nbytes = count * got_dtype.itemsize
            if max_bytes is not None and nbytes > max_bytes:
                raise UserError(f"{where}: header claims {list(got_shape)} ({nbytes} bytes), more "
                                f"than the {max_bytes} allowed; refused{tail}")
            offset = fh.tell()
            if size != offset + nbytes:
                raise UserError(f"{where}: header claims {list(got_shape)} {got_dtype.name} "
                                f"({nbytes} bytes of data) but the file holds {size - offset} "
                                f"(truncated or padded){tail}")
            out = np.empty(got_shape[::-1] if fortran else got_shape, got_dtype)
            if nbytes and fh.readinto(out.reshape(-1).view(np.uint8)) != nbytes:
                raise UserError(f"{where}: shorter than its header says (changed while read){tail}")
    except OSError as exc:
        raise UserError(f"{where}: cannot be read ({exc.strerror or exc}){tail}") from None
    finally:
        os.close(fd)
    return np.ascontiguousarray(out.T) if fortran else out
