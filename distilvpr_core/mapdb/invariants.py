"""What the content of a prior map must satisfy, checked by ``add`` and by ``load`` alike.

Checksums prove a file is the one ``schema.json`` lists, not that its values
are sane: anyone who edits a map can recompute them.  So every value a
search or the node publishes is checked against the invariants ``add``
enforces when the map is loaded too, with the same functions:

* descriptor rows finite and unit-norm (a row x1e30 would win every query,
  a zero or denormal row has no direction);
* poses finite, positions within :data:`MAX_POSITION_M`, quaternions
  unit-norm within :data:`QUAT_NORM_TOL`;
* stamps within [0, :data:`MAX_STAMP_NS`] (int64 max overflows the
  recent-keyframe filter, which then removes every keyframe);
* frame indices >= 0.

Each check raises UserError naming ``where`` and the first bad row.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..foundation.errors import UserError

#: Descriptor rows whose norms are all within this of 1 count as unit rows.
NORM_TOL = 1e-3
#: |x|, |y|, |z| of a pose, metres: far beyond any map (UTM northings are < 1e7), the
#: bound the odometry buffer applies too (localize/odom.py), and squares stay finite.
MAX_POSITION_M = 1e9
#: A pose quaternion's norm must be within this of 1 (a zero quaternion is no rotation at all).
QUAT_NORM_TOL = 1e-2
#: Latest keyframe stamp: 2200-01-01 in ns since the epoch; int64 max overflows the filters.
MAX_STAMP_NS = 7_258_118_400 * 10**9
_CHUNK = 1 << 12  # rows per check: float64 temporaries of a few MiB on large maps


def _fail(where: str, row: int, what: str, fix: str) -> None:
    raise UserError(f"{where}: row {row} {what}; {fix}")


def row_norms(x: np.ndarray, where: str, fix: str) -> np.ndarray:
    """float64 [N] L2 norms of float [N, D] rows; UserError on a NaN/inf or a zero/denormal row.

    Norms are taken in float64, so a float32 row of 1e30 has norm 1e30, not inf.
    """
    out = np.empty(x.shape[0], np.float64)
    for a in range(0, x.shape[0], _CHUNK):
        chunk = np.asarray(x[a:a + _CHUNK], np.float64)
        finite = np.isfinite(chunk).all(axis=1)
        if not finite.all():
            _fail(where, a + int(np.argmin(finite)), "holds NaN or inf", fix)
        norms = np.sqrt(np.einsum("ij,ij->i", chunk, chunk))
        tiny = norms < 1e-12
        if tiny.any():
            _fail(where, a + int(np.argmax(tiny)), "has zero (or denormal) norm: no direction", fix)
        out[a:a + _CHUNK] = norms
    return out


def check_unit_rows(x: np.ndarray, where: str, fix: str) -> None:
    """float32 [N, D] rows must be finite and unit-norm within :data:`NORM_TOL`."""
    norms = row_norms(x, where, fix)
    off = np.abs(norms - 1.0) > NORM_TOL
    if off.any():
        i = int(np.argmax(off))
        _fail(where, i, f"has norm {norms[i]:.6g}, not 1 (descriptors are L2-normalised)", fix)


def check_poses(poses: np.ndarray, where: str, fix: str) -> None:
    """float64 [N, 7] x y z qx qy qz qw: finite, |xyz| <= MAX_POSITION_M, |q| = 1 +- QUAT_NORM_TOL."""
    for a in range(0, poses.shape[0], _CHUNK):
        p = np.asarray(poses[a:a + _CHUNK], np.float64)
        finite = np.isfinite(p).all(axis=1)
        if not finite.all():
            _fail(where, a + int(np.argmin(finite)), "holds NaN or inf", fix)
        far = (np.abs(p[:, :3]) > MAX_POSITION_M).any(axis=1)
        if far.any():
            i = int(np.argmax(far))
            _fail(where, a + i, f"has position {p[i, :3].tolist()}, beyond +-{MAX_POSITION_M:g} m", fix)
        qn = np.linalg.norm(p[:, 3:], axis=1)
        bad = np.abs(qn - 1.0) > QUAT_NORM_TOL
        if bad.any():
            i = int(np.argmax(bad))
            _fail(where, a + i, f"has a quaternion of norm {qn[i]:.6g}, not 1", fix)


def check_stamps(stamps: np.ndarray, where: str, fix: str) -> None:
    """int64 [N] ns within [0, MAX_STAMP_NS]."""
    bad = (stamps < 0) | (stamps > MAX_STAMP_NS)
    if bad.any():
        i = int(np.argmax(bad))
        _fail(where, i, f"has stamp {int(stamps[i])} ns, outside 0..{MAX_STAMP_NS} (year 2200)", fix)


def check_frames(frames: np.ndarray, where: str, fix: str) -> None:
    """int64 [N] frame numbers >= 0."""
    bad = frames < 0
    if bad.any():
        i = int(np.argmax(bad))
        _fail(where, i, f"has frame index {int(frames[i])} < 0", fix)


def check_number(value: Any, where: str, lo: float, hi: float, integer: bool = False) -> float:
    """``value`` as a JSON number (not bool, not a string) within [lo, hi]; UserError otherwise."""
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or not lo <= value <= hi:
        kind = "an integer" if integer else "a number"
        raise UserError(f"{where} must be {kind} in [{lo:g}, {hi:g}], got {value!r:.80}; "
                        "the map is damaged, rebuild it")
    return value
