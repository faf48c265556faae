"""Property-based test (hypothesis): no semantic edit of a map is accepted.

Each example edits one value of a valid map (a descriptor row, a pose, a
stamp, an index column, a feature array or the feature camera in
schema.json), or the shape/dtype of an array, then recomputes every
checksum and the schema digest (map_tamper.reseal_schema), as the attack
campaign of issue 31 did.  ``PriorMap.load`` must refuse every one with a
UserError; anything else (accepted, or another exception) fails.
"""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from distilvpr_core.foundation.errors import UserError
from distilvpr_core.mapdb import PriorMap
from distilvpr_core.mapdb.invariants import MAX_POSITION_M, MAX_STAMP_NS, NORM_TOL, QUAT_NORM_TOL
from map_tamper import build, reseal_schema, rewrite

N = 6
F = 8  # features per keyframe in map_tamper.build


@pytest.fixture(scope="module")
def base_map(tmp_path_factory) -> Path:
    return build(tmp_path_factory.mktemp("base") / "m", n=N, features=True)


def _off(tol: float):
    """A factor whose distance from 1 is beyond ``tol`` (norms off unit)."""
    return st.one_of(st.floats(0.0, 1.0 - 2 * tol), st.floats(1.0 + 2 * tol, 1e30))


huge = st.floats(MAX_POSITION_M * 1.01, 1e308) | st.sampled_from([np.inf, np.nan])
non_finite = st.sampled_from([np.nan, np.inf, -np.inf])


@st.composite
def array_edits(draw):
    """(file, function editing a copy of its array in place)."""
    row = draw(st.integers(0, N - 1))
    kind = draw(st.sampled_from([
        "vec_scale", "vec_nonfinite", "vec_tiny", "pose_far", "pose_quat", "pose_nonfinite",
        "stamp", "frame", "source", "ids", "counts", "keypoints", "shape"]))
    if kind == "vec_scale":
        f = draw(_off(NORM_TOL))
        return "vectors.npy", lambda a: a.__setitem__(row, a[row] * np.float32(f))
    if kind == "vec_nonfinite":
        col, v = draw(st.integers(0, 7)), draw(non_finite)
        return "vectors.npy", lambda a: a.__setitem__((row, col), v)
    if kind == "vec_tiny":  # zero and denormal rows: no direction
        v = draw(st.sampled_from([0.0, 1e-40, -1e-42, 1e-45]))
        return "vectors.npy", lambda a: a.__setitem__(row, np.float32(v))
    if kind == "pose_far":
        col, v, sign = draw(st.integers(0, 2)), draw(huge), draw(st.sampled_from([1, -1]))
        return "poses.npy", lambda a: a.__setitem__((row, col), sign * v)
    if kind == "pose_quat":
        f = draw(_off(QUAT_NORM_TOL))
        return "poses.npy", lambda a: a.__setitem__((row, slice(3, 7)), a[row, 3:] * f)
    if kind == "pose_nonfinite":
        col, v = draw(st.integers(0, 6)), draw(non_finite)
        return "poses.npy", lambda a: a.__setitem__((row, col), v)
    if kind == "stamp":
        v = draw(st.integers(-2**63, -1) | st.integers(MAX_STAMP_NS + 1, 2**63 - 1))
        return "stamps_ns.npy", lambda a: a.__setitem__(row, v)
    if kind == "frame":
        v = draw(st.integers(-2**63, -1))
        return "frame_index.npy", lambda a: a.__setitem__(row, v)
    if kind == "source":
        v = draw(st.integers(-2**31, -1) | st.integers(1, 2**31 - 1))  # one source: only 0 is valid
        return "source_index.npy", lambda a: a.__setitem__(row, v)
    if kind == "ids":
        v = draw(st.integers(-2**63, 2**63 - 1).filter(lambda x: x != row))
        return "ids.npy", lambda a: a.__setitem__(row, v)
    if kind == "counts":
        v = draw(st.integers(-2**31, -1) | st.integers(F + 1, 2**31 - 1))
        return "features_counts.npy", lambda a: a.__setitem__(row, v)
    if kind == "keypoints":
        j, axis = draw(st.integers(0, F - 1)), draw(st.integers(0, 1))
        v = draw(st.floats(-1e30, -1e-3) | st.floats(161.0, 1e30) | non_finite)
        return "features_keypoints.npy", lambda a: a.__setitem__((row, j, axis), v)
    name = draw(st.sampled_from(["vectors.npy", "poses.npy", "stamps_ns.npy", "source_index.npy",
                                 "features_counts.npy"]))
    change = draw(st.sampled_from(["drop_row", "add_row", "drop_col", "dtype"]))
    return name, change


camera_values = st.one_of(
    st.text(max_size=4), st.booleans(), st.none(), st.lists(st.integers(), max_size=2),
    st.floats(-1e308, -1e-300), st.floats(1e9, 1e308))


@st.composite
def schema_edits(draw):
    """A function editing the parsed schema.json (its "features" section)."""
    key = draw(st.sampled_from(["fx", "fy", "cx", "cy", "width", "height", "max_per_keyframe", "kind"]))
    value = draw(camera_values.filter(lambda v: not (key == "kind" and v == "orb")))
    if key in ("max_per_keyframe", "kind"):
        return lambda d: d["features"].__setitem__(key, value)
    return lambda d: d["features"]["camera"].__setitem__(key, value)


def _reshape(arr: np.ndarray, change: str) -> np.ndarray:
    if change == "drop_row":
        return arr[:-1]
    if change == "add_row":
        return np.concatenate([arr, arr[-1:]])
    if change == "drop_col":
        return arr[:, :-1] if arr.ndim == 2 else arr.reshape(-1, 1)
    return arr.astype(np.float32 if arr.dtype != np.float32 else np.float64)


def _assert_refused(path: Path) -> None:
    try:
        PriorMap.load(path)
    except UserError:
        return
    raise AssertionError("a semantically edited map with resealed checksums was accepted")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(edit=st.one_of(array_edits(), schema_edits()))
def test_no_resealed_semantic_edit_is_accepted(base_map, edit):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m"
        shutil.copytree(base_map, path)
        if callable(edit):
            reseal_schema(path, edit)
        else:
            name, change = edit
            arr = np.load(path / name).copy()
            if callable(change):
                with np.errstate(all="ignore"):
                    change(arr)
            else:
                arr = _reshape(arr, change)
            rewrite(path, name, arr)
        _assert_refused(path)


def test_the_unedited_copy_is_accepted(base_map, tmp_path):
    """The property is not vacuous: the same copy-and-reseal path with no edit loads."""
    path = tmp_path / "m"
    shutil.copytree(base_map, path)
    reseal_schema(path)
    assert len(PriorMap.load(path)) == N
