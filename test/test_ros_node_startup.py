"""Start-up fails fast, naming the file or parameter, with exit code 2 and no traceback."""
from __future__ import annotations

import shutil

import pytest

from distilvpr_ros import launch_args, synthetic_assets
from distilvpr_ros.replay.node_process import LocalizerProcess


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    import torch
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("startup")
    return {
        "main": synthetic_assets.build(root / "main", places=3, dim=64, seed=0),
        "other_weights": synthetic_assets.build(root / "other", places=2, dim=64, seed=1),
        "other_dim": synthetic_assets.build(root / "dim32", places=2, dim=32, seed=0),
    }


def run_node(tmp_path, map_path, model_path, *params, timeout_s=60):
    args = launch_args.node_arguments({"map": str(map_path), "model": str(model_path)})
    for p in params:
        args += ["-p", p]
    proc = LocalizerProcess(args, tmp_path / "node.log")
    try:
        rc = proc.proc.wait(timeout_s)
    finally:
        proc.stop()
    out = proc.output()
    assert "Traceback" not in out, out
    return rc, out


def test_missing_map_names_the_path(assets, tmp_path):
    rc, out = run_node(tmp_path, tmp_path / "no_such_map", assets["main"].model)
    assert rc == 2 and "no_such_map" in out and "map_path" in out


def test_missing_model_names_the_path(assets, tmp_path):
    rc, out = run_node(tmp_path, assets["main"].map, tmp_path / "gone.onnx")
    assert rc == 2 and "gone.onnx" in out and "model_path" in out


def test_corrupt_model_names_the_path(assets, tmp_path):
    bad = tmp_path / "truncated.onnx"
    bad.write_bytes(assets["main"].model.read_bytes()[:1000])
    rc, out = run_node(tmp_path, assets["main"].map, bad)
    assert rc == 2 and "truncated.onnx" in out


def test_map_of_another_model_is_refused_naming_both_fingerprints(assets, tmp_path):
    rc, out = run_node(tmp_path, assets["main"].map, assets["other_weights"].model)
    assert rc == 2 and "fingerprint" in out and str(assets["main"].map) in out


def test_map_of_another_dim_is_refused_naming_both_dims(assets, tmp_path):
    rc, out = run_node(tmp_path, assets["main"].map, assets["other_dim"].model)
    assert rc == 2 and "64" in out and "32" in out and "dim" in out


def test_damaged_map_is_refused(assets, tmp_path):
    damaged = tmp_path / "damaged_map"
    shutil.copytree(assets["main"].map, damaged)
    (damaged / "poses.npy").write_bytes(b"garbage")
    rc, out = run_node(tmp_path, damaged, assets["main"].model)
    assert rc == 2 and "poses.npy" in out


@pytest.mark.parametrize("param,name", [("top_k:=500", "top_k"), ("backend:=cuda", "backend"),
                                        ("min_interval_s:=1", "min_interval_s"),
                                        ("score_threshold:=2.0", "score_threshold"),
                                        # With the params file (run_node passes one) rcl kept the
                                        # file's top_k for these and the node started (issue 18).
                                        ("top_k:=7.0", "top_k"), ("top_k:=abc", "top_k"),
                                        ("top_k:=[1,2]", "top_k"), ("localizer:top_k:=7.0", "top_k")])
def test_invalid_parameter_is_refused_naming_it(assets, tmp_path, param, name):
    rc, out = run_node(tmp_path, assets["main"].map, assets["main"].model, param)
    assert rc == 2 and f"parameter '{name}'" in out
    assert "--params-file" in launch_args.node_arguments({"map": "m", "model": "m"})


def test_required_parameters(assets, tmp_path):
    proc = LocalizerProcess(["--ros-args", "-p", f"model_path:={assets['main'].model}"], tmp_path / "n.log")
    try:
        rc = proc.proc.wait(60)
    finally:
        proc.stop()
    assert rc == 2 and "parameter 'map_path' is required" in proc.output()
