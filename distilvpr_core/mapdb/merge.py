"""Merge two prior maps built with the same model into a new one.

The result keeps all keyframes of ``a`` (ids unchanged) followed by those of
``b`` (ids renumbered from ``len(a)``); sources keep their names, so a
keyframe's origin (source, frame_index, stamp) survives the merge.  The index
is rebuilt from the raw rows, which is why every index kind keeps them.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from ..foundation.errors import UserError
from .priormap import PriorMap


def merge_maps(a: PriorMap, b: PriorMap, index: str | None = None,
               index_params: Mapping[str, Any] | None = None) -> PriorMap:
    """A new map with the keyframes of ``a`` then ``b``.

    Both maps must share descriptor dim, model fingerprint and preprocessing
    contract (UserError naming both values otherwise).  ``index`` defaults to
    ``a``'s index type and parameters.
    """
    if a.dim != b.dim:
        raise UserError(f"cannot merge: descriptor dim {a.dim} (first map) != {b.dim} (second map)")
    if a.fingerprint != b.fingerprint:
        raise UserError(f"cannot merge maps of different models: fingerprint {a.fingerprint} "
                        f"(first map) != {b.fingerprint} (second map); rebuild one with the other's model")
    if a.contract != b.contract:
        raise UserError(f"cannot merge: preprocessing contract {a.contract} (first map) != "
                        f"{b.contract} (second map)")
    if index is None:
        index, index_params = a.index_type, (a.index_params if index_params is None else index_params)
    out = PriorMap.create(a.dim, a.fingerprint, a.contract, index=index, index_params=index_params)
    if len(a) + len(b):
        # One add: IVF-PQ trains on its first add, so it sees all rows at once.
        out.add(np.concatenate([a.descriptors, b.descriptors]),
                np.concatenate([a.stamps_ns, b.stamps_ns]), np.concatenate([a.poses, b.poses]),
                [str(s) for s in np.concatenate([a.sources, b.sources])],
                np.concatenate([a.frame_index, b.frame_index]))
    return out
