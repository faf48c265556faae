"""Benchmark datasets edited by an attacker (issue 31 item 11): every case is one
UserError naming the file, in bounded time and memory, and ``doctor`` agrees."""
from __future__ import annotations

import os
import pickle
import signal
import time
import tracemalloc
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from benchmark_fixtures import make_boreas, make_oxford
from distilvpr_core.app.cli import main
from distilvpr_core.data.benchmark_pickles import read_lidar2image
from distilvpr_core.data.boreas import read_cloud
from distilvpr_core.data.datasets import DataConfig
from distilvpr_core.data.images import read_rgb_file
from distilvpr_core.data.oxford_format import read_submap
from distilvpr_core.data.traversals import open_traversals
from distilvpr_core.foundation.errors import UserError


@pytest.fixture(scope="module")
def boreas(tmp_path_factory):
    return make_boreas(tmp_path_factory.mktemp("hard") / "bo")


@contextmanager
def within(seconds: int):
    """Fail instead of hanging: SIGALRM after ``seconds``."""
    def fire(*_):
        raise AssertionError(f"still running after {seconds} s (hung on a special file?)")
    old = signal.signal(signal.SIGALRM, fire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def _rewrite_tuples(path: Path, edit) -> None:
    """Change the scan path of the first tuple of a training pickle (keeps its class)."""
    from distilvpr_core.data.benchmark_pickles import load_pickle
    from benchmark_fixtures import _dump_with_upstream_class, _tuples
    data = load_pickle(path)
    frames = [(t.rel_scan_filepath, t.timestamp, np.asarray(t.position)) for _, t in sorted(data.items())]
    frames[0] = (edit(frames[0][0]),) + frames[0][1:]
    _dump_with_upstream_class(path, _tuples(frames))


@pytest.mark.parametrize("edit", [lambda r: "../" * 6 + "etc/" + Path(r).name,
                                  lambda r: "/etc/" + r,
                                  lambda r: r.replace("lidar_1_4096_interval10", "../../x/y")])
def test_scan_paths_outside_data_root_are_refused_and_doctor_is_not_ready(tmp_path, edit, capsys):
    root, images = make_boreas(tmp_path / "bo")
    pkl = root / "boreas_training_queries_baseline.pickle"
    _rewrite_tuples(pkl, edit)
    cfg = DataConfig(format="boreas", root=str(root), image_root=str(images))
    with pytest.raises(UserError, match=rf"{pkl}: scan path .* is not a relative path inside data.root"):
        open_traversals(cfg)
    assert main(["doctor", "--data", str(root), "--format", "boreas"]) >= 1
    out = capsys.readouterr().out
    assert "not a relative path inside data.root" in out and not out.rstrip().endswith("ready")


def _cloud_path(boreas, tmp_path) -> Path:
    p = tmp_path / "1400000000000000.npy"
    p.write_bytes((next((boreas[0] / "boreas").rglob("*.npy"))).read_bytes())
    return p


@pytest.mark.parametrize("case,match", [
    ("empty", r"cannot be read as .npy"),
    ("header_only", r"header claims \[4096, 3\] float32 .* but the file holds 0"),
    ("huge_rows", r"header claims \[300000000000, 3\]"),
    ("nan", r"point 7 is .*nan.*NaN, inf or beyond"),
    ("huge_value", r"point 7 is .*1e\+308"),
    ("object", r"refused \(it holds pickled Python objects\)"),
    ("one_d", r"expected a numeric array \[P, 3\|4\]"),
    ("fifo", r"is not a regular file"),
])
def test_bad_boreas_clouds_are_one_error_naming_the_file(boreas, tmp_path, case, match):
    p = _cloud_path(boreas, tmp_path)
    raw = p.read_bytes()
    header = raw.index(b"\n") + 1
    if case == "empty":
        p.write_bytes(b"")
    elif case == "header_only":
        p.write_bytes(raw[:header])
    elif case == "huge_rows":
        p.write_bytes(raw.replace(b"(4096, 3), }" + b" " * 8, b"(300000000000, 3), }"))
        assert len(p.read_bytes()) == len(raw)
    elif case in ("nan", "huge_value"):
        pts = np.load(p).astype(np.float64)
        pts[7, 1] = np.nan if case == "nan" else 1e308
        np.save(p, pts)
    elif case == "object":
        np.save(p, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    elif case == "one_d":
        np.save(p, np.zeros(12, np.float32))
    else:
        p.unlink()
        os.mkfifo(tmp_path / "fifo")
        p.symlink_to(tmp_path / "fifo")  # a FIFO behind a symlink
    tracemalloc.start()
    try:
        with within(5), pytest.raises(UserError, match=match) as info:
            read_cloud(p)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert str(p) in str(info.value) and peak < 100 << 20


def test_oxford_submaps_refuse_fifos_and_non_finite_points(tmp_path):
    p = tmp_path / "s.bin"
    pts = np.zeros((4096, 3))
    pts[5, 2] = np.inf
    p.write_bytes(pts.astype("<f8").tobytes())
    with pytest.raises(UserError, match=r"s.bin: point 5 is"):
        read_submap(p)
    p.unlink()
    os.mkfifo(tmp_path / "fifo")
    p.symlink_to(tmp_path / "fifo")
    with within(5), pytest.raises(UserError, match="is not a regular file"):
        read_submap(p)


def test_a_fifo_behind_a_symlinked_image_does_not_hang_the_loader(boreas, tmp_path):
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "img.png").symlink_to(tmp_path / "fifo")
    with within(5), pytest.raises(UserError, match=r"img.png: cannot read image of frame 3: is not a regular file"):
        read_rgb_file(tmp_path / "img.png", "of frame 3")


def test_a_lidar2image_pickle_whose_keys_share_one_list_is_not_copied_per_key(tmp_path):
    shared = list(range(1_400_000_000_000_000, 1_400_000_000_000_000 + 200_000))
    index = {1_500_000_000_000_000 + k: shared for k in range(200_000)}
    path = tmp_path / "boreas_lidar2image_ndx.pickle"
    path.write_bytes(pickle.dumps(index, protocol=pickle.HIGHEST_PROTOCOL))
    assert path.stat().st_size < 10 << 20  # 200,000 keys x 200,000 images in a few MB
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        with within(30):
            out = read_lidar2image(path)
        elapsed, peak = time.perf_counter() - t0, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(out) == 200_000 and out[1_500_000_000_000_000][0] == shared[0]
    assert elapsed < 5 and peak < 100 << 20, (elapsed, peak / 2**20)


def test_doctor_refuses_what_the_loader_refuses_even_if_the_opcode_listing_is_fooled(tmp_path, capsys):
    """Protocol-2 byte strings (SHORT_BINSTRING) name os.system to STACK_GLOBAL; the opcode
    listing does not follow them, the restricted unpickler refuses the file: doctor says so."""
    root, images = make_oxford(tmp_path / "ox")
    marker = tmp_path / "PWNED"
    payload = (b"\x80\x04" + b"U\x02os" + b"U\x06system" + b"\x93"
               + b"X" + len(f"touch {marker}").to_bytes(4, "little") + f"touch {marker}".encode()
               + b"\x85R.")
    with pytest.raises(pickle.UnpicklingError):  # the restricted loader refuses it ...
        from distilvpr_core.data.benchmark_pickles import _RestrictedUnpickler
        import io
        _RestrictedUnpickler(io.BytesIO(payload)).load()
    (root / "oxford_evaluation_query.pickle").write_bytes(payload)
    assert main(["doctor", "--data", str(root), "--image-root", str(images)]) >= 1
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if "oxford_evaluation_query.pickle" in x)
    assert line.lstrip().startswith("!!") and "REFUSED" in line and "os.system" in line, line
    assert not marker.exists()


def _native(tmp_path: Path):
    """A two-frame native dataset written with the dataset writer."""
    import io
    from PIL import Image
    from distilvpr_core.data import native
    root = tmp_path / "ds"
    trav = root / "traversals" / "t0"
    buf = io.BytesIO()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(buf, format="PNG")
    for i in range(2):
        native.write_frame(trav, i, buf.getvalue(), np.ones((5, 4), np.float32))
    poses = np.tile([0, 0, 0, 0, 0, 0, 1.0], (2, 1))
    native.write_traversal(trav, "t0", "test", {}, poses, np.arange(2) * 10**9, poses)
    native.write_dataset_json(root, {"camera": {}, "lidar": {}, "traversals": [
        {"name": "t0", "role": "test", "num_frames": 2, "conditions": {}}]})
    return native.open_dataset(root).traversal("t0"), trav


@pytest.mark.parametrize("case", ["empty", "truncated", "fifo"])
def test_native_dataset_arrays_and_scans_are_read_bounded(tmp_path, case):
    t, trav = _native(tmp_path)
    poses, scan = trav / "poses.npy", trav / "lidar" / "000001.bin"
    if case == "empty":
        poses.write_bytes(b"")
        fn, match = (lambda: t.poses), r"poses.npy: cannot be read as .npy"
    elif case == "truncated":
        poses.write_bytes(poses.read_bytes()[:-3])
        fn, match = (lambda: t.poses), r"poses.npy: header claims \[2, 7\]"
    else:
        scan.unlink()
        os.mkfifo(tmp_path / "fifo")
        scan.symlink_to(tmp_path / "fifo")
        fn, match = (lambda: t.load_lidar(1)), r"000001.bin: LiDAR scan: is not a regular file"
    with within(5), pytest.raises(UserError, match=match):
        fn()


def test_native_scans_with_nan_points_are_refused(tmp_path):
    t, trav = _native(tmp_path)
    pts = np.ones((5, 4), np.float32)
    pts[2, 0] = np.nan
    (trav / "lidar" / "000000.bin").write_bytes(pts.astype("<f4").tobytes())
    with pytest.raises(UserError, match=r"000000.bin: point 2 holds NaN or inf"):
        t.load_lidar(0)
    assert t.load_lidar(1).shape == (5, 4)


@pytest.mark.parametrize("raw", [b"", b"\x93NUMPY garbage"])
def test_map_query_descriptors_that_are_not_npy_are_one_line(tmp_path, capsys, raw):
    from map_tamper import build
    path = build(tmp_path / "m")
    q = tmp_path / "q.npy"
    q.write_bytes(raw)
    assert main(["map", "query", str(path), "--descriptors", str(q)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"--descriptors {q}" in err and "Traceback" not in err
