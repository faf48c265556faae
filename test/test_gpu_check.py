"""scripts/gpu_check.py: its CPU-side logic, and that it runs and skips cleanly without CUDA/TensorRT."""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

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
                                  "'tensorrt', 'cuda.bindings']" in r for r in rows)
    import torch
    if not torch.cuda.is_available():
        assert md.count("torch sees no CUDA device") == 6
