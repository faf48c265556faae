"""scripts/bench_synth.py end to end on a tiny dataset: runs, reuse, report."""
from __future__ import annotations

import importlib.util
import json
import sys

import torch
import yaml

from test_train_pipeline import make_tiny_native, tiny_config

torch.set_num_threads(1)


def _load_script(repo_root):
    spec = importlib.util.spec_from_file_location("bench_synth", repo_root / "scripts" / "bench_synth.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["bench_synth"] = mod  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(mod)
    return mod


def test_bench_runs_rows_and_writes_report(tmp_path, repo_root, monkeypatch):
    monkeypatch.chdir(repo_root)
    data = make_tiny_native(tmp_path / "data")
    common = [s for s in tiny_config(data, tmp_path / "unused") if not s.startswith("run.root")]
    cfg = {"base_config": "config/distil_synth.yaml", "runs_root": str(tmp_path / "runs"),
           "output": str(tmp_path / "bench.md"), "seeds": [0], "common": common,
           "variants": {"student (no distillation)": ["distill.method=none"],
                        "DistilVPR (full)": ["distill.method=distilvpr"]},
           "throughput": {"steps": 2, "warmup": 1}}
    (tmp_path / "bench.yaml").write_text(yaml.safe_dump(cfg))
    bench = _load_script(repo_root)
    assert bench.main(["--config", str(tmp_path / "bench.yaml")]) == 0
    state = json.loads((tmp_path / "runs" / "results.json").read_text())
    assert set(state["runs"]) == {"seed0/teacher", "seed0/student (no distillation)", "seed0/DistilVPR (full)"}
    assert "teacher_image" in state["results"]["seed0/teacher"]
    assert state["throughput"]["plain_s"] > 0 and state["throughput"]["ratio"] > 0
    report = (tmp_path / "bench.md").read_text()
    assert "| best val R@1 |" in report and "| DistilVPR (full) |" in report and "| teacher image branch alone |" in report
    assert "ratio:" in report and "| *chance: descriptors without information* |" in report
    # Students reused the teacher's cache instead of training another teacher.
    for key in ("seed0/student (no distillation)", "seed0/DistilVPR (full)"):
        run = tmp_path / "runs" / state["runs"][key].split("/")[-1]
        assert not (run / "teacher_best.pt").exists() and (run / "student_best.pt").is_file()
    # A second invocation reuses every finished run.
    assert bench.main(["--config", str(tmp_path / "bench.yaml")]) == 0
    again = json.loads((tmp_path / "runs" / "results.json").read_text())
    assert again["runs"] == state["runs"]
    assert "## R@1 by test pair" in report and "| DistilVPR (full) | " in report.split("by test pair")[1]
    # A run evaluated before R@1 was kept per pair gets only its eval stage again.
    key = "seed0/DistilVPR (full)"
    eval_json = tmp_path / "runs" / state["runs"][key].split("/")[-1] / "eval.json"
    old = json.loads(eval_json.read_text())
    want = old["student"].pop("R@1 by pair")
    eval_json.write_text(json.dumps(old))
    assert bench.main(["--config", str(tmp_path / "bench.yaml")]) == 0
    third = json.loads((tmp_path / "runs" / "results.json").read_text())
    assert third["results"][key]["student"]["R@1 by pair"] == want
    assert third["seconds"] == again["seconds"] and third["runs"] == state["runs"]
    assert bench.main(["--config", str(tmp_path / "bench.yaml"), "--only", "nope"]) == 2
    # Rewriting the report keeps naming the command that produced the runs.
    assert bench.main(["--config", str(tmp_path / "bench.yaml"), "--report-only"]) == 0
    assert f"Produced by `python scripts/bench_synth.py --config {tmp_path / 'bench.yaml'}`" in \
        (tmp_path / "bench.md").read_text()
