"""Safe reading of the PointNetVLAD / MinkLoc++ / DistilVPR benchmark pickles.

The public Oxford RobotCar and Boreas benchmark folders are indexed by
pickles written by the community's generator scripts.  ``pickle.load`` on
such a file runs whatever code the file names, so every pickle is read here
with a restricted unpickler that builds only:

- plain containers and numbers (no globals needed);
- numpy arrays, dtypes and scalars (what pandas/numpy values pickle to);
- ``TrainingTuple`` (under the module names MinkLoc++ and DistilVPR write);
- ``copyreg._reconstructor`` only in its harmless protocol-0/1 form
  ``_reconstructor(TrainingTuple, object, None)``.

Anything else (``os.system``, ``builtins.eval``, a payload nested in a list,
``_reconstructor`` with another class) is refused with a :class:`UserError`
naming the file; a refused file never runs code.  Loaded objects are then
checked for the structure the readers below promise, so a well-formed pickle
with the wrong content also ends in a UserError, never an AttributeError.
"""
from __future__ import annotations

import copyreg
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from ..foundation.errors import UserError, short_repr
from ..foundation.safe_files import open_regular
from .training_tuple import TrainingTuple

_TUPLE_MODULES = {"distilvpr_core.data.training_tuple", "distilvpr_core.data.oxford_format",
                  "datasets.oxford", "datasets.base_datasets",
                  "datasets.pointnetvlad.pnv_raw", "__main__", "generating_queries.generate_training_tuples_baseline",
                  "generate_training_tuples_baseline", "datasets.boreas", "misc.utils"}
_NUMPY = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
          ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
          ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
          ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}


def _reconstructor(cls: Any, base: Any, state: Any) -> Any:
    # Protocol 0/1 pickles of plain classes go through copyreg._reconstructor; the
    # real one calls base.__new__/base.__init__ with attacker-chosen arguments.
    if cls is TrainingTuple and base is object and state is None:
        return copyreg._reconstructor(cls, base, state)
    raise pickle.UnpicklingError(f"copyreg._reconstructor({getattr(cls, '__name__', cls)!r}, "
                                 f"{getattr(base, '__name__', base)!r}, ...) is not allowed")


class _RestrictedUnpickler(pickle.Unpickler):
    """Admits TrainingTuple and numpy arrays/scalars, nothing else."""

    def find_class(self, module: str, name: str) -> Any:
        if name == "TrainingTuple" and module in _TUPLE_MODULES:
            return TrainingTuple
        if (module, name) in _NUMPY:
            return super().find_class(module, name)
        if (module, name) == ("copyreg", "_reconstructor"):
            return _reconstructor
        if (module, name) in {("builtins", "object"), ("__builtin__", "object")}:
            return object
        raise pickle.UnpicklingError(f"global '{module}.{name}' is not allowed in a benchmark pickle")


def load_pickle(path: str | Path) -> Any:
    """Load a benchmark pickle safely; UserError naming the file on anything else."""
    path = Path(path)
    fd = open_regular(path, follow_symlinks=True)  # a FIFO would block the read for ever
    try:
        with os.fdopen(fd, "rb") as fh:
            return _RestrictedUnpickler(fh).load()
    except (MemoryError, RecursionError):
        raise UserError(f"{path}: not a valid benchmark pickle (too large or too deeply nested)") from None
    except Exception as exc:  # noqa: BLE001 -- the unpickler ran no code; any failure is a bad file
        raise UserError(f"{path}: not a valid benchmark pickle ({type(exc).__name__}: {exc}); "
                        "regenerate it with the benchmark's generator scripts") from None


def _is_int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)


def read_training_tuples(path: str | Path) -> dict[int, Any]:
    """``{id: TrainingTuple}`` from a ``*training_queries*`` / ``*test_queries*`` pickle, checked:
    ids match keys, ``rel_scan_filepath`` is a str, ``position`` float [2] (northing, easting)."""
    data = load_pickle(path)
    tt = TrainingTuple
    if not isinstance(data, dict) or not all(isinstance(v, tt) for v in data.values()):
        raise UserError(f"{path}: expected a dict {{id: TrainingTuple}}, got {type(data).__name__}")
    for k, v in data.items():
        fields = getattr(v, "__dict__", {})
        missing = [f for f in ("id", "timestamp", "rel_scan_filepath", "position") if f not in fields]
        if missing:
            raise UserError(f"{path}: entry {k!r} is a TrainingTuple without {missing}")
        if not _is_int(v.id) or v.id != k or not isinstance(v.rel_scan_filepath, str):
            raise UserError(f"{path}: entry {k!r} has id {v.id!r} / path {v.rel_scan_filepath!r}")
        pos = np.asarray(v.position)
        if pos.shape != (2,) or not np.issubdtype(pos.dtype, np.number):
            raise UserError(f"{path}: entry {k!r} position must be [northing, easting], got {v.position!r}")
    return data


def read_evaluation_sets(path: str | Path) -> list[dict[int, dict[Any, Any]]]:
    """The list (one dict per run) of an ``*_evaluation_database/query.pickle``, checked.

    Each run's dict maps a frame index 0..N-1 to ``{'query': relative scan path,
    'northing': m, 'easting': m, ...}``; query pickles add, per other run ``j``
    (an int key), the list of database indices of run ``j`` within 25 m.
    A ``timestamp`` key is optional (the public pickles have none).
    """
    data = load_pickle(path)
    if not isinstance(data, list) or not all(isinstance(d, dict) for d in data):
        raise UserError(f"{path}: expected a list of dicts (one per run), got {type(data).__name__}")
    for r, d in enumerate(data):
        if sorted(d) != list(range(len(d))):
            raise UserError(f"{path}: run {r}: frame keys must be 0..{len(d) - 1}")
        for k, e in d.items():
            if not isinstance(e, dict) or not {"query", "northing", "easting"} <= set(e):
                raise UserError(f"{path}: run {r} entry {k} lacks query/northing/easting")
            if not isinstance(e["query"], str) or not (_is_num(e["northing"]) and _is_num(e["easting"])):
                raise UserError(f"{path}: run {r} entry {k}: query must be a path and "
                                "northing/easting numbers")
            for j, lst in e.items():
                if _is_int(j) and not (isinstance(lst, (list, np.ndarray))
                                       and all(_is_int(x) for x in lst)):
                    raise UserError(f"{path}: run {r} entry {k}: neighbours in run {j} must be a list of ints")
    return data


#: Image timestamps kept per lidar scan (nearest first; the readers use the first).
L2I_KEEP = 8


def read_lidar2image(path: str | Path) -> dict[int, list[int]]:
    """``{lidar timestamp: [image timestamps, nearest first]}`` (ints, at most
    :data:`L2I_KEEP` per scan), checked.  Lists shared between keys stay shared."""
    data = load_pickle(path)
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a dict {{lidar timestamp: [image timestamps]}}, "
                        f"got {type(data).__name__}")
    out: dict[int, list[int]] = {}
    # A pickle shares one object among many keys for free (its memo): check and convert
    # each distinct list once and keep only the nearest images, so a 10 MB file whose
    # keys share one long list costs 10 MB, not keys x list length.
    done: dict[int, list[int]] = {}
    for k, v in data.items():
        if not _is_int(k):
            raise UserError(f"{path}: key {short_repr(k)}: expected an int lidar timestamp")
        if id(v) not in done:
            if not isinstance(v, (list, tuple, np.ndarray)) or not all(_is_int(x) for x in v):
                raise UserError(f"{path}: entry {int(k)}: expected a list of int image timestamps, "
                                f"got {short_repr(v)}")
            done[id(v)] = [int(x) for x in v[:L2I_KEEP]]
        out[int(k)] = done[id(v)]
    return out
