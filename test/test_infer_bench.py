"""``distilvpr bench embedder`` end to end on a small real model; torch backend options; GPU paths."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

from distilvpr_core.foundation.errors import UserError
from distilvpr_core.export.random_student import export_random_student
from distilvpr_core.bench import embedder as bench
from distilvpr_core.infer import load_embedder


@pytest.fixture(scope="module")
def small_model(tmp_path_factory) -> tuple[Path, Path]:
    import torch
    torch.set_num_threads(1)
    ckpt, onnx_path = export_random_student(tmp_path_factory.mktemp("bench"), (96, 64), seed=2)
    return onnx_path, ckpt


def _args(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    bench.add_arguments(p)
    return p.parse_args(list(argv))


def test_bench_writes_table_and_json(small_model, tmp_path, capsys):
    onnx_path, ckpt = small_model
    out = tmp_path / "b.json"
    assert bench.run(_args("--model", str(onnx_path), "--checkpoint", str(ckpt), "--backends",
                           "onnxruntime,torch", "--batches", "1,3", "--iters", "4", "--warmup", "1",
                           "--threads", "1", "--frame", "320x240", "--json", str(out))) == 0
    text = capsys.readouterr().out
    assert "onnxruntime" in text and "bare p50" in text and f"saved {out}" in text
    res = json.loads(out.read_text())
    assert res["machine"]["cpu_count"] >= 1 and res["frame"] == [320, 240]
    rows = {(r["label"], r["batch"]): r for r in res["rows"]}
    assert set(rows) == {("onnxruntime", 1), ("onnxruntime", 3), ("torch", 1), ("torch", 3)}
    for r in rows.values():
        e = r["embed"]
        assert 0 < e["p50_ms"] <= e["p90_ms"] <= e["p99_ms"]
        assert r["bare_session"]["p50_ms"] > 0 and r["preprocess"]["p50_ms"] > 0
        assert r["ratio_embed_vs_bare_p50"] == pytest.approx(e["p50_ms"] / r["bare_session"]["p50_ms"])
        assert r["throughput_img_s"] == pytest.approx(r["batch"] * 1e3 / e["p50_ms"])
        assert r["embed_cpu"]["p50_ms"] > 0 and r["bare_session_cpu"]["p50_ms"] > 0
        assert isinstance(r["target_ok"], bool) and isinstance(r["target_ok_cpu"], bool)


def test_bench_bad_arguments(small_model, tmp_path):
    onnx_path, _ = small_model
    with pytest.raises(UserError, match="unknown backend 'tflite'"):
        bench.run(_args("--model", str(onnx_path), "--backends", "tflite", "--json", str(tmp_path / "x.json")))
    with pytest.raises(UserError, match="needs --int8-model"):
        bench.run(_args("--model", str(onnx_path), "--backends", "onnxruntime-int8"))
    with pytest.raises(UserError, match="needs --checkpoint"):
        bench.run(_args("--model", str(onnx_path), "--backends", "torch"))
    with pytest.raises(UserError, match="--frame"):
        bench.run(_args("--model", str(onnx_path), "--frame", "big"))


def test_torch_backend_options_are_checked(small_model):
    _, ckpt = small_model
    with pytest.raises(UserError, match="fp16: only supported with a CUDA device"):
        load_embedder(ckpt, backend="torch", fp16=True)
    with pytest.raises(UserError, match="cuda_graphs: needs a CUDA device"):
        load_embedder(ckpt, backend="torch", cuda_graphs=True)
    with pytest.raises(UserError, match="max_batch"):
        load_embedder(ckpt, backend="torch", max_batch=0)
    emb = load_embedder(ckpt, backend="torch", max_batch=2)
    frames = np.random.default_rng(0).integers(0, 256, (5, 64, 96, 3), np.uint8)
    chunked = emb.embed(frames)  # 5 frames through max_batch=2 -> 3 chunks
    np.testing.assert_allclose(chunked[4:], emb.embed(frames[4:]), atol=1e-5)


@pytest.mark.gpu
def test_torch_cuda_fp16_and_graphs_match_cpu(small_model):
    _, ckpt = small_model
    frames = np.random.default_rng(0).integers(0, 256, (4, 64, 96, 3), np.uint8)
    ref = load_embedder(ckpt, backend="torch").embed(frames)
    for graphs in (False, True):
        emb = load_embedder(ckpt, backend="torch", device="cuda", cuda_graphs=graphs)
        assert emb.fp16
        got = emb.embed(frames)
        got2 = emb.embed(frames)  # a replayed graph must give the same answer
        assert (got * ref).sum(1).min() >= 0.999
        np.testing.assert_allclose(got, got2, atol=1e-6)


class _VirtualClock:
    """perf_counter/process_time that move only when a wrapped call says it worked."""

    def __init__(self) -> None:
        self.now_s = 0.0

    def __call__(self) -> float:
        return self.now_s


class _Costly:
    """Delegates to a real embedder or ONNX session, charging ``ms_per_frame`` of virtual time
    per frame; the first ``warmup`` calls of each batch size cost a second each."""

    def __init__(self, inner, clock: _VirtualClock, ms_per_frame: float, warmup: int):
        self.inner, self.clock, self.ms, self.warmup = inner, clock, ms_per_frame, warmup
        self.calls: dict[int, int] = {}

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def _charge(self, frames: int) -> None:
        n = self.calls[frames] = self.calls.get(frames, 0) + 1
        self.clock.now_s += 1.0 if n <= self.warmup else self.ms * frames / 1e3

    def embed(self, batch):
        self._charge(len(batch))
        return self.inner.embed(batch)

    def run(self, outputs, feeds):
        self._charge(next(iter(feeds.values())).shape[0])
        return self.inner.run(outputs, feeds)


@pytest.mark.parametrize("embed_ms, target_ok", [(5.0, True), (6.0, False)])
def test_bench_statistics_and_target_from_known_costs(small_model, monkeypatch, embed_ms, target_ok):
    """embed costs ``embed_ms`` and the bare session 4 ms per frame (virtual clock): the row
    reports exactly those, drops the warm-up, and judges embed <= 1.05 x bare + 1 ms per frame."""
    import onnxruntime as ort
    onnx_path, _ = small_model
    clock = _VirtualClock()
    monkeypatch.setattr(bench, "time", type("T", (), {"perf_counter": staticmethod(clock),
                                                      "process_time": staticmethod(clock)}))
    batches, iters, warmup = [1, 3], 5, 2
    emb = _Costly(load_embedder(onnx_path, intra_op_threads=1), clock, embed_ms, warmup)
    bare = _Costly(ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"]), clock, 4.0, warmup)
    frames = list(np.random.default_rng(1).integers(0, 256, (3, 64, 96, 3), np.uint8))
    rows = bench.bench_backend(emb, bare, frames, batches, iters=iters, warmup=warmup)
    assert [r["batch"] for r in rows] == batches
    assert emb.calls == bare.calls == {1: warmup + iters, 3: warmup + iters}
    for r in rows:
        b = r["batch"]
        for key, ms in (("embed", embed_ms * b), ("embed_cpu", embed_ms * b), ("bare_session", 4.0 * b)):
            assert r[key]["p50_ms"] == pytest.approx(ms) and r[key]["p99_ms"] == pytest.approx(ms), key
        assert r["overhead_ms_paired_median"] == pytest.approx((embed_ms - 4.0) * b)
        assert r["ratio_embed_vs_bare_p50"] == pytest.approx(embed_ms / 4.0)
        assert r["throughput_img_s"] == pytest.approx(1e3 / embed_ms)
        assert r["target_ok"] is target_ok and r["target_ok_cpu"] is target_ok
