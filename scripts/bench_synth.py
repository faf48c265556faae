#!/usr/bin/env python3
"""Run the synthetic DistilVPR benchmark table and write docs/benchmark_synth.md.

    .venv/bin/python scripts/bench_synth.py --config config/bench_synth.yaml \
        [--seeds 0] [--only "DistilVPR (full)" --only "student (no distillation)"] [--set common...]

Per seed: one teacher run (train teacher, cache its embeddings, evaluate the
teacher and its image branch), then one student run per variant reusing that
teacher's cache.  Finished runs (eval.json present) are reused, unfinished
ones resumed, so the benchmark can be interrupted and continued.  Results go
to <runs_root>/results.json and the markdown table (mean ± std over the seeds
that finished; n is shown).  It also measures the cost of a distillation step
with cached teacher embeddings against a plain student step on the same batch.
"""
from __future__ import annotations

import argparse
import json
import platform
import re
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # run from a checkout without installing

from distilvpr_core.atomic import write_text_atomic  # noqa: E402
from distilvpr_core.config import load_config, spec  # noqa: E402
from distilvpr_core.errors import UserError  # noqa: E402


@dataclass
class ThroughputConfig:
    steps: int = field(default=10, metadata=spec("timed steps per kind", ge=1))
    warmup: int = field(default=2, metadata=spec("untimed steps first", ge=0))


@dataclass
class BenchConfig:
    base_config: str = field(default="config/distil_synth.yaml", metadata=spec("distil config of every run"))
    runs_root: str = field(default="runs/bench_synth", metadata=spec("where the runs and results.json go"))
    output: str = field(default="docs/benchmark_synth.md", metadata=spec("markdown report"))
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2], metadata=spec("seeds"))
    common: list[str] = field(default_factory=list, metadata=spec("--set overrides of every run"))
    variants: dict[str, list[str]] = field(default_factory=dict, metadata=spec("student rows"))
    throughput: ThroughputConfig = field(default_factory=ThroughputConfig)
    notes: list[str] = field(default_factory=list, metadata=spec("paragraphs added to the report"))


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def _distil_cfg(bench: BenchConfig, overrides: Sequence[str]):
    from distilvpr_core.train import DistilRunConfig
    return load_config(DistilRunConfig, REPO / bench.base_config, [*bench.common, *overrides])


def _run(bench: BenchConfig, state: dict, key: str, overrides: list[str]) -> Path:
    """Run (or reuse / resume) one distil run; returns its run directory."""
    from distilvpr_core.train import run_pipeline
    run_dir = state["runs"].get(key)
    reeval = False
    if run_dir and (Path(run_dir) / "eval.json").is_file():
        if _has_pair_recall(Path(run_dir) / "eval.json"):
            print(f"[bench] {key}: done earlier in {run_dir}")
            return Path(run_dir)
        # Evaluated before R@1 was kept per test pair: redo only the eval stage.
        print(f"[bench] {key}: re-evaluating {run_dir} for R@1 by test pair")
        reeval = True
    extra = [f"run.root={bench.runs_root}", f"run.name={slug(key)}"]
    if run_dir and (Path(run_dir) / "config.yaml").is_file():
        extra.append(f"run.resume={run_dir}")
    if reeval:
        extra.append("run.stages=[eval]")
    cfg = _distil_cfg(bench, [*overrides, *extra])
    t0 = time.perf_counter()
    path = run_pipeline(cfg, ["scripts/bench_synth.py", key, *bench.common, *overrides])
    state["runs"][key] = str(path)
    if not reeval:  # the seconds column is the run's training + evaluation time
        state["seconds"][key] = state["seconds"].get(key, 0.0) + time.perf_counter() - t0
    return path


def _has_pair_recall(eval_json: Path) -> bool:
    res = json.loads(eval_json.read_text())
    return all("R@1 by pair" in v for k, v in res.items() if isinstance(v, dict))


def measure_throughput(bench: BenchConfig, teacher_run: Path, seed: int) -> dict[str, float]:
    """Median seconds of a plain student step and of a DistilVPR step (cached teacher
    embeddings) on the same batch, interleaved so load changes hit both alike."""
    import torch
    from distilvpr_core.data.datasets import FrameIndex, PairBatchSampler, PlaceDataset, collate, open_traversals, select
    from distilvpr_core.distill import BatchHardTripletLoss, build_distill_loss
    from distilvpr_core.models import build_student
    from distilvpr_core.train import place_masks, seed_everything
    cfg = _distil_cfg(bench, ["distill.method=distilvpr"])
    if cfg.run.threads:
        torch.set_num_threads(cfg.run.threads)
    seed_everything(seed)
    frames = FrameIndex(select(open_traversals(cfg.data), "train", cfg.data.root))
    ds = PlaceDataset(frames, cfg.data.contract(), cfg.aug, None, seed)
    idx = next(iter(PairBatchSampler(frames, cfg.train_student.pairs_per_batch, cfg.task.pos_radius_m, seed)))
    batch = collate([ds[i] for i in idx])
    cache = torch.load(teacher_run / "teacher_cache.pt", weights_only=True)["embeddings"]
    teacher = cache[batch["index"]]
    pos = torch.as_tensor(frames.positions, dtype=torch.float32)[batch["index"]]
    pmask, nmask = place_masks(pos, cfg.task.pos_radius_m, cfg.task.neg_radius_m)
    model = build_student(cfg.student).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-5)
    triplet, distill = BatchHardTripletLoss(cfg.task.margin, cfg.task.swap), build_distill_loss(cfg.distill)

    def step(with_distill: bool) -> float:
        t0 = time.perf_counter()
        emb = model(batch["image"])
        loss, _ = triplet(emb, pmask, nmask)
        if with_distill:
            loss = loss + distill(emb, teacher)[0]
        opt.zero_grad()
        loss.backward()
        opt.step()
        return time.perf_counter() - t0
    for _ in range(bench.throughput.warmup):
        step(False), step(True)
    plain, dist = [], []
    for _ in range(bench.throughput.steps):
        plain.append(step(False))
        dist.append(step(True))
    p, d = statistics.median(plain), statistics.median(dist)
    return {"batch": len(idx), "plain_s": p, "distill_s": d, "ratio": d / p,
            "threads": torch.get_num_threads()}


def _fmt(values: list[float]) -> str:
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.1f}"
    return f"{statistics.mean(values):.1f} ± {statistics.stdev(values):.1f}"


def _chance_r1(bench: BenchConfig) -> float | None:
    """Expected R@1 of uninformative descriptors on the benchmark's test traversals."""
    from distilvpr_core.data.datasets import open_traversals, select
    from distilvpr_core.recall import chance_recall_at_1
    cfg = _distil_cfg(bench, [])
    try:
        tests = select(open_traversals(cfg.data), "test", cfg.data.root)
    except UserError:
        return None  # dataset not here (report rewritten elsewhere)
    return chance_recall_at_1([t.positions for t in tests], cfg.eval.radius_m)


def _best_val(run_dir: str | None, branch: str) -> float | None:
    """Best validation R@1 of the stage that trained ``branch`` (None: not trained by validation)."""
    path = Path(run_dir) / "metrics.json" if run_dir else None
    if branch not in ("student", "teacher") or path is None or not path.is_file():
        return None  # teacher_image: a branch of the teacher, never selected on its own
    history = json.loads(path.read_text()).get(branch, [])
    return max((row["val_R@1"] for row in history if "val_R@1" in row), default=None)


def _pair_table(bench: BenchConfig, state: dict, rows: list[tuple[str, str, str]]) -> list[str]:
    """Markdown: mean R@1 over the seeds for every (query -> database) test pair."""
    per_row: dict[str, dict[str, list[float]]] = {}
    pairs: list[str] = []
    for label, key, branch in rows:
        for seed in bench.seeds:
            res = state["results"].get(f"seed{seed}/{key}", {}).get(branch) or {}
            for pair, r1 in res.get("R@1 by pair", {}).items():
                per_row.setdefault(label, {}).setdefault(pair, []).append(r1)
                if pair not in pairs:
                    pairs.append(pair)
    if not pairs:
        return []
    short = [p.replace("test_", "") for p in pairs]
    out = ["", "## R@1 by test pair", "",
           "Query traversal -> database traversal; mean over the seeds that finished.", "",
           "| method | " + " | ".join(short) + " |", "|---|" + "---|" * len(pairs)]
    for label, _, _ in rows:
        vals = per_row.get(label, {})
        out.append(f"| {label} | " + " | ".join(
            f"{statistics.mean(vals[p]):.1f}" if vals.get(p) else "–" for p in pairs) + " |")
    return out


def write_report(bench: BenchConfig, state: dict, command: str) -> str:
    """The markdown report from whatever finished so far."""
    rows = [("teacher (camera + LiDAR)", "teacher", "teacher"),
            ("teacher image branch alone", "teacher", "teacher_image")]
    rows += [(name, name, "student") for name in bench.variants]
    lines = ["# Synthetic benchmark: DistilVPR and baselines", "",
             f"Produced by `{command}` (config `{bench.base_config}` + the `common` overrides of "
             "`config/bench_synth.yaml`).", "",
             "Test protocol: every ordered pair of test traversals, cosine top-25, true neighbours "
             "within 25 m; mean ± sample std over the seeds that finished (n). Numbers in percent. "
             "*best val R@1* is the model-selection score (validation traversal as queries against "
             "the training traversals), not a test result: it is the maximum over epochs.", "",
             "| method | R@1 | R@1% | R@5 | best val R@1 | n seeds |", "|---|---|---|---|---|---|"]
    for label, key, branch in rows:
        r1, r1p, r5, val = [], [], [], []
        for seed in bench.seeds:
            res = state["results"].get(f"seed{seed}/{key}", {}).get(branch)
            if res:
                r1.append(res["R@1"])
                r1p.append(res["R@1%"])
                r5.append(res.get("R@5", float("nan")))
                best = _best_val(state["runs"].get(f"seed{seed}/{key}"), branch)
                if best is not None:
                    val.append(best)
        lines.append(f"| {label} | {_fmt(r1)} | {_fmt(r1p)} | {_fmt(r5)} | {_fmt(val)} | {len(r1)} |")
    chance = _chance_r1(bench)
    if chance is not None:
        lines.append(f"| *chance: descriptors without information* | {chance:.1f} | | | | |")
    lines += _pair_table(bench, state, rows)
    tp = state.get("throughput")
    if tp:
        lines += ["", "## Step cost with cached teacher embeddings", "",
                  f"Batch of {tp['batch']} images, {tp['threads']} CPU thread(s), median of interleaved steps "
                  "(forward + triplet [+ DistilVPR loss] + backward + Adam):", "",
                  f"- plain student step: {1000 * tp['plain_s']:.1f} ms",
                  f"- DistilVPR step: {1000 * tp['distill_s']:.1f} ms",
                  f"- ratio: {tp['ratio']:.3f} (target <= 1.15)"]
    if bench.notes:
        lines += ["", "## Notes", ""] + [f"{n}\n" for n in bench.notes]
    lines += ["", "## Scale", "", f"Seeds requested: {bench.seeds}. Overrides of every run:", ""]
    lines += [f"- `{o}`" for o in bench.common]
    lines += ["", "## Runs", "", "| run | seconds | directory |", "|---|---|---|"]
    for key, path in sorted(state["runs"].items()):
        lines.append(f"| {key} | {state['seconds'].get(key, 0):.0f} | `{path}` |")
    lines += ["", f"Machine: {platform.processor() or platform.machine()}, {platform.platform()}; "
              f"generated {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.", ""]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="config/bench_synth.yaml", help="benchmark YAML")
    parser.add_argument("--seeds", type=int, nargs="+", help="run only these seeds (default: the config's)")
    parser.add_argument("--only", action="append", default=[], metavar="ROW",
                        help="run only this student row (repeatable; the teacher always runs)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a benchmark config value, e.g. --set output=/tmp/b.md")
    parser.add_argument("--report-only", action="store_true", help="rewrite the report from results.json")
    args = parser.parse_args(argv)
    try:
        bench = load_config(BenchConfig, REPO / args.config if not Path(args.config).is_absolute()
                            else args.config, args.overrides)
        if args.seeds:
            bench.seeds = args.seeds
        unknown = [r for r in args.only if r not in bench.variants]
        if unknown:
            raise UserError(f"--only {unknown[0]!r}: not a row of {args.config}; rows: {list(bench.variants)}")
        root = Path(bench.runs_root)
        state_path = root / "results.json"
        state = json.loads(state_path.read_text()) if state_path.is_file() else {}
        for k in ("runs", "results", "seconds"):
            state.setdefault(k, {})
        command = "python scripts/bench_synth.py " + " ".join(argv if argv is not None else sys.argv[1:])
        if not args.report_only:  # the report names the command that ran the runs, not a rewrite
            state["command"] = command

        def save() -> None:
            write_text_atomic(state_path, json.dumps(state, indent=2) + "\n")
            write_text_atomic(REPO / bench.output if not Path(bench.output).is_absolute() else bench.output,
                              write_report(bench, state, state.get("command", command)))
        if not args.report_only:
            for seed in bench.seeds:
                seed_sets = [f"run.seed={seed}"]
                t_run = _run(bench, state, f"seed{seed}/teacher",
                             [*seed_sets, "run.stages=[teacher, cache, eval]"])
                state["results"][f"seed{seed}/teacher"] = json.loads((t_run / "eval.json").read_text())
                save()
                if seed == bench.seeds[0] and "throughput" not in state:
                    state["throughput"] = measure_throughput(bench, t_run, seed)
                    print(f"[bench] throughput {state['throughput']}")
                    save()
                for name, overrides in bench.variants.items():
                    if args.only and name not in args.only:
                        continue
                    key = f"seed{seed}/{name}"
                    s_run = _run(bench, state, key, [*seed_sets, *overrides, "run.stages=[student, eval]",
                                                     f"run.teacher_cache={t_run / 'teacher_cache.pt'}"])
                    state["results"][key] = json.loads((s_run / "eval.json").read_text())
                    save()
        save()
        print(f"[bench] report written to {bench.output}")
    except UserError as exc:
        print(f"bench_synth: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
