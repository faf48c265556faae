"""ONNX export: metadata round trip, dynamic batch, TensorRT op check, torch<->ORT parity, bad files."""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest
import torch

from distilvpr_core.foundation.errors import UserError
from distilvpr_core.export import cli as export_cli
from distilvpr_core.models.fingerprint import state_dict_fingerprint
from distilvpr_core.infer.tensorrt.ops import unsupported_ops
from distilvpr_core.infer import load_embedder
from distilvpr_core.infer.model_meta import read_model_info
from distilvpr_core.models import StudentConfig, build_student, save_checkpoint

W, H = 128, 96  # small input keeps the test fast; the model is the real student


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> tuple[Path, Path]:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("export")
    model = build_student(StudentConfig())
    # Non-trivial BatchNorm statistics, so parity also covers the running stats.
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
    ckpt = save_checkpoint(d / "student.pt", model, "student", StudentConfig(), [W, H])
    parser = argparse.ArgumentParser()
    export_cli.add_arguments(parser)
    assert export_cli.run(parser.parse_args(["--checkpoint", str(ckpt), "--out", str(d / "student.onnx")])) == 0
    return ckpt, d / "student.onnx"


def synthetic_frames(n: int, seed: int = 0) -> list[np.ndarray]:
    """Smooth street-like frames: sky/ground gradient + random blocks, 480x640 RGB."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        img = np.zeros((480, 640, 3), np.float32)
        img[:240] = np.linspace(200, 120, 240)[:, None, None] * np.array([0.6, 0.8, 1.0])
        img[240:] = np.linspace(90, 40, 240)[:, None, None]
        for _ in range(12):
            x, y = rng.integers(0, 600), rng.integers(100, 400)
            img[y:y + rng.integers(20, 150), x:x + rng.integers(10, 80)] = rng.integers(0, 255, 3)
        out.append(img.clip(0, 255).astype(np.uint8))
    return out


def test_export_metadata_opset_dynamic_batch_and_trt_ops(exported):
    import onnx
    ckpt, onnx_path = exported
    model = onnx.load(str(onnx_path))
    onnx.checker.check_model(model, full_check=True)
    assert [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")][0] >= 17
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param and [d.dim_value for d in dims[1:]] == [3, H, W]
    assert unsupported_ops(model) == []
    info = read_model_info(onnx_path)
    assert info.contract.input_size == (W, H) and info.contract.descriptor_dim == 384
    assert info.precision == "fp32"
    sd = torch.load(ckpt, weights_only=True)["state_dict"]
    assert info.fingerprint == state_dict_fingerprint(sd)
    emb = load_embedder(onnx_path)
    for n in (1, 5):
        assert emb.embed(synthetic_frames(n)).shape == (n, 384)


def test_torch_and_onnxruntime_agree(exported):
    ckpt, onnx_path = exported
    ort_emb = load_embedder(onnx_path, backend="onnxruntime", intra_op_threads=1)
    pt_emb = load_embedder(ckpt, backend="torch")
    assert ort_emb.fingerprint == pt_emb.fingerprint and ort_emb.contract == pt_emb.contract
    rng = np.random.default_rng(3)
    frames = synthetic_frames(4, seed=1) + [rng.integers(0, 256, (240, 320, 3), np.uint8) for _ in range(3)]
    a, b = ort_emb.embed(frames), pt_emb.embed(frames)
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    assert (a * b).sum(1).min() >= 0.9999
    # Batching must not change a descriptor.
    np.testing.assert_allclose(ort_emb.embed(frames[:1]), a[:1], atol=1e-5)
    # Different frames give different descriptors (not a constant output).
    assert (a[0] * a[1]).sum() < 0.99999


def test_fingerprint_is_canonical():
    sd = build_student().state_dict()
    fp = state_dict_fingerprint(sd)
    assert fp == state_dict_fingerprint(dict(reversed(list(sd.items()))))
    changed = {k: v.clone() for k, v in sd.items()}
    changed["proj.bias"][0] += 1e-3
    assert state_dict_fingerprint(changed) != fp
    renamed = dict(sd)
    renamed["proj.bias2"] = renamed.pop("proj.bias")
    assert state_dict_fingerprint(renamed) != fp


def test_corrupt_truncated_and_foreign_onnx_are_refused(exported, tmp_path):
    import onnx
    _, onnx_path = exported
    data = onnx_path.read_bytes()
    trunc = tmp_path / "trunc.onnx"
    trunc.write_bytes(data[: len(data) // 2])
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x00not a model" * 100)
    for bad in (trunc, garbage):
        with pytest.raises(UserError, match=bad.name):
            load_embedder(bad)
        with pytest.raises(UserError, match=bad.name):
            read_model_info(bad)
    bare = onnx.load(str(onnx_path))
    del bare.metadata_props[:]
    nometa = tmp_path / "nometa.onnx"
    onnx.save(bare, str(nometa))
    with pytest.raises(UserError, match="nometa.onnx: no distilvpr metadata"):
        load_embedder(nometa)
    with pytest.raises(UserError, match="missing.onnx: model file not found"):
        load_embedder(tmp_path / "missing.onnx")
    with pytest.raises(UserError, match="unknown backend"):
        load_embedder(onnx_path, backend="tflite")
    ckpt, _ = exported
    with pytest.raises(UserError, match="use backend='torch'"):
        load_embedder(ckpt, backend="onnxruntime")
    with pytest.raises(UserError, match="use backend='onnxruntime'"):
        load_embedder(onnx_path, backend="torch")


def test_trt_op_check_flags_unsupported_and_custom_ops():
    from onnx import TensorProto, helper
    nodes = [helper.make_node("Unique", ["x"], ["u"]), helper.make_node("Relu", ["u"], ["r"]),
             helper.make_node("MyPlugin", ["r"], ["y"], domain="com.example")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])])
    assert unsupported_ops(helper.make_model(graph)) == ["ai.onnx::Unique", "com.example::MyPlugin"]


def test_export_cli_refuses_overwrite_and_bad_checkpoint(exported, tmp_path):
    ckpt, onnx_path = exported
    parser = argparse.ArgumentParser()
    export_cli.add_arguments(parser)
    with pytest.raises(UserError, match="exists; pass --overwrite"):
        export_cli.run(parser.parse_args(["--checkpoint", str(ckpt), "--out", str(onnx_path)]))
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"junk")
    with pytest.raises(UserError, match="bad.pt"):
        export_cli.run(parser.parse_args(["--checkpoint", str(bad), "--out", str(tmp_path / "x.onnx")]))
    with pytest.raises(UserError, match="--opset 13: must be >= 17"):
        export_cli.run(parser.parse_args(["--checkpoint", str(ckpt), "--out", str(tmp_path / "y.onnx"),
                                          "--opset", "13"]))


def test_export_cli_writes_int8_model_and_checks_calibration_flags(exported, tmp_path):
    from PIL import Image
    ckpt, _ = exported
    parser = argparse.ArgumentParser()
    export_cli.add_arguments(parser)
    calib = tmp_path / "calib"
    calib.mkdir()
    for i, img in enumerate(synthetic_frames(8, seed=5)):
        Image.fromarray(img).save(calib / f"{i}.png")
    out, q = tmp_path / "m.onnx", tmp_path / "m.int8.onnx"
    with pytest.raises(UserError, match="--int8-out needs --calib"):
        export_cli.run(parser.parse_args(["--checkpoint", str(ckpt), "--out", str(out), "--int8-out", str(q)]))
    with pytest.raises(UserError, match="only make sense with --int8-out"):
        export_cli.run(parser.parse_args(["--checkpoint", str(ckpt), "--out", str(out), "--calib", str(calib)]))
    assert export_cli.run(parser.parse_args(["--checkpoint", str(ckpt), "--out", str(out), "--int8-out", str(q),
                                             "--calib", str(calib), "--calib-count", "8"])) == 0
    info32, info8 = read_model_info(out), read_model_info(q)
    assert (info32.precision, info8.precision) == ("fp32", "int8")
    assert info8.fingerprint == info32.fingerprint and info8.contract == info32.contract
    import onnx
    ops = {n.op_type for n in onnx.load(str(q)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
