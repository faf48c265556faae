"""scripts/gpu_check.py: its CPU-side logic, and that it runs and skips cleanly without CUDA/TensorRT."""
from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from test_export_engine_cache import write_tiny_onnx

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "gpu_check.py"


@pytest.fixture(scope="module")
def gc():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = mod  # dataclasses look their module up while the class is made
    spec.loader.exec_module(mod)
    yield mod
    sys.modules.pop("gpu_check", None)


def test_metrics(gc):
    a = np.eye(3, 4, dtype=np.float32)
    assert gc.cosine_stats(a, a) == pytest.approx((1.0, 1.0))
    b = a.copy()
    b[0] = [1, 1, 0, 0]
    lo, mean = gc.cosine_stats(a, b)
    assert lo == pytest.approx(2 ** -0.5) and mean == pytest.approx((2 + 2 ** -0.5) / 3)
    assert gc.recall_at_1(a, a) == 100.0
    assert gc.recall_at_1(a, a[[1, 0, 2]]) == pytest.approx(100 / 3)


def test_synthetic_places_are_distinct_and_revisits_shifted(gc):
    places, revisits = gc.synthetic_places(3, seed=0, h=48, w=64)
    assert places.shape == revisits.shape == (3, 48, 64, 3) and places.dtype == np.uint8
    assert not np.array_equal(places[0], places[1])
    np.testing.assert_array_equal(revisits[0][:, 6:], (places[0][:, :-6].astype(np.float32) * 0.85).astype(np.uint8))


def test_report_table_and_failure(gc):
    rep = gc.Report(["# h"])
    rep.add(gc.Row("a", "ok", cos="1 / 1", notes="x | y"))
    rep.add(gc.Row("b", notes="no CUDA"))
    md = rep.markdown()
    assert md.splitlines()[2].startswith("| check | result |") and "x / y" in md and "| b | skipped |" in md
    assert not rep.failed()
    rep.add(gc.judge(gc.Row("c"), 0.99, 0.999))
    assert rep.failed() and rep.rows[-1].result == "FAIL"
    assert gc.judge(gc.Row("d"), 1.0, 0.999, finite=False).result == "FAIL"
    assert gc.missing_modules(("numpy", "no_such_module_xyz", "no_such_pkg.sub")) == ["no_such_module_xyz",
                                                                                     "no_such_pkg.sub"]


def test_out_env_picks_the_table_path(gc, monkeypatch, tmp_path):
    monkeypatch.setenv("OUT", str(tmp_path))
    args = gc.parse_args(["--size", "160x120"])
    assert args.out == str(tmp_path / "gpu_check.md") and args.size == (160, 120)


# A None in sys.modules makes both ``import`` and ``find_spec`` see the module as absent.
BLOCKER = """
import sys
for name in ('onnx', 'onnxruntime', 'faiss', 'tensorrt', 'cuda', 'rclpy'):
    sys.modules[name] = None
sys.path.insert(0, {scripts!r})
import gpu_check
sys.exit(gpu_check.main())
"""


def test_runs_and_skips_cleanly_with_only_the_torch_part_installed(tmp_path):
    """No CUDA here: the CPU reference row runs, every GPU row is skipped with a reason, exit 0."""
    env = {**os.environ, "OUT": str(tmp_path), "PYTHONPATH": str(SCRIPT.parent.parent)}
    code = BLOCKER.format(scripts=str(SCRIPT.parent))
    proc = subprocess.run([sys.executable, "-c", code, "--size", "160x120", "--dim", "64", "--iters", "1"],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    md = (tmp_path / "gpu_check.md").read_text()
    assert "| torch fp32 CPU (reference) | ok |" in md
    rows = [line for line in md.splitlines() if line.startswith("| TensorRT")]
    assert len(rows) == 3 and all("| skipped |" in r and "missing python modules ['onnx', 'onnxruntime', "
                                  "'tensorrt']" in r for r in rows)
    assert proc.stdout.rstrip().splitlines()[-1].startswith("SKIPPED: no TensorRT row ran (missing python")
    import torch
    if not torch.cuda.is_available():
        assert md.count("torch sees no CUDA device") == 6


def _installed(mod: types.ModuleType) -> types.ModuleType:
    mod.__spec__ = importlib.machinery.ModuleSpec(mod.__name__, None)  # find_spec sees it as installed
    return mod


def test_tensorrt_part_accepts_the_older_cuda_cudart(gc, monkeypatch):
    """cuda-python before 12.6 has ``cuda.cudart`` and no ``cuda.bindings``; the backend accepts it, so
    the check must too (it asks the backend's import helper, not for a module name)."""
    import fake_tensorrt as ftrt
    from fake_cuda import FakeCudaRuntime
    monkeypatch.setitem(sys.modules, "tensorrt", _installed(ftrt.make_module()))
    cuda = _installed(types.ModuleType("cuda"))
    cuda.cudart = FakeCudaRuntime()  # the pre-12.6 path; no cuda.bindings
    monkeypatch.setitem(sys.modules, "cuda", cuda)
    monkeypatch.delitem(sys.modules, "cuda.bindings", raising=False)
    assert gc.tensorrt_blocker({"cuda": True}) == ""
    assert gc.tensorrt_blocker({}) == "no CUDA device"
    monkeypatch.setitem(sys.modules, "cuda", _installed(types.ModuleType("cuda")))  # neither: what to install
    assert "needs cuda-python: pip install cuda-python" in gc.tensorrt_blocker({"cuda": True})


@pytest.fixture
def model_onnx(tmp_path) -> Path:
    """The tiny ONNX model of test_export_engine_cache (contract 8 x 8 -> 4, as the fake engines)."""
    return write_tiny_onnx(tmp_path / "tiny.onnx")


def test_ort_reference_runs_on_the_cpu_provider_even_where_gpu_providers_exist(gc, model_onnx, monkeypatch):
    import onnxruntime

    from distilvpr_core.infer import ort_backend
    gpu_build = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: gpu_build)
    chosen = []
    real = ort_backend.choose_providers
    monkeypatch.setattr(ort_backend, "choose_providers", lambda req=None: chosen.append(real(req)) or chosen[-1])
    ref = gc.ort_reference(model_onnx)
    assert chosen == [["CPUExecutionProvider"]] and ref.providers == ["CPUExecutionProvider"]


def test_shell_entry_says_skipped_or_fails_when_no_tensorrt_row_ran(tmp_path):
    """scripts/gpu_check.sh with a TensorRT that cannot be imported: the last line says SKIPPED, and
    --require-tensorrt turns that into exit 3."""
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    (shadow / "tensorrt.py").write_text("raise ImportError('no TensorRT in this test')\n")
    env = {**os.environ, "PYTHON": sys.executable, "PYTHONPATH": str(shadow), "OUT": str(tmp_path / "out")}
    args = ["--size", "160x120", "--dim", "64", "--iters", "1", "--budget-s", "0"]
    sh = SCRIPT.with_suffix(".sh")
    proc = subprocess.run(["bash", str(sh), *args, "--require-tensorrt"], env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 3, proc.stdout[-2000:] + proc.stderr[-2000:]
    last = proc.stdout.rstrip().splitlines()[-1]
    assert last.startswith("SKIPPED: no TensorRT row ran (") and ("TensorRT is not installed" in last
                                                                  or "no CUDA device" in last)
