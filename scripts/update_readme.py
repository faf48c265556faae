#!/usr/bin/env python3
"""Regenerate the result tables (README headline, docs/benchmarks.md, docs/demo.md) from the files the commands wrote.

    .venv/bin/python scripts/update_readme.py [--demo demo_out/summary.json]

Blocks between ``<!-- BEGIN name -->`` and ``<!-- END name -->`` are replaced:

* ``demo``: the table ``distilvpr demo`` printed (``demo_out/summary.md``'s table, from its
  summary.json), with the seeds it ran;
* ``benchmark``: R@1 of the key rows under protocols P, D, S and T, mean ± std over seeds, from
  ``docs/benchmark_synth.json`` (CPU, several towns: the product default's table),
  ``docs/bench_cpu/single_town/benchmark_synth.json`` (CPU, one town), ``docs/benchmark_synth_gpu.json``
  (GPU) and the frozen
  paper-schedule CPU table ``docs/bench_cpu/paper_schedule/benchmark_synth.json``, when present.

Numbers are never typed into README by hand; rerun this after the commands.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ROWS = (("teacher", "teacher (camera + LiDAR)"), ("teacher_image", "teacher image branch"),
        ("no_distillation", "student, no distillation"),
        ("default", "student, default recipe"), ("distilvpr", "DistilVPR student"))
PROTOS = (("unseen_places", "P"), ("deployment", "D"), ("unseen_condition", "S"), ("unseen_town", "T"))


def _ms(values: list[float]) -> str:
    from bench_synth_report import _fmt   # the benchmark report's own mean ± std
    return _fmt(values) + (f" (n={len(values)})" if values else "")


def benchmark_block(paths: list[tuple[str, Path]]) -> str:
    """Markdown table: one row per (table, model), one column per protocol."""
    lines = ["| benchmark | model | " + " | ".join(f"R@1 {p}" for _, p in PROTOS) + " |",
             "|---|---|" + "---|" * len(PROTOS)]
    for label, path in paths:
        if not path.is_file():
            continue
        doc = json.loads(path.read_text())
        protos = doc["protocols"]
        from bench_synth_report import ABLATIONS, BASELINES, LABELS, RECIPE_ROWS, RECIPES
        # Baselines, ablations and recipe checks appear once any seed of them finished (n says how many).
        def is_baseline(key: str) -> bool:   # 'sp' and its recipe checks 'sp_<suffix>'
            return key in BASELINES or any(key == f"{b}_{x}" for b in BASELINES for x in RECIPES)
        ran = [(k, f"baseline: {LABELS[k]}" if is_baseline(k) else LABELS[k])
               for k in (*BASELINES, *ABLATIONS, *RECIPE_ROWS)
               if any(k in protos.get(p, {}).get("rows", {}) for p, _ in PROTOS)]
        for key, name in (*ROWS, *ran):
            if not any(key in protos.get(p, {}).get("rows", {}) for p, _ in PROTOS):
                continue   # e.g. the one-town tables have no 'default' row
            cells = [_ms(protos.get(p, {}).get("rows", {}).get(key, {}).get("r1", [])) for p, _ in PROTOS]
            lines.append(f"| {label} | {name} | " + " | ".join(cells) + " |")
        chance = [protos.get(p, {}).get("chance_r1") for p, _ in PROTOS]
        lines.append(f"| {label} | *chance* | " + " | ".join("–" if c is None else f"{c:.1f}" for c in chance) + " |")
    return "\n".join(lines)


def demo_block(summary: Path, note: str = "") -> str:
    """The demo table from ``summary``; a resumed demo run (every stage skipped) has no
    meaningful wall time, so only a positive one is quoted."""
    from distilvpr_core.app.demo import render
    s = json.loads(summary.read_text())
    table = render(s).split("\n\nSeeds")[0]
    wall = f", wall time {s['wall_s']:.0f} s" if s.get("wall_s") else ""
    return table + f"\n\nFrom `{summary}` (seeds {s['seeds']}{wall}).{' ' + note if note else ''}"


#: README's headline rows: (key in the benchmark JSON, label); a row is shown when it ran.
HEADLINE_ROWS = (("teacher", "teacher (camera + LiDAR)"), ("no_distillation", "student, no distillation"),
                 ("default", "student, default recipe (DistilVPR self-agent terms, local contrast input)"),
                 ("distilvpr", "student, DistilVPR (the paper's losses, same student)"),
                 ("self_only", "student, DistilVPR self-agent terms only"))
#: Query conditions of the benchmark town, in the order a day goes wrong.
CONDITIONS = (("noon/clear/summer", "noon"), ("dawn/overcast/winter", "dawn-winter"),
              ("dusk/rain/autumn", "dusk-rain"), ("night/clear/summer", "night"), ("noon/fog/autumn", "fog"))


def headline_block(path: Path) -> str:
    """README's table: P (and T where measured), then D per query condition, mean ± std over seeds."""
    from bench_synth_report import _fmt
    protos = json.loads(path.read_text())["protocols"]
    extra = [("unseen_town", "T")] if "unseen_town" in protos else []
    cols = [("unseen_places", "P"), *extra, ("deployment", "D mean")]
    head = "| model | " + " | ".join(c for _, c in cols) + " | " + " | ".join(f"D {c}" for _, c in CONDITIONS) + " |"
    lines = [head, "|---|" + "---|" * (len(cols) + len(CONDITIONS))]
    d_rows = protos["deployment"]["rows"]
    for key, label in HEADLINE_ROWS:
        if key not in d_rows:
            continue
        cells = [_fmt(protos.get(p, {}).get("rows", {}).get(key, {}).get("r1", [])) for p, _ in cols]
        by_cond = d_rows[key].get("r1_by_condition", {})
        cells += [_fmt(by_cond.get(c, [])) for c, _ in CONDITIONS]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    chance = [protos.get(p, {}).get("chance_r1") for p, _ in cols]
    lines.append("| *chance* | " + " | ".join("–" if c is None else f"{c:.1f}" for c in chance)
                 + " |" + " |" * len(CONDITIONS))
    return "\n".join(lines)


def replace_block(text: str, name: str, body: str) -> str:
    pat = re.compile(rf"(<!-- BEGIN {name} -->\n).*?(<!-- END {name} -->)", re.S)
    if not pat.search(text):
        raise SystemExit(f"no <!-- BEGIN {name} --> ... <!-- END {name} --> block to replace")
    return pat.sub(lambda m: m.group(1) + body + "\n" + m.group(2), text)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--demo", type=Path, help="summary.json of 'distilvpr demo' (default: leave the demo table)")
    p.add_argument("--demo-note", default="", metavar="TEXT",
                   help="a sentence after the demo table (how and where it was run)")
    p.add_argument("--readme", type=Path, default=REPO / "README.md")
    p.add_argument("--docs", type=Path, default=REPO / "docs", help="folder of benchmarks.md and demo.md")
    args = p.parse_args(argv)
    sys.path[:0] = [str(REPO), str(REPO / "scripts")]
    readme = args.readme.read_text()
    # The headline is the newest table: several towns, the product's default recipe, protocol T.
    readme = replace_block(readme, "headline", headline_block(REPO / "docs/benchmark_synth.json"))
    args.readme.write_text(readme)
    print(f"updated {args.readme}")
    bench_md = args.docs / "benchmarks.md"
    text = bench_md.read_text()
    text = replace_block(text, "benchmark", benchmark_block([
        ("CPU, several towns (docs/benchmark_synth.md)", REPO / "docs/benchmark_synth.json"),
        ("CPU, one town (docs/bench_cpu/single_town/benchmark_synth.md)",
         REPO / "docs/bench_cpu/single_town/benchmark_synth.json"),
        ("GPU H200, paper schedule, lr 3e-4 (docs/benchmark_synth_gpu.md)", REPO / "docs/benchmark_synth_gpu.json"),
        ("CPU, paper schedule, first machine (docs/bench_cpu/paper_schedule/)",
         REPO / "docs/bench_cpu/paper_schedule/benchmark_synth.json")]))
    bench_md.write_text(text)
    print(f"updated {bench_md}")
    if args.demo:
        demo_md = args.docs / "demo.md"
        demo_md.write_text(replace_block(demo_md.read_text(), "demo", demo_block(args.demo, args.demo_note)))
        print(f"updated {demo_md}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
