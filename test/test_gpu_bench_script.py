"""scripts/gpu_bench.sh, the one prepared run a lent GPU gets: a CPU dry run on a tiny
split town (ALLOW_CPU=1), so a broken script is found here and not in GPU minutes."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

BENCH = """base_config: config/distil_synth.yaml
runs_root: {runs}
output: {out}/unused.md
title: dry run
seeds: [0]
common:
  - data.root={data}
  - data.towns=[{towns}]
  - data.test_towns=[town_2]
  - eval.town_map=train_noon
  - data.input_size=[64, 48]
  - data.cache_images=true
  - teacher.bev.cells=16
  - train_teacher.epochs=1
  - train_teacher.pairs_per_batch=4
  - train_student.epochs=1
  - train_student.pairs_per_batch=4
  - train_student.warmup_steps=2
  - eval.batch_size=16
  - run.threads=1
  - run.device=cpu
variants:
  no_distillation: [distill.method=none]
  distilvpr: [distill.method=distilvpr]
throughput:
  steps: 0
  warmup: 0
"""


def _run(repo_root, tmp_path, deadline_s: int) -> subprocess.CompletedProcess:
    data, runs, out = tmp_path / "data", tmp_path / "runs", tmp_path / "out"
    towns = tmp_path / "towns"
    cfg = tmp_path / "bench.yaml"
    cfg.write_text(BENCH.format(runs=runs, out=out, data=data, towns=towns))
    small = ("--set route.frames=6 --set camera.width=64 --set camera.height=48 --set lidar.azimuth_bins=64 "
             "--set output.bags=false --set output.oxford=false --set output.difficulty_report=false")
    env = dict(os.environ, ALLOW_CPU="1", PYTHON=sys.executable, PYTHONPATH=str(repo_root),
               OUT=str(out), DATA=str(data), RUNS=str(runs), SEEDS="0", BENCH_CONFIG=str(cfg),
               TOWN_CONFIG="config/synth_tiny.yaml", TOWN_SEEDS="1-2", TOWNS_DATA=str(towns), TOWN_SETS=small,
               SYNTH_CONFIG="config/synth_split_tiny.yaml", SPACING="6", DEADLINE_S=str(deadline_s))
    return subprocess.run(["bash", "scripts/gpu_bench.sh", "no_distillation", "distilvpr"],
                          cwd=repo_root, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_dry_run_writes_the_merged_report_and_the_seed_logs(repo_root, tmp_path):
    proc = _run(repo_root, tmp_path, 100000)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = tmp_path / "out"
    names = {p.name for p in out.iterdir()}
    assert {"benchmark_synth_gpu.md", "benchmark_synth_gpu.json", "results_seed0.json",
            "gpu_bench.log", "seed_logs.txt"} <= names
    # What comes back from a device call: at most 8 files.
    assert len(names) <= 8
    protos = json.loads((out / "benchmark_synth_gpu.json").read_text())["protocols"]
    rows = protos["deployment"]["rows"]
    assert {"teacher", "teacher_image", "no_distillation", "distilvpr"} <= set(rows)
    assert {"teacher", "no_distillation", "distilvpr"} <= set(protos["unseen_town"]["rows"])
    assert (tmp_path / "towns" / "town_2" / "dataset.json").is_file()
    logs = (out / "seed_logs.txt").read_text()
    assert logs.startswith("== seed 0") and logs.count("[eval] student") == 2 and "\r" not in logs
    assert "town: " in (out / "gpu_bench.log").read_text() and "towns: " in (out / "gpu_bench.log").read_text()
    # A deadline that leaves no time after the town stops before training, saying so.
    late = _run(repo_root, tmp_path, 1)
    assert late.returncode == 1 and "no time left for training" in late.stdout
