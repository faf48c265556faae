"""Which keyframes a query may match: time window, recent-id window, radius.

Loop closure inside the running session must not match the frames just
seen, and relocalisation may restrict the search to a region around a prior
pose.  Each filter yields a boolean mask over map rows; ``None`` means "all".
"""
from __future__ import annotations

import numpy as np

from ..foundation.errors import UserError


def allowed_rows(stamps_ns: np.ndarray, positions: np.ndarray, *,
                 query_stamp_ns: int | None, exclude_within_s: float,
                 exclude_last_n: int, center_xyz: np.ndarray | None,
                 radius_m: float | None) -> np.ndarray | None:
    """Boolean mask [N] of map rows a single query may return, or None for all.

    stamps_ns: int64 [N] keyframe stamps (ns); positions: float64 [N, 3] map
    frame xyz (m).  A keyframe is dropped when its stamp is newer than
    ``query_stamp_ns - exclude_within_s`` (only when a query stamp is given),
    when it is one of the ``exclude_last_n`` most recently added, or when it
    lies farther than ``radius_m`` from ``center_xyz`` (m, map frame).
    """
    n = stamps_ns.shape[0]
    mask = None
    if query_stamp_ns is not None:
        limit = int(query_stamp_ns) - int(round(exclude_within_s * 1e9))
        mask = stamps_ns <= limit
    if exclude_last_n > 0:
        mask = np.ones(n, bool) if mask is None else mask
        mask[max(0, n - exclude_last_n):] = False
    if radius_m is not None:
        d2 = np.sum((positions - center_xyz) ** 2, axis=1)
        near = d2 <= radius_m * radius_m
        mask = near if mask is None else (mask & near)
    return mask


def check_filter_args(q: int, query_stamp_ns, exclude_within_s: float, exclude_last_n: int,
                      center_xyz, radius_m) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Validate the search filter arguments for ``q`` queries.

    Returns (stamps int64 [Q] or None, centers float64 [Q, 3] or None), one
    row per query, so every query can have its own stamp and centre.
    """
    if exclude_within_s < 0 or not np.isfinite(exclude_within_s):
        raise UserError(f"exclude_within_s must be a finite number >= 0 s, got {exclude_within_s}")
    if exclude_within_s > 0 and query_stamp_ns is None:
        raise UserError("exclude_within_s > 0 needs query_stamp_ns (the query image stamp, ns)")
    if int(exclude_last_n) != exclude_last_n or exclude_last_n < 0:
        raise UserError(f"exclude_last_n must be an integer >= 0, got {exclude_last_n}")
    stamps = None
    if query_stamp_ns is not None:
        stamps = np.asarray(query_stamp_ns)
        if stamps.dtype.kind not in "iu":
            raise UserError(f"query_stamp_ns must be integer nanoseconds, got dtype {stamps.dtype}")
        stamps = np.broadcast_to(stamps.astype(np.int64).reshape(-1), (q,)) \
            if stamps.size in (1, q) else None
        if stamps is None:
            raise UserError(f"query_stamp_ns: expected a scalar or {q} stamps, got shape "
                            f"{np.shape(query_stamp_ns)}")
    centers = None
    if (center_xyz is None) != (radius_m is None):
        raise UserError("center_xyz and radius_m must be given together (radius filter)")
    if radius_m is not None:
        if not np.isfinite(radius_m) or radius_m < 0:
            raise UserError(f"radius_m must be a finite number >= 0 m, got {radius_m}")
        c = np.asarray(center_xyz, dtype=np.float64)
        if c.shape == (3,):
            c = c[None]
        if c.ndim != 2 or c.shape[1] != 3 or c.shape[0] not in (1, q) or not np.all(np.isfinite(c)):
            raise UserError(f"center_xyz: expected finite float [3] or [{q}, 3] (m, map frame), "
                            f"got shape {np.shape(center_xyz)}")
        centers = np.broadcast_to(c, (q, 3))
    return stamps, centers
