"""Ground-truth positions of query frames, interpolated from a pose track."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from .outcome import QueryOutcome


def positions_at(track_stamps_ns: np.ndarray, track_xyz: np.ndarray,
                 query_stamps_ns: np.ndarray, max_gap_s: float) -> np.ndarray:
    """Linearly interpolate a position track at the query stamps.

    Args:
        track_stamps_ns: int64 [T] pose stamps (any order; sorted here).
        track_xyz: float64 [T, 3] positions in the map frame (metres).
        query_stamps_ns: int64 [Q] image stamps.
        max_gap_s: a query whose nearest track stamp is farther than this
            (seconds) gets no ground truth, so a missing stretch of poses
            never produces a made-up position.

    Returns:
        float64 [Q, 3]; rows without ground truth are NaN.
    """
    ts = np.asarray(track_stamps_ns, dtype=np.int64).reshape(-1)
    xyz = np.asarray(track_xyz, dtype=np.float64).reshape(-1, 3)
    q = np.asarray(query_stamps_ns, dtype=np.int64).reshape(-1)
    out = np.full((len(q), 3), np.nan)
    if len(ts) == 0 or len(q) == 0:
        return out
    order = np.argsort(ts, kind="stable")
    ts, xyz = ts[order], xyz[order]
    # Relative seconds in float64 keep sub-microsecond resolution for interp.
    t0 = ts[0]
    tsf = (ts - t0) / 1e9
    qf = (q - t0) / 1e9
    for axis in range(3):
        out[:, axis] = np.interp(qf, tsf, xyz[:, axis])
    pos = np.searchsorted(tsf, qf)
    left = np.abs(qf - tsf[np.clip(pos - 1, 0, len(tsf) - 1)])
    right = np.abs(tsf[np.clip(pos, 0, len(tsf) - 1)] - qf)
    out[np.minimum(left, right) > max_gap_s] = np.nan
    return out


def attach_positions(outcomes: Sequence[QueryOutcome], track_stamps_ns: np.ndarray,
                     track_xyz: np.ndarray, max_gap_s: float) -> None:
    """Set each outcome's ``position`` from the track at its stamp (None where there is no pose).

    Done once after a run, vectorised, so frames can be streamed from a long
    bag without holding them in memory.
    """
    stamps = np.array([o.stamp_ns for o in outcomes], np.int64)
    for o, pos in zip(outcomes, positions_at(track_stamps_ns, track_xyz, stamps, max_gap_s)):
        o.position = None if np.isnan(pos).any() else pos


def bag_track(reader: Any, pose_topic: str | None) -> tuple[tuple[np.ndarray, np.ndarray] | None, str | None]:
    """The ground-truth track of a bag, ``((stamps_ns int64 [T], xyz float64 [T, 3]), None)``,
    or ``(None, why)`` when there is none (no topic given, missing, wrong type, empty).

    ``reader``: an open :class:`distilvpr_core.data.bags.BagReader`.
    """
    from ..foundation.errors import UserError
    if not pose_topic:
        return None, "no ground-truth pose topic given (--pose-topic)"
    try:
        stamps, poses = reader.poses(pose_topic, "; choose one with --pose-topic", "ground-truth pose")
    except UserError as exc:
        return None, str(exc)
    return (stamps, poses[:, :3]), None
