"""Engine cache: key logic, reuse, rebuild on any changed fact, atomic writes, stale/corrupt files.

TensorRT is not needed: the GPU/TensorRT facts and the builder are injected,
everything else (ONNX metadata, hashing, files) is real.  The real TensorRT
build + parity test is marked ``tensorrt``.
"""
from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import numpy as np
import pytest

from distilvpr_core.foundation.errors import UserError
from distilvpr_core.infer.tensorrt.engine_cache import EngineCache, check_engine_facts, read_sidecar
from distilvpr_core.infer.tensorrt.engine_key import RECIPE_VERSION, EngineKey, EngineSpec, GpuFacts, build_recipe
from distilvpr_core.infer.tensorrt.engines import ensure_engine
from distilvpr_core.foundation.contract import PreprocessContract
from distilvpr_core.infer.model_meta import ModelInfo, seal_model

ORIN = GpuFacts("10.3.0", "Orin", (8, 7), 16, 62841)
H100 = GpuFacts("10.8.0.43", "NVIDIA H100 80GB HBM3", (9, 0), 132, 81008)


def write_tiny_onnx(path: Path) -> Path:
    """A real (tiny) ONNX file with distilvpr metadata at ``path``: Conv -> GlobalAveragePool -> Flatten,
    input [N, 3, 8, 8], output [N, 4]."""
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
    seal_model(model, info)  # metadata + the weights digest, as 'distilvpr export' writes them
    onnx.save(model, str(path))
    return path


@pytest.fixture
def tiny_onnx(tmp_path) -> Path:
    return write_tiny_onnx(tmp_path / "tiny.onnx")


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
    _retrain(tiny_onnx, 2.0)
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


def test_reject_rebuilds_only_the_engine_that_did_not_deserialise(tiny_onnx, tmp_path):
    cache, build = tmp_path / "cache", CountingBuilder()
    first = ensure_engine(tiny_onnx, "fp16", cache, facts=ORIN, builder=build)
    bad = read_sidecar(first.engine)["engine_sha256"]
    # Someone else's sha (another process already replaced the bad engine): reused, not rebuilt.
    assert not ensure_engine(tiny_onnx, "fp16", cache, facts=ORIN, builder=build, reject="ff" * 32).built
    rebuilt = ensure_engine(tiny_onnx, "fp16", cache, facts=ORIN, builder=build, reject=bad)
    assert rebuilt.built and "does not deserialise" in rebuilt.reason and rebuilt.engine == first.engine
    assert read_sidecar(first.engine)["engine_sha256"] != bad and build.calls == 2


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
    from distilvpr_core.infer.tensorrt.calibration import CalibrationSource
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
    ref = load_embedder(tiny_onnx, backend="onnxruntime", providers=["CPUExecutionProvider"]).embed(frames)
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


def test_key_covers_sm_count_memory_and_build_recipe():
    spec = EngineSpec("00" * 32, "fp16", (240, 320), (1, 1, 8))
    base = EngineKey(spec, ORIN)
    assert base.recipe == build_recipe("fp16") and base.to_dict()["recipe"]["version"] == RECIPE_VERSION
    # Orin modules of different size: same name and compute capability.
    orin_nx = GpuFacts("10.3.0", "Orin", (8, 7), 8, 15656)
    orin_32 = GpuFacts("10.3.0", "Orin", (8, 7), 14, 30697)
    int8 = EngineSpec("00" * 32, "int8", (240, 320), (1, 1, 8), "cc" * 32)
    variants = [EngineKey(spec, orin_nx), EngineKey(spec, orin_32),
                EngineKey(spec, ORIN, build_recipe("fp16", workspace_mb=2048)),
                EngineKey(spec, ORIN, dataclasses.replace(build_recipe("fp16"), version=RECIPE_VERSION + 1)),
                EngineKey(int8, ORIN, build_recipe("int8", calib_batch=8)),
                EngineKey(int8, ORIN, build_recipe("int8", calib_batch=16))]
    digests = {v.digest() for v in variants} | {base.digest()}
    assert len(digests) == len(variants) + 1
    assert build_recipe("fp32").tf32 is False and build_recipe("fp16").tf32 is True
    assert build_recipe("fp32").pool_fp32 is False and build_recipe("int8").pool_fp32 is True


class TableBuilder(CountingBuilder):
    """Also writes the INT8 calibration table where it is told, as TensorRT does."""

    def __call__(self, onnx_path, spec, contract, **kw) -> bytes:
        self.tables = getattr(self, "tables", []) + [kw["calib_cache"]]
        if kw["calib_cache"] is not None and not Path(kw["calib_cache"]).exists():
            Path(kw["calib_cache"]).write_bytes(f"scales of {spec.onnx_sha256[:8]}".encode())
        return super().__call__(onnx_path, spec, contract, **kw)


def _calib_dir(tmp_path: Path, n: int = 8) -> Path:
    from PIL import Image
    d = tmp_path / "calib"
    d.mkdir(exist_ok=True)
    for i in range(n):
        Image.fromarray(np.full((8, 8, 3), i * 20, np.uint8)).save(d / f"{i}.png")
    return d


def _retrain(onnx_path: Path, value: float) -> None:
    import onnx
    m = onnx.load(str(onnx_path))
    m.graph.initializer[0].float_data[:] = []
    m.graph.initializer[0].raw_data = np.full((4, 3, 1, 1), value, np.float32).tobytes()
    seal_model(m, ModelInfo(PreprocessContract(input_size=(8, 8), descriptor_dim=4), "ab" * 32, "fp32"))
    onnx.save(m, str(onnx_path))  # re-exported: new weights, their digest in the metadata


def test_calibration_table_is_per_engine_key_and_recorded(tiny_onnx, tmp_path):
    from distilvpr_core.infer.tensorrt.engine_cache import sha256_file
    from distilvpr_core.infer.tensorrt.calibration import CalibrationSource
    calib, build = CalibrationSource(_calib_dir(tmp_path), limit=8), TableBuilder()
    first = ensure_engine(tiny_onnx, "int8", tmp_path / "c", calib=calib, facts=ORIN, builder=build)
    _retrain(tiny_onnx, 2.0)  # same path, same calibration set, new weights
    second = ensure_engine(tiny_onnx, "int8", tmp_path / "c", calib=calib, facts=ORIN, builder=build)
    assert second.built and build.tables[0] != build.tables[1]
    meta = read_sidecar(second.engine)
    assert meta["calib_table"] == build.tables[1].name
    assert meta["calib_table_sha256"] == sha256_file(build.tables[1])
    assert build.tables[1].read_bytes() != b"scales of " + first.key.spec.onnx_sha256[:8].encode()
    with pytest.raises(UserError, match="less than one calibration batch"):
        ensure_engine(tiny_onnx, "int8", tmp_path / "c", calib=CalibrationSource(_calib_dir(tmp_path), limit=4),
                      facts=ORIN, builder=build)


def _wait_for(cond, what: str, timeout_s: float = 60.0) -> None:
    import time
    end = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > end:
            raise TimeoutError(f"waited {timeout_s:g} s for {what}")
        time.sleep(0.01)


def _race_worker(onnx_path: str, cache: str, log: str, events: str, q) -> None:
    """One of two processes asking for one engine.  Whoever builds holds the key's lock until the other
    has announced that it is about to block on it, so the other one always waits: no sleep decides it."""
    import fcntl
    import types

    from distilvpr_core.infer.tensorrt import engine_cache
    me = os.getpid()

    def flock(fd: int, op: int) -> None:
        if op == fcntl.LOCK_EX:  # a blocking acquire (prune's are LOCK_NB): announce it first
            Path(events, f"waiting-{me}").touch()
        fcntl.flock(fd, op)

    engine_cache.fcntl = types.SimpleNamespace(**{k: getattr(fcntl, k) for k in dir(fcntl)
                                                  if k.startswith("LOCK_")}, flock=flock)

    def builder(onnx_path, spec, contract, **kw):
        with open(log, "a") as fh:
            fh.write(f"build {me}\n")
        _wait_for(lambda: any(p.name != f"waiting-{me}" for p in Path(events).glob("waiting-*")),
                  "the other process to reach the lock")
        return b"engine by %d" % me

    res = ensure_engine(onnx_path, "fp16", cache, facts=ORIN, builder=builder)
    q.put((res.built, res.reason, str(res.engine)))


def test_two_processes_build_one_key_once(tiny_onnx, tmp_path):
    import multiprocessing as mp
    ctx = mp.get_context("fork")
    q, log, events = ctx.Queue(), tmp_path / "builds.log", tmp_path / "events"
    events.mkdir()
    procs = [ctx.Process(target=_race_worker, args=(str(tiny_onnx), str(tmp_path / "c"), str(log), str(events), q))
             for _ in range(2)]
    for p in procs:
        p.start()
    results = [q.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=30)
    assert len(log.read_text().splitlines()) == 1
    assert sorted(r[0] for r in results) == [False, True]
    waited = next(r for r in results if not r[0])
    assert "another process" in waited[1] and results[0][2] == results[1][2]
    assert read_sidecar(Path(waited[2]))["engine_sha256"]


def test_prune_removes_only_unreachable_entries(tiny_onnx, tmp_path):
    cache_dir, build = tmp_path / "c", CountingBuilder()
    old_trt = GpuFacts("10.0.1", *[getattr(ORIN, f) for f in ("gpu_name", "compute_capability", "sm_count",
                                                             "total_memory_mib")])
    on_old_trt = ensure_engine(tiny_onnx, "fp16", cache_dir, facts=old_trt, builder=build, prune=False)
    other_gpu = ensure_engine(tiny_onnx, "fp16", cache_dir, facts=H100, builder=build, prune=False)
    old_recipe = ensure_engine(tiny_onnx, "fp32", cache_dir, facts=ORIN, builder=build, prune=False)
    meta_path = old_recipe.engine.with_suffix(".json")
    meta = json.loads(meta_path.read_text())
    meta["key"]["recipe"]["version"] = RECIPE_VERSION - 1
    meta_path.write_text(json.dumps(meta))
    current = ensure_engine(tiny_onnx, "fp16", cache_dir, facts=ORIN, builder=build, prune=False)
    other = tmp_path / "other.onnx"
    other.write_bytes(tiny_onnx.read_bytes())
    before_retrain = ensure_engine(other, "fp16", cache_dir, facts=ORIN, builder=build, prune=False)
    orphan_old, orphan_new = cache_dir / "gone-fp16-0.engine", cache_dir / "inflight-fp16-1.engine"
    orphan_old.write_bytes(b"x")
    orphan_new.write_bytes(b"y")
    os.utime(orphan_old, (1e9, 1e9))
    _retrain(other, 3.0)
    now = ensure_engine(other, "fp16", cache_dir, facts=ORIN, builder=build)  # builds, then prunes
    assert now.built
    left = {p.name for p in cache_dir.glob("*.engine")}
    assert left == {now.engine.name, current.engine.name, other_gpu.engine.name, orphan_new.name}
    for gone in (on_old_trt, old_recipe, before_retrain):
        assert not gone.engine.exists() and not gone.engine.with_suffix(".json").exists()


def test_prune_leaves_an_entry_locked_by_a_build(tiny_onnx, tmp_path):
    cache_dir = tmp_path / "c"
    res = ensure_engine(tiny_onnx, "fp32", cache_dir, facts=ORIN, builder=CountingBuilder())
    cache = EngineCache(cache_dir)
    with cache.lock(res.engine.stem):
        assert cache.prune(GpuFacts("10.9.0", "Orin", (8, 7), 16, 62841)) == []
    assert res.engine.exists()
    assert [p.name for p in cache.prune(GpuFacts("10.9.0", "Orin", (8, 7), 16, 62841))] == [
        res.engine.name, res.engine.with_suffix(".json").name]


def test_cli_and_backend_share_the_calibration_default():
    import argparse
    import inspect

    from distilvpr_core.export import engine_cli
    from distilvpr_core.infer.tensorrt.backend import TrtEmbedder
    p = argparse.ArgumentParser()
    engine_cli.add_arguments(p)
    cli_default = p.parse_args(["--model", "m.onnx"]).calib_count
    assert cli_default == inspect.signature(TrtEmbedder).parameters["calib_count"].default


def test_documented_tensorrt_options_are_accepted():
    import inspect
    import re

    from distilvpr_core import infer
    from distilvpr_core.infer.tensorrt.backend import TrtEmbedder
    doc = infer.load_embedder.__doc__.split('backend "tensorrt"')[1]
    documented = set(re.findall(r"``(\w+)``", doc)) - {"onnx", "engine", "json"}
    assert documented and documented <= set(inspect.signature(TrtEmbedder).parameters)
