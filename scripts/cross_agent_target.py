#!/usr/bin/env python3
"""What the cross-agent term asks of a trained student: is its target informative?

DistilVPR's cross-agent term pulls the student-student relation R(s, s) towards
the detached student-teacher relation R(s, t) (cosine similarities of
L2-normalised embeddings, distill/cross_agent.py).  R(s, t) compares vectors
of two networks' own output spaces, and no term of the loss aligns those
spaces, so unless the student's space happens to line up with the teacher's,
R(s, t) carries no place structure and the term only pushes the student's
embeddings apart (towards R(s, t) ~ 0).  This script measures that on real
runs: it embeds the training frames with a student checkpoint, takes the
teacher's cached embeddings of the same frames, and over random batches of
``--batch`` frames reports

- ``diag_cos``: mean cos(s_i, t_i), the same frame in both spaces (1 if aligned);
- ``offdiag_st``: mean and std of cos(s_i, t_j), i != j (the term's target);
- ``corr_st_tt``: Pearson correlation of R(s, t) and R(t, t) off the diagonal
  (how much of the teacher's place structure the target carries);
- ``corr_ss_tt``: the same for the student's own R(s, s) (what the student learnt).

    python scripts/cross_agent_target.py RUN_DIR [RUN_DIR ...] --out docs/bench_cpu/cross_agent_target.json

Each RUN_DIR is a student run of the benchmark (its ``config.yaml`` names the
teacher cache; the data settings come from ``--bench``); the JSON maps each run
directory to its numbers.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from distilvpr_core.foundation.atomic import write_text_atomic  # noqa: E402
from distilvpr_core.foundation.errors import UserError  # noqa: E402


def _offdiag(m: np.ndarray) -> np.ndarray:
    return m[~np.eye(m.shape[0], dtype=bool)]


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True).clip(1e-12)


def relation_stats(s: np.ndarray, t: np.ndarray, batch: int, batches: int, seed: int = 0) -> dict[str, float]:
    """The statistics above over ``batches`` random batches; s [N, D], t [N, D] row-aligned."""
    s, t = _unit(s.astype(np.float64)), _unit(t.astype(np.float64))
    rng = np.random.default_rng(seed)
    rows: dict[str, list[float]] = {"diag_cos": [], "offdiag_st_mean": [], "offdiag_st_std": [],
                                    "corr_st_tt": [], "corr_ss_tt": []}
    for _ in range(batches):
        idx = rng.choice(len(s), size=min(batch, len(s)), replace=False)
        sb, tb = s[idx], t[idx]
        st, tt, ss = sb @ tb.T, tb @ tb.T, sb @ sb.T
        rows["diag_cos"].append(float(np.mean(np.diag(st))))
        rows["offdiag_st_mean"].append(float(_offdiag(st).mean()))
        rows["offdiag_st_std"].append(float(_offdiag(st).std()))
        rows["corr_st_tt"].append(float(np.corrcoef(_offdiag(st), _offdiag(tt))[0, 1]))
        rows["corr_ss_tt"].append(float(np.corrcoef(_offdiag(ss), _offdiag(tt))[0, 1]))
    return {k: round(float(np.mean(v)), 4) for k, v in rows.items()}


def student_and_teacher(run_dir: Path, bench_config: Path) -> tuple[np.ndarray, np.ndarray]:
    """(student embeddings, cached teacher embeddings) of the run's training frames, row-aligned.

    The data settings come from the benchmark config (the same for every run; a
    run's own config.yaml may hold keys of an older schema), the teacher cache
    from the run's config.yaml."""
    import torch
    import yaml
    from distilvpr_core.foundation.config import load_config
    from distilvpr_core.data.datasets import FrameIndex, PlaceDataset, select
    from distilvpr_core.evaluation.vpr import embed_frames, embedder_for
    from distilvpr_core.models.checkpoint import load_student
    from distilvpr_core.data.traversals import open_split_traversals
    from distilvpr_core.train.pipeline import DistilRunConfig, load_cache
    if not (run_dir / "student_best.pt").is_file() or not (run_dir / "config.yaml").is_file():
        raise UserError(f"{run_dir}: not a finished student run (needs config.yaml and student_best.pt)")
    cache = (yaml.safe_load((run_dir / "config.yaml").read_text()).get("run") or {}).get("teacher_cache")
    if not cache:
        raise UserError(f"{run_dir}/config.yaml: no run.teacher_cache (not a student run of the benchmark)")
    bench = yaml.safe_load(bench_config.read_text())
    cfg = load_config(DistilRunConfig, REPO / bench["base_config"], [*bench["common"], f"run.teacher_cache={cache}"])
    trav, _ = open_split_traversals(cfg.data)   # the frames the student trained on
    frames = FrameIndex(select(trav, "train", cfg.data.root))
    teacher = load_cache(argparse.Namespace(cfg=cfg, run_dir=run_dir), frames).numpy()
    model, _ = load_student(run_dir / "student_best.pt")
    fn, _ = embedder_for(model, "student")
    ds = PlaceDataset(frames, cfg.data.contract(), None, None)
    student = embed_frames(fn, ds, cfg.eval.batch_size, torch.device("cpu"), 0, f"embed {run_dir.name}")
    return student, teacher


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path, help="student run directories of the benchmark")
    ap.add_argument("--bench", type=Path, default=REPO / "config/bench_synth.yaml",
                    help="benchmark config whose data settings the runs used")
    ap.add_argument("--batch", type=int, default=32, help="frames per batch (the benchmark's 16 pairs = 32)")
    ap.add_argument("--batches", type=int, default=200, help="random batches averaged")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    ap.add_argument("--out", type=Path, help="write the numbers as JSON here (atomically)")
    args = ap.parse_args(argv)
    import torch
    torch.set_num_threads(args.threads)
    out: dict[str, dict[str, float]] = {}
    try:
        for run in args.runs:
            s, t = student_and_teacher(run, args.bench)
            out[str(run)] = relation_stats(s, t, args.batch, args.batches)
            print(run, json.dumps(out[str(run)]))
    except UserError as exc:
        print(f"cross_agent_target: error: {exc}", file=sys.stderr)
        return 2
    if args.out:
        doc = {"command": "python scripts/cross_agent_target.py " + " ".join(argv or sys.argv[1:]), "runs": out}
        write_text_atomic(args.out, json.dumps(doc, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
