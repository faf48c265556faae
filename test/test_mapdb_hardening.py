"""Map files under attack: schema bit flips, strict keys, non-finite data, preprocessing.

Each test here reproduces a finding of the adversarial campaign of issue 18
(every one of them passed on the main branch of that day).
"""
from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest

from distilvpr_core.foundation.errors import UserError
from distilvpr_core.infer import PreprocessContract
from distilvpr_core.foundation.contract import check_contract
from distilvpr_core.mapdb import PriorMap
from distilvpr_core.mapdb.schema import DIGEST_KEY, file_entry, parse_schema, read_schema, seal
from distilvpr_core.mapdb.storage import save_npy
from paused_writer import kill, writer_paused_mid_save

D = 8
FP = "a" * 64
CONTRACT = PreprocessContract(input_size=(64, 48), descriptor_dim=D).to_dict()


def small_map(tmp_path: Path, n: int = 6, index: str = "flat") -> Path:
    m = PriorMap.create(D, FP, CONTRACT, index=index)
    x = np.random.default_rng(0).standard_normal((n, D)).astype(np.float32)
    poses = np.column_stack([np.arange(n * 3).reshape(n, 3), np.zeros((n, 3)), np.ones(n)])
    m.add(x, np.arange(n) * 10**9, poses, "trav", np.arange(n))
    return m.save(tmp_path / "map")


def schema_of(path: Path) -> dict:
    return json.loads((path / "schema.json").read_text())


def write_schema(path: Path, data: dict) -> None:
    (path / "schema.json").write_text(json.dumps(data, indent=2))


def test_every_bit_flip_in_schema_json_is_blamed_on_schema_json(tmp_path):
    path = small_map(tmp_path)
    raw = (path / "schema.json").read_bytes()
    where = str(path / "schema.json")
    accepted, misblamed = [], []
    for i in range(len(raw)):
        for bit in range(8):
            flipped = bytearray(raw)
            flipped[i] ^= 1 << bit
            try:
                parse_schema(bytes(flipped), where)
                accepted.append((i, bit))
            except UserError as exc:
                if not str(exc).startswith(where + ":"):
                    misblamed.append(str(exc)[:160])
    assert not accepted and not misblamed, (accepted[:5], misblamed[:5])
    # The same through the node's loader (a sample: every file write here is slow).
    rng = random.Random(0)
    for _ in range(40):
        flipped = bytearray(raw)
        flipped[rng.randrange(len(raw))] ^= 1 << rng.randrange(8)
        (path / "schema.json").write_bytes(bytes(flipped))
        with pytest.raises(UserError) as err:
            PriorMap.load(path)
        assert str(err.value).startswith(where + ":"), str(err.value)


def test_a_flipped_recorded_checksum_blames_schema_json_not_the_data_file(tmp_path):
    path = small_map(tmp_path)
    text = (path / "schema.json").read_text()
    digest = schema_of(path)["files"]["ids.npy"]["sha256"]
    flipped = digest[:10] + ("0" if digest[10] != "0" else "1") + digest[11:]
    (path / "schema.json").write_text(text.replace(digest, flipped))
    with pytest.raises(UserError) as err:
        PriorMap.load(path)
    msg = str(err.value)
    assert msg.startswith(str(path / "schema.json") + ": schema.json is damaged"), msg
    assert "ids.npy" not in msg


@pytest.mark.parametrize("mutate,key", [
    (lambda d: d.update(qreprocessing=d.pop("preprocessing")), "preprocessing"),
    (lambda d: d.pop("preprocessing"), "preprocessing"),
    (lambda d: d["index"].update(tarams=d["index"].pop("params")), "index.params"),
    (lambda d: d["counts"].update(extra=1), "counts.extra"),
    (lambda d: d.update(surprise={}), "surprise"),
    (lambda d: d["files"]["ids.npy"].pop("bytes"), "files.ids.npy.bytes"),
])
@pytest.mark.parametrize("version", [1, 2])
def test_unknown_or_missing_keys_are_errors_naming_the_key(tmp_path, mutate, key, version):
    """Strict even when the digest is consistent (an edited schema, or a version-1 map)."""
    path = small_map(tmp_path)
    data = schema_of(path)
    if version == 1:
        data.pop(DIGEST_KEY)
        data["format_version"] = 1
    mutate(data)
    write_schema(path, seal(data) if version == 2 else data)
    with pytest.raises(UserError, match=rf"schema.json: (missing|unknown) key {key.replace('.', '[.]')}"):
        PriorMap.load(path)


@pytest.mark.parametrize("key", ["channel_order", "input_size"])
def test_a_renamed_preprocessing_key_is_refused_in_a_version_1_map(tmp_path, key):
    """'bhannel_order' / 'hnput_size' of the campaign: v1 has no digest, the contract's own check names it."""
    path = small_map(tmp_path)
    data = schema_of(path)
    data.pop(DIGEST_KEY)
    data["format_version"] = 1
    bad = chr(ord(key[0]) ^ 0x0A) + key[1:]
    data["preprocessing"][bad] = data["preprocessing"].pop(key)
    write_schema(path, data)
    with pytest.raises(UserError, match=rf"preprocessing.*unknown preprocessing contract key.*{bad}"):
        PriorMap.load(path)


def test_version_1_maps_still_load_and_verify_says_what_is_not_checked(tmp_path, capsys):
    from distilvpr_core.app.cli import main
    path = small_map(tmp_path)
    data = schema_of(path)
    data.pop(DIGEST_KEY)
    data["format_version"] = 1
    write_schema(path, data)
    assert len(PriorMap.load(path)) == 6
    assert main(["map", "verify", str(path)]) == 0
    out = capsys.readouterr().out
    assert "ok:" in out and "format version 1: schema.json has no checksum of its own" in out
    PriorMap.load(path).save(path)  # re-saving upgrades it
    assert schema_of(path)["format_version"] == 2 and DIGEST_KEY in schema_of(path)


def test_the_optional_features_section_is_the_only_extra_key(tmp_path):
    path = small_map(tmp_path)
    data = schema_of(path)
    data["features"] = {"kind": "orb", "file": "features.npz"}
    write_schema(path, seal(data))
    assert read_schema(path).features == {"kind": "orb", "file": "features.npz"}
    data["features"] = [1, 2]
    write_schema(path, seal(data))
    with pytest.raises(UserError, match="features must be a JSON object"):
        read_schema(path)


def _poison(path: Path, name: str, row: int, value: float) -> None:
    """Write a non-finite value into ``name`` and record its new checksum consistently."""
    arr = np.load(path / name).copy()
    arr[row, 1] = value
    entry = save_npy(path / name, arr)
    data = schema_of(path)
    data["files"][name] = {"sha256": entry.sha256, "bytes": entry.bytes}
    assert file_entry(path / name) == entry
    write_schema(path, seal(data))


@pytest.mark.parametrize("name,value", [("vectors.npy", np.nan), ("poses.npy", np.inf),
                                        ("poses.npy", np.nan)])
def test_non_finite_vectors_or_poses_are_refused_by_load_and_verify(tmp_path, capsys, name, value):
    from distilvpr_core.app.cli import main
    path = small_map(tmp_path)
    _poison(path, name, 3, value)
    with pytest.raises(UserError, match=rf"{name}: row 3 holds NaN or inf"):
        PriorMap.load(path)
    assert main(["map", "verify", str(path)]) == 2
    assert f"{name}: row 3 holds NaN or inf" in capsys.readouterr().err


def test_non_finite_rows_are_refused_at_build_and_save(tmp_path):
    m = PriorMap.create(D, FP, CONTRACT)
    x = np.eye(D, dtype=np.float32)[:2]
    with pytest.raises(UserError, match=r"add\(poses\): row 1 holds NaN or inf"):
        m.add(x, [0, 1], [[0, 0, 0, 0, 0, 0, 1], [np.nan, 0, 0, 0, 0, 0, 1]], "s", [0, 1])
    with pytest.raises(UserError, match="NaN or inf"):
        m.add(np.full((1, D), np.inf, np.float32), [0], [[0, 0, 0, 0, 0, 0, 1]], "s", [0])
    m.add(x, [0, 1], [[0, 0, 0, 0, 0, 0, 1]] * 2, "s", [0, 1])
    m._cols["_poses"].view()[1, 0] = np.inf  # a caller writing into the column behind add's back
    with pytest.raises(UserError, match="save: poses: row 1 holds NaN or inf"):
        m.save(tmp_path / "m")
    assert not (tmp_path / "m").exists()


def test_preprocessing_differences_name_both_settings():
    model = PreprocessContract(input_size=(64, 48), descriptor_dim=D).to_dict()
    other = PreprocessContract(input_size=(64, 48), resize="stretch", descriptor_dim=D).to_dict()
    with pytest.raises(UserError, match=r"resize: map 'stretch', model 'center_crop'"):
        check_contract(other, model, "map_dir", "m.onnx")
    check_contract(dict(model), model, "map_dir", "m.onnx")
    lacking = {k: v for k, v in model.items() if k != "input_size"}
    with pytest.raises(UserError, match=r"input_size: map '<absent>', model \[64, 48\]"):
        check_contract(lacking, model, "map_dir", "m.onnx")


@pytest.mark.slow
def test_node_loader_and_map_verify_refuse_a_map_of_other_preprocessing(tmp_path, capsys):
    """A map made with another crop is refused by the node's loader and by
    'map verify --model', naming both settings (verify did not compare them)."""
    import torch
    torch.set_num_threads(1)
    from distilvpr_core.app.cli import main
    from distilvpr_core.localize.resources import load_model_and_map
    from distilvpr_ros import synthetic_assets
    assets = synthetic_assets.build(tmp_path / "a", places=2, image_size=(160, 120))
    good = PriorMap.load(assets.map)
    contract = {**good.contract, "resize": "stretch"}
    bad = PriorMap.create(good.dim, good.fingerprint, contract)
    bad.add(good.descriptors, good.stamps_ns, good.poses, "s", good.frame_index)
    bad.save(tmp_path / "bad")
    with pytest.raises(UserError, match=r"resize: map 'stretch', model 'center_crop'"):
        load_model_and_map(tmp_path / "bad", assets.model)
    assert main(["map", "verify", str(tmp_path / "bad"), "--model", str(assets.model)]) == 2
    assert "resize: map 'stretch', model 'center_crop'" in capsys.readouterr().err
    assert main(["map", "verify", str(assets.map), "--model", str(assets.model)]) == 0


def test_partials_of_dead_writers_are_removed_by_verify_and_the_next_save(tmp_path, capsys):
    from distilvpr_core.app.cli import main
    path = small_map(tmp_path)
    neighbour = tmp_path / ".map.v2.abcd1234.partial"  # another map's ('map.v2') temp dir
    neighbour.mkdir()
    proc = writer_paused_mid_save(path)
    try:
        (partial,) = set(tmp_path.glob(".map.*.partial")) - {neighbour}
        # A live writer's temp dir is left alone, and a second writer is refused naming it.
        assert main(["map", "verify", str(path)]) == 0
        assert f"another process (pid {proc.pid}) is writing this map now" in capsys.readouterr().out
        assert partial.is_dir()
        with pytest.raises(UserError, match=f"pid {proc.pid}"):
            PriorMap.load(path).save(path)
    finally:
        kill(proc)
    assert partial.is_dir()  # kill -9 left it behind
    assert main(["map", "verify", str(path)]) == 0
    assert f"removed {partial} (" in capsys.readouterr().out
    assert not partial.exists() and neighbour.is_dir()
    proc = writer_paused_mid_save(path)
    kill(proc)
    (partial,) = set(tmp_path.glob(".map.*.partial")) - {neighbour}
    m = PriorMap.load(path)
    m.save(path)
    assert [p for p, _ in m.removed_partials] == [partial] and m.removed_partials[0][1] > 0
    assert not partial.exists() and neighbour.is_dir()
    assert len(PriorMap.load(path)) == 6
