"""A map edited with its checksums and digest recomputed is still refused at load.

Each test edits a saved map the way the attack campaign of issue 31 did
(map_tamper.py reseals every checksum), so only the semantic checks, the
.npy reader and the file-type checks can catch it.  Every refusal is one
UserError naming the file; ``map verify`` exits 2 without a traceback.
"""
from __future__ import annotations

import os
from pathlib import Path

import faiss
import numpy as np
import pytest

from distilvpr_core.app.cli import main
from distilvpr_core.foundation.errors import UserError
from distilvpr_core.mapdb import PriorMap
from map_tamper import D, build, reseal_schema, rewrite, write_raw


def _refused(path: Path, match: str, capsys) -> None:
    with pytest.raises(UserError, match=match):
        PriorMap.load(path)
    assert main(["map", "verify", str(path)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err


def _edit(path: Path, name: str, row: int, col: int | slice, value) -> None:
    arr = np.load(path / name).copy()
    arr[row, col] = value
    rewrite(path, name, arr)


@pytest.mark.parametrize("edit,match", [
    (lambda a: a.__setitem__(2, a[2] * np.float32(1e30)), r"vectors.npy: row 2 has norm 1e\+30"),
    (lambda a: a.__setitem__(1, 0.0), r"vectors.npy: row 1 has zero \(or denormal\) norm"),
    (lambda a: a.__setitem__(4, np.float32(1e-40)), r"vectors.npy: row 4 has zero \(or denormal\) norm"),
    (lambda a: a.__setitem__(3, a[3] * np.float32(0.5)), r"vectors.npy: row 3 has norm 0.5"),
])
def test_descriptor_rows_add_would_refuse_are_refused_at_load(tmp_path, capsys, edit, match):
    path = build(tmp_path / "m")
    arr = np.load(path / "vectors.npy").copy()
    edit(arr)
    rewrite(path, "vectors.npy", arr)
    _refused(path, match, capsys)


@pytest.mark.parametrize("name,row,col,value,match", [
    ("poses.npy", 1, 0, 1e300, r"poses.npy: row 1 has position .* beyond"),
    ("poses.npy", 2, slice(3, 7), 0.0, r"poses.npy: row 2 has a quaternion of norm 0"),
    ("poses.npy", 2, 6, 2.0, r"poses.npy: row 2 has a quaternion of norm 2"),
    ("stamps_ns.npy", 3, None, np.iinfo(np.int64).max, r"stamps_ns.npy: row 3 has stamp"),
    ("stamps_ns.npy", 0, None, -5, r"stamps_ns.npy: row 0 has stamp -5"),
    ("frame_index.npy", 5, None, -1, r"frame_index.npy: row 5 has frame index -1"),
    ("source_index.npy", 4, None, 1, r"source_index.npy: values outside 0..0"),
])
def test_poses_stamps_and_indices_out_of_range_are_refused(tmp_path, capsys, name, row, col, value, match):
    path = build(tmp_path / "m")
    arr = np.load(path / name).copy()
    if col is None:
        arr[row] = value
    else:
        arr[row, col] = value
    rewrite(path, name, arr)
    _refused(path, match, capsys)


def test_add_refuses_what_load_refuses():
    m = PriorMap.create(D, "a" * 64, {})
    x = np.eye(D, dtype=np.float32)[:1]
    good = [0, 0, 0, 0, 0, 0, 1.0]
    for desc, stamp, pose, match in [
        (x * 0, 0, good, "zero"), (np.full((1, D), 1e-40, np.float32), 0, good, "zero"),
        (x, 0, [1e300, 0, 0, 0, 0, 0, 1], "beyond"), (x, 0, [0] * 7, "quaternion of norm 0"),
        (x, np.iinfo(np.int64).max, good, "has stamp")]:
        with pytest.raises(UserError, match=match):
            m.add(desc, [stamp], [pose], "s", [0])
    # A float32 row of 1e30 is a direction; its float64 norm is 1e30, not inf.
    ids = m.add(x * np.float32(1e30), [0], [[0, 0, 0, 0, 0, 0, 1.001]], "s", [0])
    assert np.allclose(m.descriptors[ids[0]], x[0]) and np.isclose(np.linalg.norm(m.poses[0, 3:]), 1)


@pytest.mark.parametrize("key,value,match", [
    ("fx", 1e300, "not a valid pinhole camera"), ("fx", "80", r"camera.fx must be a number"),
    ("fy", -80.0, r"camera.fy must be a number"), ("cx", 1e6, "not a valid pinhole camera"),
    ("width", 160.5, r"camera.width must be an integer"), ("height", True, "camera.height must be"),
    ("max_per_keyframe", 10**9, "max_per_keyframe must be an integer"),
])
def test_feature_cameras_that_are_not_cameras_are_refused(tmp_path, capsys, key, value, match):
    path = build(tmp_path / "m", features=True)

    def edit(d):
        target = d["features"] if key == "max_per_keyframe" else d["features"]["camera"]
        target[key] = value
    reseal_schema(path, edit)
    _refused(path, match, capsys)


def test_keypoints_outside_the_image_are_refused(tmp_path, capsys):
    path = build(tmp_path / "m", features=True)
    _edit(path, "features_keypoints.npy", 2, slice(None), 1e9)
    _refused(path, r"features_keypoints.npy: keyframe 2 has keypoints", capsys)


@pytest.mark.parametrize("cut", ["empty", "magic", "header", "half", "one_short", "padded", "garbage"])
@pytest.mark.parametrize("name", ["vectors.npy", "poses.npy", "source_names.npy", "features_counts.npy"])
def test_truncated_or_garbage_npy_is_one_error_naming_the_file(tmp_path, capsys, name, cut):
    path = build(tmp_path / "m", features=True)
    raw = (path / name).read_bytes()
    header = raw.index(b"\n") + 1
    new = {"empty": b"", "magic": raw[:6], "header": raw[:header], "half": raw[:len(raw) // 2],
           "one_short": raw[:-1], "padded": raw + b"\0" * 8,
           "garbage": raw[:10] + b"{'descr': object" + raw[26:]}[cut]
    write_raw(path, name, new)
    _refused(path, rf"{name}: ", capsys)


def test_a_header_claiming_a_huge_array_is_refused_before_allocating(tmp_path, capsys):
    path = build(tmp_path / "m")
    raw = (path / "poses.npy").read_bytes()
    huge = raw.replace(b"(6, 7), }" + b" " * 11, b"(300000000000, 7), }")  # same header length
    assert huge != raw and len(huge) == len(raw)
    write_raw(path, "poses.npy", huge)
    _refused(path, r"poses.npy: expected float64 \[6, 7\], got float64 \[300000000000, 7\]", capsys)


def _ivfpq(tmp_path: Path) -> Path:
    return build(tmp_path / "m", n=64, index="ivfpq", index_params={"nlist": 4, "m": 2, "nbits": 4})


@pytest.mark.parametrize("new_id", [64, 10**6, -3, 5])
def test_tampered_ivfpq_ids_are_refused_at_load(tmp_path, capsys, new_id):
    path = _ivfpq(tmp_path)
    index = faiss.read_index(str(path / "index.faiss"))
    invlists = faiss.extract_index_ivf(index).invlists
    lst = next(i for i in range(invlists.nlist) if invlists.list_size(i) and
               faiss.rev_swig_ptr(invlists.get_ids(i), 1)[0] != new_id)
    faiss.rev_swig_ptr(invlists.get_ids(lst), invlists.list_size(lst))[0] = new_id
    faiss.write_index(index, str(path / "index.faiss"))
    reseal_schema(path)
    # 5 is in range but then appears twice and another row not at all.
    _refused(path, r"index.faiss: (inverted list \d+ holds row id|row \d+ appears)", capsys)


def test_intact_ivfpq_and_hnsw_maps_still_load_and_search(tmp_path):
    for kind, params in (("ivfpq", {"nlist": 4, "m": 2, "nbits": 4}), ("hnsw", {})):
        path = build(tmp_path / kind, n=64, index=kind, index_params=params)
        m = PriorMap.load(path)
        assert m.search(m.descriptors[7], 1).ids[0, 0] == 7


def test_a_tampered_hnsw_graph_is_refused(tmp_path, capsys):
    # FAISS (>= 1.9) validates the graph as it reads it; this keeps it that way.
    path = build(tmp_path / "m", n=64, index="hnsw")
    index = faiss.read_index(str(path / "index.faiss"))
    nb = faiss.vector_to_array(index.hnsw.neighbors)
    nb[nb.argmax()] = 10**6
    faiss.copy_array_to_vector(nb, index.hnsw.neighbors)
    faiss.write_index(index, str(path / "index.faiss"))
    reseal_schema(path)
    _refused(path, r"index.faiss: FAISS cannot read this index .*1000000 out of range", capsys)


@pytest.mark.parametrize("target", ["outside_copy", "dev_zero", "fifo"])
def test_symlinks_and_special_files_inside_a_map_are_refused(tmp_path, capsys, target):
    path = build(tmp_path / "m")
    victim = path / "poses.npy"
    if target == "outside_copy":  # identical bytes: the checksum matches, the link does not
        outside = tmp_path / "outside.npy"
        outside.write_bytes(victim.read_bytes())
        victim.unlink()
        victim.symlink_to(outside)
        _refused(path, r"poses.npy: is a symbolic link", capsys)
    elif target == "dev_zero":
        victim.unlink()
        victim.symlink_to("/dev/zero")
        _refused(path, r"poses.npy: is a symbolic link", capsys)
    else:
        victim.unlink()
        os.mkfifo(victim)
        _refused(path, r"poses.npy: listed in schema.json but missing", capsys)


def test_a_symlinked_schema_json_is_refused(tmp_path, capsys):
    path = build(tmp_path / "m")
    outside = tmp_path / "schema_copy.json"
    outside.write_bytes((path / "schema.json").read_bytes())
    (path / "schema.json").unlink()
    (path / "schema.json").symlink_to(outside)
    _refused(path, r"schema.json: is a symbolic link", capsys)


def test_a_lock_symlink_does_not_overwrite_its_target(tmp_path, capsys):
    path = build(tmp_path / "A")
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    lock = tmp_path / ".A.lock"
    lock.unlink()
    lock.symlink_to(victim)
    assert main(["map", "verify", str(path)]) == 0  # verify needs no lock: it says so and verifies
    out = capsys.readouterr().out
    assert "cannot open the writer lock" in out and out.strip().endswith("files verified")
    with pytest.raises(UserError, match=r"\.A\.lock: cannot open the writer lock"):
        PriorMap.load(path).save(path)
    assert victim.read_text() == "precious\n"
    lock.unlink()
    os.link(victim, lock)  # a hard link: writing the pid would change the victim
    with pytest.raises(UserError, match=r"\.A\.lock: is not a plain lock file"):
        PriorMap.load(path).save(path)
    assert victim.read_text() == "precious\n"


def test_a_lock_path_that_is_a_directory_is_one_line(tmp_path, capsys):
    path = build(tmp_path / "A")
    (tmp_path / ".A.lock").unlink()
    (tmp_path / ".A.lock").mkdir()
    assert main(["map", "verify", str(path)]) == 0
    assert "cannot open the writer lock" in capsys.readouterr().out
    m = PriorMap.load(path)
    assert main(["map", "merge", str(path), str(path), "--out", str(path), "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert "cannot open the writer lock" in err and "Traceback" not in err
    with pytest.raises(UserError, match="cannot open the writer lock"):
        m.save(path)


def test_verify_of_a_missing_path_creates_nothing(tmp_path, capsys):
    target = tmp_path / "no" / "such" / "map"
    assert main(["map", "verify", str(target)]) == 2
    assert "map directory not found" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def _as_unprivileged(argv: list[str]) -> tuple[int, str]:
    """``main(argv)`` in a forked child without write permission through directory modes
    (root bypasses them, so as root the child drops to uid/gid 65534 first); returns
    its exit status and what it printed."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child never returns into pytest
        code = 99
        try:
            os.close(r)
            os.dup2(w, 1)
            os.dup2(w, 2)
            if os.geteuid() == 0:
                os.setgid(65534)
                os.setuid(65534)
            import sys
            sys.stdout = os.fdopen(1, "w", closefd=False)
            sys.stderr = os.fdopen(2, "w", closefd=False)
            code = main(argv)
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)
    os.close(w)
    with os.fdopen(r) as fh:
        text = fh.read()
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), text


def test_verify_on_read_only_storage_verifies_without_locking():
    import shutil
    import tempfile
    base = Path(tempfile.mkdtemp(prefix="distilvpr-ro-"))  # pytest's tmp is private to root
    try:
        os.chmod(base, 0o755)
        path = build(base / "ro" / "A")
        (base / "ro" / ".A.lock").unlink()
        os.chmod(base / "ro", 0o555)  # the map's folder cannot get a lock file
        rc, text = _as_unprivileged(["map", "verify", str(path)])
        assert rc == 0, text
        assert "cannot open the writer lock (Permission denied)" in text and "files verified" in text
        assert "Traceback" not in text and not (base / "ro" / ".A.lock").exists()
    finally:
        os.chmod(base / "ro", 0o755)
        shutil.rmtree(base)


def test_a_map_overwritten_under_a_loaded_one_changes_nothing(tmp_path):
    """The rows are read into memory: truncating or rewriting vectors.npy after load
    (a plain ``cp`` over the map) neither kills the reader (SIGBUS) nor changes results."""
    path = build(tmp_path / "m", n=50)
    m = PriorMap.load(path)
    q = m.descriptors[17].copy()
    before = m.search(q, 5)
    vec = path / "vectors.npy"
    with open(vec, "r+b") as fh:  # in place, same inode: what a mapping would see
        fh.seek(200)
        fh.write(b"\x7f" * 1000)
    after_edit = m.search(q, 5)
    with open(vec, "r+b") as fh:
        fh.truncate(0)
    after_truncate = m.search(q, 5)
    for res in (after_edit, after_truncate):
        assert np.array_equal(res.ids, before.ids) and np.array_equal(res.scores, before.scores)


def test_two_writers_to_one_new_path_never_lose_a_map(tmp_path):
    """Writer B is paused just before it takes the lock; writer A (this process) saves
    a map to the same new path meanwhile.  B, without --overwrite, must then refuse:
    its existence check runs under the lock, not before it."""
    import subprocess
    import sys
    import textwrap
    target = tmp_path / "new"
    script = textwrap.dedent(f"""
        import fcntl, sys
        import numpy as np
        from distilvpr_core.foundation.errors import UserError
        from distilvpr_core.mapdb import PriorMap
        from map_tamper import CONTRACT, D, FP
        real = fcntl.flock
        def paused(fd, op):  # stop just before taking the writer lock
            print("LOCKING", flush=True)
            sys.stdin.readline()
            return real(fd, op)
        fcntl.flock = paused
        m = PriorMap.create(D, FP, CONTRACT)
        m.add(np.eye(D, dtype=np.float32)[:2], [0, 1], [[0, 0, 0, 0, 0, 0, 1.0]] * 2, "b", [0, 1])
        try:
            m.save({str(target)!r}, overwrite=False)
        except UserError as exc:
            print("refused:", exc, flush=True)
        else:
            print("wrote", flush=True)
    """)
    here = Path(__file__).parent
    b = subprocess.Popen([sys.executable, "-c", script], cwd=here, stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True,
                         env={**os.environ, "PYTHONPATH": os.pathsep.join([str(here.parent), str(here)])})
    try:
        assert b.stdout.readline().strip() == "LOCKING"
        build(target, seed=1)  # writer A finishes first
        a_rows = PriorMap.load(target).descriptors.copy()
        b.stdin.write("go\n")
        b.stdin.flush()
        out = b.stdout.read()
    finally:
        b.kill()
        b.wait(timeout=30)
    assert out.startswith("refused:") and "a map exists already" in out, out
    assert np.array_equal(PriorMap.load(target).descriptors, a_rows)  # A's map survived


@pytest.mark.parametrize("cut", [0, 7, 100, -1])
@pytest.mark.parametrize("kind", ["hnsw", "ivfpq"])
def test_a_truncated_faiss_index_is_one_error_naming_it(tmp_path, capsys, kind, cut):
    params = {"nlist": 4, "m": 2, "nbits": 4} if kind == "ivfpq" else {}
    path = build(tmp_path / "m", n=64, index=kind, index_params=params)
    raw = (path / "index.faiss").read_bytes()
    write_raw(path, "index.faiss", raw[:cut] if cut >= 0 else raw[:len(raw) // 2])
    _refused(path, r"index.faiss: ", capsys)
