"""`distilvpr demo`: the whole product on the embedded synthetic town.

Stages, each a real `distilvpr` subcommand run as a child process (so the
printed commands are exactly what a user would type) and each skipped when
its output already exists (``--fresh`` redoes everything):

1. town     ``distilvpr synth --config config/synth_demo.yaml``
2. distil   ``distilvpr distil``: teacher -> cache -> DistilVPR student -> eval
3. nodistil ``distilvpr distil`` with ``distill.method=none`` (the baseline)
   (2 and 3 once per ``--seeds`` value; the later stages use the first seed's student)
4. export   ``distilvpr export``: DistilVPR student -> ONNX
5. map      ``distilvpr map build`` from the map traversal
6. replay   ``distilvpr replay-eval`` of another traversal's rosbag through
            the real localizer node over DDS (plus the offline path)
7. summary  the headline table, printed and written to ``OUT/summary.md``
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from ..foundation.atomic import write_text_atomic
from ..foundation.errors import UserError

HELP = "run the end-to-end demo: synth town -> distil -> export -> map -> node replay -> table"

REPO = Path(__file__).resolve().parents[2]  # the source checkout: distilvpr_core/app/demo.py


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``distilvpr demo``: output folder, --fresh, the two configs, map/query drives, seeds."""
    parser.add_argument("--out", default="demo_out", metavar="DIR",
                        help="working directory for every stage's output (default: demo_out)")
    parser.add_argument("--fresh", action="store_true", help="delete DIR first and redo every stage")
    parser.add_argument("--town-config", default=str(REPO / "config" / "synth_demo.yaml"), metavar="FILE",
                        help="synthetic town config (default: config/synth_demo.yaml)")
    parser.add_argument("--distil-config", default=str(REPO / "config" / "distil_demo.yaml"), metavar="FILE",
                        help="training config (default: config/distil_demo.yaml)")
    parser.add_argument("--map-traversal", default="test_noon",
                        help="traversal the prior map is built from (default: test_noon)")
    parser.add_argument("--query-traversal", default="test_dusk",
                        help="traversal whose rosbag is replayed through the node (default: test_dusk)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], metavar="N",
                        help="train both students with each of these seeds and report mean ± std "
                             "(default: 0; README's spread: --seeds 0 1 2)")


class Stage:
    """One demo stage: a command, the file that proves it is done, a label."""

    def __init__(self, name: str, done: Path, argv: list[str], env: dict[str, str] | None = None):
        self.name, self.done, self.argv, self.env = name, done, argv, env


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "distilvpr_core.app.cli", *args]


def _run_dir(runs: Path, name: str) -> Path | None:
    found = sorted(runs.glob(f"*-{name}")) if runs.is_dir() else []
    return found[-1] if found else None


def _distil_stage(out: Path, cfg: str, name: str, extra: list[str]) -> Stage:
    runs = out / "runs"
    existing = _run_dir(runs, name)
    resume = ["--set", f"run.resume={existing}"] if existing is not None else []
    done = (existing / "eval.json") if existing is not None else runs / f"<new>-{name}" / "eval.json"
    argv = _cli("distil", "--config", cfg, "--set", f"data.root={out / 'town'}",
                "--set", f"run.root={runs}", "--set", f"run.name={name}", *extra, *resume)
    return Stage(name, done, argv)


def _ros_env() -> dict[str, str]:
    from ..foundation.local_dds import local_dds_env
    return local_dds_env(dict(os.environ))  # DDS never leaves this machine


def _run_name(kind: str, seed: int) -> str:
    """Run name of a distil stage; seed 0 keeps the plain name."""
    return kind if seed == 0 else f"{kind}_seed{seed}"


def _stages(args: argparse.Namespace, out: Path) -> list[Stage]:
    town = out / "town"
    stages = [Stage("town", town / "dataset.json",
                    _cli("synth", "--config", args.town_config, "--out", str(town), "--overwrite"))]
    for seed in args.seeds:
        seed_set = ["--set", f"run.seed={seed}"]
        stages.append(_distil_stage(out, args.distil_config, _run_name("distilvpr", seed), seed_set))
        # The baseline student reuses this seed's teacher cache (same data, same seed).
        stages.append(_distil_stage(out, args.distil_config, _run_name("nodistill", seed),
                                    [*seed_set, "--set", "distill.method=none",
                                     "--set", "run.stages=[student,eval]"]))
    return stages


def _late_stages(args: argparse.Namespace, out: Path) -> list[Stage]:
    town = out / "town"
    run = _run_dir(out / "runs", _run_name("distilvpr", args.seeds[0]))
    if run is None or not (run / "student_best.pt").is_file():
        raise UserError(f"{out / 'runs'}: the DistilVPR run left no student_best.pt; rerun with --fresh")
    onnx = out / "student.onnx"
    return [
        Stage("export", onnx, _cli("export", "--checkpoint", str(run / "student_best.pt"),
                                   "--out", str(onnx), "--overwrite")),
        Stage("map", out / "map" / "schema.json",
              _cli("map", "build", "--model", str(onnx), "--dataset", str(town),
                   "--traversal", args.map_traversal, "--out", str(out / "map"), "--overwrite")),
        Stage("replay", out / "replay" / "comparison.json",
              _cli("replay-eval", "--bag", str(town / "bags" / args.query_traversal),
                   "--map", str(out / "map"), "--model", str(onnx), "--out", str(out / "replay"),
                   "--compare-offline"), env=_ros_env()),
    ]


def _execute(stage: Stage, index: int, total: int) -> float:
    if stage.done.is_file():
        print(f"[demo {index}/{total}] {stage.name}: done already ({stage.done}), skipped", flush=True)
        return 0.0
    shown = " ".join(["distilvpr", *stage.argv[3:]])
    print(f"\n[demo {index}/{total}] {stage.name}: {shown}", flush=True)
    start = time.monotonic()
    res = subprocess.run(stage.argv, env=stage.env, cwd=REPO)
    if res.returncode != 0:
        raise UserError(f"stage '{stage.name}' failed (exit {res.returncode}); its output is above. "
                        f"Fix it and rerun: finished stages are skipped")
    took = time.monotonic() - start
    print(f"[demo {index}/{total}] {stage.name}: finished in {took:.0f} s", flush=True)
    return took


def _read(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


PROTOCOL_ROWS = (("unseen_places", "P (unseen places)"), ("deployment", "D (deployment, map = train_noon)"))


def _r1(res: dict[str, Any], protocol: str) -> float:
    """R@1 (percent) of one model entry of eval.json under ``protocol`` (whole test set without a split)."""
    return float(res.get("protocols", {}).get(protocol, res)["R@1"])


def _by_condition(res: dict[str, Any], protocol: str) -> dict[str, float]:
    """R@1 per query condition ('night/clear/summer' -> percent) of one model under ``protocol``
    ({} when eval.json has none: a dataset without a split)."""
    return dict(res.get("protocols", {}).get(protocol, {}).get("R@1 by query condition", {}))


def summarise(out: Path, seeds: list[int] | None = None) -> dict[str, Any]:
    """Collect the headline numbers from the files the stages wrote.

    Per protocol and model, one R@1 per seed (lists in seed order); ``D_by_condition``: per
    model and query condition, protocol D's R@1 per seed."""
    seeds = seeds or [0]
    per: dict[str, dict[str, list[float]]] = {}
    by_cond: dict[str, dict[str, list[float]]] = {}
    for seed in seeds:
        dv = _read(_run_dir(out / "runs", _run_name("distilvpr", seed)) / "eval.json")
        nd = _read(_run_dir(out / "runs", _run_name("nodistill", seed)) / "eval.json")
        for proto, _ in PROTOCOL_ROWS:
            row = per.setdefault(proto, {})
            for key, res in (("teacher", dv["teacher"]), ("teacher_image", dv["teacher_image"]),
                             ("student_nodistill", nd["student"]), ("student_distilvpr", dv["student"])):
                row.setdefault(key, []).append(_r1(res, proto))
        for key, res in (("teacher", dv["teacher"]), ("student_nodistill", nd["student"]),
                         ("student_distilvpr", dv["student"])):
            for cond, v in _by_condition(res, "deployment").items():
                by_cond.setdefault(key, {}).setdefault(cond, []).append(float(v))
        test_traversals = dv["test_traversals"]
    ros = _read(out / "replay" / "ros" / "metrics.json")
    offline = _read(out / "replay" / "offline" / "metrics.json")
    m = ros["metrics"]
    lat = m["latency_s"]
    return {
        "seeds": seeds,
        "R@1": per,
        "D_by_condition": by_cond,
        "test_traversals": test_traversals,
        "node_recall@1": m["recall_at_n"]["1"],
        "offline_recall@1": offline["metrics"]["recall_at_n"]["1"],
        "node_max_recall_at_100_precision": m["max_recall_at_100_precision"],
        # Per-stage figures of the offline path on the same bag (loopeval/stages.py); absent
        # when the map has no local features.
        "stages": {name: {"max_recall_at_100_precision": st["max_recall_at_100_precision"],
                          "accepted": st["operating_point"]["accepted"],
                          "correct": st["operating_point"]["correct"]}
                   for name, st in ((offline["metrics"].get("stages") or {}).get("stages") or {}).items()},
        # What the node itself published through ROS: loop closures (correct = within the
        # radius) and, on a map with 3D points, metric poses more than 5 m off.
        "node_published": _published(m),
        "node_latency_p50_ms": None if lat["median"] is None else 1000 * lat["median"],
        "node_latency_p99_ms": None if lat["p99"] is None else 1000 * lat["p99"],
        "replay_complete": ros.get("complete", False),
        "report": str(out / "replay" / "ros" / "report.md"),
        "plots": sorted(str(p) for p in (out / "replay" / "ros").glob("*.png")),
    }


def _published(m: dict[str, Any]) -> dict[str, Any]:
    """Closures the node published (ROS metrics.json): accepted, correct, wrong metric poses."""
    op = m.get("operating_point") or {}
    pub = ((m.get("pose") or {}).get("stages") or {}).get("published") or {}
    return {"accepted": op.get("accepted"), "correct": op.get("accepted_correct"),
            "poses": pub.get("poses"), "wrong_poses": pub.get("wrong_closures"),
            "poses_within_0.5m_5deg": (pub.get("share_of_poses") or {}).get("0.5m_5deg")}


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.1f} %"


def _spread(values: list[float]) -> str:
    """'42.1 %' for one value, 'mean ± std % (a / b / c)' for several."""
    if len(values) == 1:
        return f"{values[0]:.1f} %"
    import statistics
    each = " / ".join(f"{v:.1f}" for v in values)
    return f"{statistics.mean(values):.1f} ± {statistics.stdev(values):.1f} % ({each})"


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def render(s: dict[str, Any]) -> str:
    """The headline table as Markdown; R@1 of eval.json is already in percent."""
    names = (("teacher", "teacher (camera + LiDAR)"), ("teacher_image", "teacher image branch alone"),
             ("student_nodistill", "student without distillation"), ("student_distilvpr", "DistilVPR student"))
    lines = ["| result | value |", "|---|---|"]
    for proto, label in PROTOCOL_ROWS:
        for key, name in names:
            lines.append(f"| {name}, R@1 {label} | {_spread(s['R@1'][proto][key])} |")
    for key, name in names:   # the per-condition D row: where the student still fails
        conds = s.get("D_by_condition", {}).get(key)
        if conds:
            lines.append(f"| {name}, R@1 D per query condition | "
                         + "; ".join(f"{c} {_mean(v):.1f}" for c, v in sorted(conds.items())) + " % |")
    lines += [
        f"| node Recall@1 on the replayed bag (offline path) | {_pct(s['node_recall@1'])} "
        f"({_pct(s['offline_recall@1'])}) |",
        f"| node max recall at 100 % precision (embedding score of the published match) | "
        f"{_pct(s['node_max_recall_at_100_precision'])} |",
        *(f"| {name} stage (offline): max recall at 100 % precision; closures accepted / correct at "
          f"the default settings | {_pct(st['max_recall_at_100_precision'])}; {st['accepted']} / "
          f"{st['correct']} |" for name, st in s.get("stages", {}).items() if name in ("raw", "geometric")),
        *([f"| node (ROS): loop closures published / correct; metric poses published / wrong (> 5 m) | "
           f"{pub['accepted']} / {pub['correct']}; "
           + (f"{pub['poses']} / {pub['wrong_poses']} |" if pub.get("poses") is not None else "no metric map |")]
          if (pub := s.get("node_published") or {}).get("accepted") is not None else []),
        f"| node latency p50 / p99 | {s['node_latency_p50_ms']:.1f} / {s['node_latency_p99_ms']:.1f} ms |"
        if s["node_latency_p50_ms"] is not None else "| node latency p50 / p99 | n/a |",
    ]
    gains = {proto: [a - b for a, b in zip(s["R@1"][proto]["student_distilvpr"],
                                           s["R@1"][proto]["student_nodistill"])] for proto, _ in PROTOCOL_ROWS}
    verdict = "; ".join(f"DistilVPR - no distillation on {label.split()[0]}: "
                        + " / ".join(f"{g:+.1f}" for g in gains[p]) + " R@1 points"
                        for p, label in PROTOCOL_ROWS)
    return ("\n".join(lines) + f"\n\nSeeds {s['seeds']}; test traversals {s['test_traversals']}; "
            f"true match within 25 m. {verdict} (demo scale: see docs/benchmark_synth.md for the "
            f"benchmark).\nReport: {s['report']}\nPlots: {', '.join(s['plots'])}\n")


def run(args: argparse.Namespace) -> int:
    """Run every stage not yet done (each a real subcommand), print the table; returns 0."""
    out = Path(args.out).resolve()
    if args.fresh and out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    early = _stages(args, out)
    total = len(early) + 3
    for i, stage in enumerate(early, 1):
        _execute(stage, i, total)
        if stage.name != "town":  # the run dir exists only after the stage ran
            early_done = _run_dir(out / "runs", stage.name)
            if early_done is None or not (early_done / "eval.json").is_file():
                raise UserError(f"stage '{stage.name}' wrote no eval.json under {out / 'runs'}")
    for i, stage in enumerate(_late_stages(args, out), len(early) + 1):
        _execute(stage, i, total)
    summary = summarise(out, args.seeds)
    summary["wall_s"] = round(time.monotonic() - start, 1)
    text = render(summary)
    write_text_atomic(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    write_text_atomic(out / "summary.md", "# distilvpr demo\n\n" + text)
    print("\n" + text + f"Written: {out / 'summary.md'}, {out / 'summary.json'} "
          f"(this run: {summary['wall_s']:.0f} s)")
    return 0
