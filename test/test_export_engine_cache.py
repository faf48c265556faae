"""Engine cache: key logic, reuse, rebuild on any changed fact, atomic writes, stale/corrupt files.

TensorRT is not needed: the GPU/TensorRT facts and the builder are injected,
everything else (ONNX metadata, hashing, files) is real.  The real TensorRT
build + parity test is marked ``tensorrt``.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from distilvpr_core.errors import UserError
from distilvpr_core.export.engine_cache import (EngineCache, EngineKey, EngineSpec, GpuFacts,
                                                check_engine_facts, read_sidecar)
from distilvpr_core.export.engines import ensure_engine
from distilvpr_core.infer.contract import PreprocessContract
from distilvpr_core.infer.model_meta import ModelInfo

ORIN = GpuFacts("10.3.0", "Orin", (8, 7))
H100 = GpuFacts("10.8.0.43", "NVIDIA H100 80GB HBM3", (9, 0))


@pytest.fixture
def tiny_onnx(tmp_path) -> Path:
    """A real (tiny) ONNX file with distilvpr metadata: Conv -> GlobalAveragePool -> Flatten."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    w = numpy_helper.from_array(np.ones((4, 3, 1, 1), np.float32), "w")
    nodes = [helper.make_node("Conv", ["image", "w"], ["c"]),
             helper.make_node("GlobalAveragePool", ["c"], ["g"]),
             helper.make_node("Flatten", ["g"], ["descriptor"])]
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("image", TensorProto.FLOAT,
                                                                            ["batch", 3, 8, 8])],
                              [helper.make_tensor_value_info("descriptor", TensorProto.FLOAT, ["batch", 4])],
                              initializer=[w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    info = ModelInfo(PreprocessContract(input_size=(8, 8), descriptor_dim=4), "ab" * 32, "fp32")
    for k, v in info.to_props().items():
        model.metadata_props.add(key=k, value=v)
    path = tmp_path / "tiny.onnx"
    onnx.save(model, str(path))
    return path


class CountingBuilder:
    """Stands in for TensorRT's builder only: returns distinct bytes and counts calls."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, onnx_path, spec, contract, **kw) -> bytes:
        self.calls += 1
        assert Path(kw["timing_cache"]).parent.is_dir()
        return f"engine {spec.precision} {spec.batch} build {self.calls}".encode()


def test_key_changes_with_every_fact():
    spec = EngineSpec("00" * 32, "fp16", (240, 320), (1, 1, 8))
    base = EngineKey(spec, ORIN).digest()
    variants = [EngineKey(spec, H100), EngineKey(spec, GpuFacts("10.3.1", "Orin", (8, 7))),
                EngineKey(spec, GpuFacts("10.3.0", "Orin", (8, 6))),
                EngineKey(spec, GpuFacts("10.3.0", "Orin NX", (8, 7))),
                EngineKey(EngineSpec("11" * 32, "fp16", (240, 320), (1, 1, 8)), ORIN),
                EngineKey(EngineSpec("00" * 32, "fp32", (240, 320), (1, 1, 8)), ORIN),
                EngineKey(EngineSpec("00" * 32, "fp16", (240, 321), (1, 1, 8)), ORIN),
                EngineKey(EngineSpec("00" * 32, "fp16", (240, 320), (1, 1, 16)), ORIN),
                EngineKey(EngineSpec("00" * 32, "int8", (240, 320), (1, 1, 8), "cc" * 32), ORIN)]
    digests = {v.digest() for v in variants}
    assert base not in digests and len(digests) == len(variants)
    assert EngineKey(EngineSpec("00" * 32, "fp16", (240, 320), (1, 1, 8)), ORIN).digest() == base
    with pytest.raises(UserError, match="int8 needs calibration"):
        EngineSpec("00" * 32, "int8", (240, 320))
    with pytest.raises(UserError, match="precision"):
        EngineSpec("00" * 32, "bf8", (240, 320))


def test_reuse_rebuild_and_sidecar(tiny_onnx, tmp_path):
    cache, build = tmp_path / "cache", CountingBuilder()
    first = ensure_engine(tiny_onnx, "fp16", cache, facts=ORIN, builder=build)
    assert first.built and build.calls == 1 and first.engine.is_file()
    again = ensure_engine(tiny_onnx, "fp16", cache, facts=ORIN, builder=build)
    assert not again.built and again.engine == first.engine and build.calls == 1
    meta = read_sidecar(first.engine)
    assert meta["fingerprint"] == "ab" * 32 and meta["contract"]["input_size"] == [8, 8]
    # Another GPU, TensorRT version or precision: a new engine, the old one untouched.
    other = ensure_engine(tiny_onnx, "fp16", cache, facts=H100, builder=build)
    fp32 = ensure_engine(tiny_onnx, "fp32", cache, facts=ORIN, builder=build)
    assert other.built and fp32.built and build.calls == 3
    assert len({first.engine, other.engine, fp32.engine}) == 3
    # A changed model (same path) must not be served the old engine.
    import onnx
    m = onnx.load(str(tiny_onnx))
    m.graph.initializer[0].float_data[:] = []
    m.graph.initializer[0].raw_data = np.full((4, 3, 1, 1), 2, np.float32).tobytes()
    onnx.save(m, str(tiny_onnx))
    changed = ensure_engine(tiny_onnx, "fp16", cache, facts=ORIN, builder=build)
    assert changed.built and changed.engine != first.engine
    leftovers = [p for p in Path(cache).iterdir() if p.name.startswith(".")]
    assert leftovers == []  # atomic writes leave no temp files


def test_corrupt_or_stale_cache_entries_are_rebuilt(tiny_onnx, tmp_path):
    cache, build = tmp_path / "cache", CountingBuilder()
    res = ensure_engine(tiny_onnx, "fp16", cache, facts=ORIN, builder=build)
    res.engine.write_bytes(b"bit rot")
    res2 = ensure_engine(tiny_onnx, "fp16", cache, facts=ORIN, builder=build)
    assert res2.built and "sha256" in res2.reason and res2.engine.read_bytes().endswith(b"build 2")
    meta_path = res.engine.with_suffix(".json")
    meta = json.loads(meta_path.read_text())
    meta["key"]["trt_version"] = "10.0.0"  # a sidecar from another key under this name
    meta_path.write_text(json.dumps(meta))
    res3 = ensure_engine(tiny_onnx, "fp16", cache, facts=ORIN, builder=build)
    assert res3.built and "stale" in res3.reason
    meta_path.unlink()
    assert ensure_engine(tiny_onnx, "fp16", cache, facts=ORIN, builder=build).built
    assert build.calls == 4


def test_engine_from_another_gpu_is_refused_with_both_names(tiny_onnx, tmp_path):
    res = ensure_engine(tiny_onnx, "fp16", tmp_path / "c", facts=ORIN, builder=CountingBuilder())
    meta = read_sidecar(res.engine)
    check_engine_facts(meta, ORIN, res.engine)
    with pytest.raises(UserError, match=r"built for TensorRT 10\.3\.0 on 'Orin'.*this machine has "
                                        r"TensorRT 10\.8\.0\.43 on 'NVIDIA H100"):
        check_engine_facts(meta, H100, res.engine)
    res.engine.with_suffix(".json").unlink()
    with pytest.raises(UserError, match="no sidecar"):
        read_sidecar(res.engine)


def test_unwritable_cache_dir_fails_loudly(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    os.chmod(ro, 0o500)
    try:
        if os.access(ro, os.W_OK) and os.geteuid() == 0:
            # root ignores permission bits: use a path under a regular file instead
            target = tmp_path / "file"
            target.write_text("x")
            bad = target / "engines"
        else:
            bad = ro / "engines"
        with pytest.raises(UserError, match="not writable"):
            EngineCache(bad)
    finally:
        os.chmod(ro, 0o700)


def test_bad_inputs_named(tiny_onnx, tmp_path):
    with pytest.raises(UserError, match="needs calibration images"):
        ensure_engine(tiny_onnx, "int8", tmp_path / "c", facts=ORIN, builder=CountingBuilder())
    from distilvpr_core.infer.calibration import CalibrationSource
    with pytest.raises(UserError, match="nowhere: calibration image directory not found"):
        CalibrationSource(tmp_path / "nowhere")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UserError, match="no images"):
        ensure_engine(tiny_onnx, "int8", tmp_path / "c", calib=CalibrationSource(empty), facts=ORIN,
                      builder=CountingBuilder())


@pytest.mark.tensorrt
def test_real_tensorrt_build_reuse_and_parity(tiny_onnx, tmp_path):
    from distilvpr_core.infer import load_embedder
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (3, 16, 16, 3), np.uint8)
    ref = load_embedder(tiny_onnx, backend="onnxruntime").embed(frames)
    trt = load_embedder(tiny_onnx, backend="tensorrt", precision="fp32", cache_dir=tmp_path / "c")
    assert trt.built_now
    np.testing.assert_allclose(trt.embed(frames), ref, atol=1e-4)
    trt.close()
    again = load_embedder(tiny_onnx, backend="tensorrt", precision="fp32", cache_dir=tmp_path / "c")
    assert not again.built_now
    np.testing.assert_allclose(again.embed(frames), ref, atol=1e-4)
    again.close()


def test_build_engine_cli_without_tensorrt_says_what_to_install(tiny_onnx, tmp_path):
    import argparse
    import importlib.util

    from distilvpr_core.export import engine_cli
    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("TensorRT is installed here; the real build is covered by the tensorrt test")
    p = argparse.ArgumentParser()
    engine_cli.add_arguments(p)
    with pytest.raises(UserError, match="TensorRT is not installed"):
        engine_cli.run(p.parse_args(["--model", str(tiny_onnx), "--cache-dir", str(tmp_path / "c")]))
    with pytest.raises(UserError, match="TensorRT is not installed"):
        from distilvpr_core.infer import load_embedder
        load_embedder(tiny_onnx, backend="tensorrt")


def test_int8_onnx_runtime_model_is_not_an_engine_source(tiny_onnx, tmp_path):
    import onnx
    m = onnx.load(str(tiny_onnx))
    for p in m.metadata_props:
        if p.key == "distilvpr.precision":
            p.value = "int8"
    q = tmp_path / "tiny.int8.onnx"
    onnx.save(m, str(q))
    with pytest.raises(UserError, match="tiny.int8.onnx: is a int8 ONNX Runtime model"):
        ensure_engine(q, "fp16", tmp_path / "c", facts=ORIN, builder=CountingBuilder())
