"""Prior map on disk: round trip, verification, crash safety, merge."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from distilvpr_core.foundation.errors import UserError
from distilvpr_core.mapdb import FORMAT_VERSION, PriorMap, merge_maps
from distilvpr_core.mapdb.schema import seal
from paused_writer import kill, writer_paused_mid_save

D = 16
FP = "a" * 64
CONTRACT = {"input_size": [64, 48], "resize": "stretch"}


def keyframes(n: int, seed: int = 0, t0: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, D)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    poses = np.column_stack([rng.uniform(-50, 50, (n, 3)), np.zeros((n, 3)), np.ones(n)])
    stamps = t0 + np.arange(n, dtype=np.int64) * 500_000_000
    return x, stamps, poses, np.arange(n, dtype=np.int64)


def built(tmp_path: Path, n: int = 50, index: str = "flat", params=None) -> tuple[Path, PriorMap]:
    m = PriorMap.create(D, FP, CONTRACT, index=index, index_params=params)
    m.add(*keyframes(n)[:3], "bag_a.mcap", keyframes(n)[3])
    return m.save(tmp_path / "map"), m


@pytest.mark.parametrize("index,params", [("flat", None), ("hnsw", {"M": 8}),
                                          ("ivfpq", {"nlist": 4, "m": 4, "nbits": 4})])
def test_online_add_save_reload_round_trip(tmp_path, index, params):
    path, m = built(tmp_path, 60, index, params)
    loaded = PriorMap.load(path, expect_fingerprint=FP, expect_dim=D)
    x, stamps, poses, frames = keyframes(3, seed=5, t0=10**12)
    ids = loaded.add(x, stamps, poses, "live", frames)  # the node grows the map online
    assert ids.tolist() == [60, 61, 62]
    loaded.save(path)
    again = PriorMap.load(path, expect_fingerprint=FP, expect_dim=D)
    assert len(again) == 63 and again.index_type == index
    np.testing.assert_array_equal(again.ids, np.arange(63))
    np.testing.assert_array_equal(again.poses[:60], m.poses)
    np.testing.assert_array_equal(again.stamps_ns[60:], stamps)
    np.testing.assert_array_equal(again.frame_index[60:], frames)
    assert again.sources[0] == "bag_a.mcap" and again.sources[-1] == "live"
    assert again.source_names == ["bag_a.mcap", "live"]
    np.testing.assert_allclose(again.descriptors, np.concatenate([m.descriptors, x]), atol=1e-6)
    assert again.search(x[1], 1).ids[0, 0] == 61
    assert again.contract == CONTRACT and again.fingerprint == FP
    schema = json.loads((path / "schema.json").read_text())
    assert schema["format_version"] == FORMAT_VERSION and schema["counts"]["keyframes"] == 63
    assert schema["index"]["type"] == index and schema["dim"] == D
    listed = set(schema["files"]) | {"schema.json"}
    assert listed == {p.name for p in path.iterdir()}
    assert [p.name for p in tmp_path.glob(".map.*")] == [".map.lock"]  # no temp dirs left behind


def test_fingerprint_and_dim_mismatch_name_both_values(tmp_path):
    path, _ = built(tmp_path)
    with pytest.raises(UserError) as err:
        PriorMap.load(path, expect_fingerprint="b" * 64)
    assert FP in str(err.value) and "b" * 64 in str(err.value)
    with pytest.raises(UserError, match=r"dim 16 but the model produces dim 384"):
        PriorMap.load(path, expect_dim=384)


def test_newer_format_version_is_refused(tmp_path):
    path, _ = built(tmp_path)
    schema = json.loads((path / "schema.json").read_text())
    schema["format_version"] = FORMAT_VERSION + 1
    (path / "schema.json").write_text(json.dumps(schema))
    with pytest.raises(UserError, match=f"version {FORMAT_VERSION + 1} is newer"):
        PriorMap.load(path)


@pytest.mark.parametrize("index,name", [("flat", "vectors.npy"), ("flat", "poses.npy"),
                                        ("flat", "stamps_ns.npy"), ("hnsw", "index.faiss")])
def test_flipped_byte_is_a_checksum_error(tmp_path, index, name):
    path, _ = built(tmp_path, index=index)
    data = bytearray((path / name).read_bytes())
    data[len(data) - 3] ^= 0x40
    (path / name).write_bytes(bytes(data))
    with pytest.raises(UserError, match=f"{name}: checksum mismatch"):
        PriorMap.load(path)


def test_an_index_of_the_wrong_kind_is_refused(tmp_path):
    import faiss

    from distilvpr_core.mapdb.index import INDEX_FILE, HNSWIndex, IVFPQIndex
    faiss.write_index(faiss.IndexHNSWFlat(D, 8), str(tmp_path / INDEX_FILE))
    with pytest.raises(UserError, match=r"index.faiss: expected an IVF-PQ index, found IndexHNSWFlat"):
        IVFPQIndex.read(tmp_path, D, {}, 0)
    faiss.write_index(faiss.IndexFlatL2(D), str(tmp_path / INDEX_FILE))
    with pytest.raises(UserError, match=r"expected an HNSW index, found IndexFlatL2; the map is damaged"):
        HNSWIndex.read(tmp_path, D, {}, 0)


def test_truncated_or_missing_files_are_named(tmp_path):
    path, _ = built(tmp_path, index="hnsw")
    idx = path / "index.faiss"
    idx.write_bytes(idx.read_bytes()[:100])
    with pytest.raises(UserError, match=r"index.faiss: size 100 bytes.*truncated"):
        PriorMap.load(path, verify_checksums=False)
    # even with a doctored schema, FAISS's own error becomes a UserError naming the file
    schema = json.loads((path / "schema.json").read_text())
    schema["files"]["index.faiss"]["bytes"] = 100
    (path / "schema.json").write_text(json.dumps(seal(schema)))  # consistent but wrong
    with pytest.raises(UserError, match=r"index.faiss: FAISS cannot read this index"):
        PriorMap.load(path, verify_checksums=False)
    second, _ = built(tmp_path / "second")
    (second / "poses.npy").unlink()
    with pytest.raises(UserError, match="poses.npy: listed in schema.json but missing"):
        PriorMap.load(second, verify_checksums=False)
    with pytest.raises(UserError, match="not a distilvpr map directory"):
        PriorMap.load(tmp_path)
    with pytest.raises(UserError, match="not found"):
        PriorMap.load(tmp_path / "nope")


def test_save_refuses_to_replace_a_directory_that_is_not_a_map(tmp_path):
    other = tmp_path / "notes"
    other.mkdir()
    (other / "todo.txt").write_text("keep me")
    m = PriorMap.create(D, FP, CONTRACT)
    with pytest.raises(UserError, match="not a distilvpr map"):
        m.save(other)
    assert (other / "todo.txt").read_text() == "keep me"
    path, _ = built(tmp_path)
    with pytest.raises(UserError, match="--overwrite"):
        m.save(path, overwrite=False)


def test_kill_during_save_leaves_the_old_map_loadable(tmp_path):
    path, old = built(tmp_path, 40)
    # The child grows the map and saves over it, pausing mid-write (after the
    # index and some columns are in the temp dir) so the kill lands inside the save.
    proc = writer_paused_mid_save(path, grow_by=5, dim=D)
    try:
        partial = list(tmp_path.glob(".map.*.partial"))
        assert len(partial) == 1 and (partial[0] / "vectors.npy").is_file()  # new version half written
    finally:
        kill(proc)
    loaded = PriorMap.load(path, expect_fingerprint=FP, expect_dim=D)
    assert len(loaded) == 40
    np.testing.assert_array_equal(loaded.poses, old.poses)
    loaded.save(path)  # a leftover partial directory does not block the next save
    assert len(PriorMap.load(path)) == 40


def test_merge_keeps_both_maps_and_renumbers_the_second(tmp_path):
    a = PriorMap.create(D, FP, CONTRACT)
    xa, sa, pa, fa = keyframes(30, seed=1)
    a.add(xa, sa, pa, "trav_1", fa)
    b = PriorMap.create(D, FP, CONTRACT, index="hnsw")
    xb, sb, pb, fb = keyframes(20, seed=2, t0=10**12)
    b.add(xb[:10], sb[:10], pb[:10], "trav_2", fb[:10])
    b.add(xb[10:], sb[10:], pb[10:], "trav_1", fb[10:])
    m = merge_maps(a, b)
    assert len(m) == 50 and m.index_type == "flat"
    np.testing.assert_array_equal(m.ids, np.arange(50))
    assert m.source_names == ["trav_1", "trav_2"]
    assert m.sources[30] == "trav_2" and m.sources[45] == "trav_1"
    np.testing.assert_array_equal(m.frame_index[30:], fb)
    np.testing.assert_array_equal(m.stamps_ns[30:], sb)
    assert m.search(xb[4], 1).ids[0, 0] == 34
    m.save(tmp_path / "merged")
    assert len(PriorMap.load(tmp_path / "merged")) == 50
    other = PriorMap.create(D, "c" * 64, CONTRACT)
    with pytest.raises(UserError) as err:
        merge_maps(a, other)
    assert FP in str(err.value) and "c" * 64 in str(err.value)
    with pytest.raises(UserError, match="dim 16 .* != 8"):
        merge_maps(a, PriorMap.create(8, FP, CONTRACT))


def test_empty_map_round_trip_then_grows(tmp_path):
    """The node may save before it has mapped anything."""
    PriorMap.create(D, FP, CONTRACT).save(tmp_path / "empty")
    m = PriorMap.load(tmp_path / "empty", expect_fingerprint=FP, expect_dim=D)
    assert len(m) == 0 and m.search(np.ones(D), 2).ids.tolist() == [[-1, -1]]
    x, stamps, poses, frames = keyframes(3)
    m.add(x, stamps, poses, "live", frames)
    assert m.search(x[2], 1).ids[0, 0] == 2
