#!/usr/bin/env python3
"""Validation R@1 per epoch of a recipe sweep: one row per run, read from each run's metrics.json.

The benchmark's report shows each row's *best* validation R@1 once the run finished; a sweep
cut short by the budget (or read while it runs) is compared here at equal epochs instead, so a
run that had fewer epochs is not mistaken for a worse recipe.  Validation only: the score is
the training loop's ``val_R@1`` (the validation drives and town of the run's config), never a
test protocol.

    python scripts/recipe_sweep.py --runs runs/bench_towns/seed0_default runs/bench_towns/seed0_default_lr2e-3 \\
        --out docs/bench_cpu/towns_v3/recipe_sweep

Each ``--runs`` entry is a run directory or a folder holding exactly one (the benchmark's
``runs_root`` of one row).  Writes OUT.json (per run: the stage's val R@1 per epoch, the best
and its epoch) and OUT.md (the table).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from distilvpr_core.foundation.atomic import write_text_atomic  # noqa: E402
from distilvpr_core.foundation.errors import UserError  # noqa: E402


def run_metrics(path: Path, branch: str) -> list[float]:
    """Validation R@1 (percent) of ``branch``'s epochs in the run at ``path`` (a run directory,
    or a folder with exactly one run directory under it)."""
    if not (path / "metrics.json").is_file():
        found = sorted(p.parent for p in path.glob("*/metrics.json"))
        if len(found) != 1:
            raise UserError(f"{path}: expected one run directory with a metrics.json, found {len(found)}; "
                            "pass the run directory itself")
        path = found[0]
    try:
        history = json.loads((path / "metrics.json").read_text()).get(branch, [])
    except (OSError, ValueError) as exc:
        raise UserError(f"{path / 'metrics.json'}: not readable JSON ({exc})") from None
    return [float(row["val_R@1"]) for row in history if "val_R@1" in row]


def table(rows: dict[str, list[float]]) -> str:
    """Markdown: one line per run, one column per epoch, then the best and the common-epoch best."""
    epochs = max((len(v) for v in rows.values()), default=0)
    common = min((len(v) for v in rows.values() if v), default=0)
    head = ["run", *(f"epoch {e + 1}" for e in range(epochs)), "best (epoch)",
            f"best over epochs 1-{common}"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, vals in rows.items():
        cells = [f"{v:.1f}" for v in vals] + ["–"] * (epochs - len(vals))
        best = f"{max(vals):.1f} ({vals.index(max(vals)) + 1})" if vals else "–"
        upto = f"{max(vals[:common]):.1f}" if common else "–"
        lines.append("| " + " | ".join([name, *cells, best, upto]) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", nargs="+", required=True, metavar="DIR", help="run directories (or their runs_root)")
    parser.add_argument("--branch", default="student", choices=("student", "teacher"), help="which stage's curve")
    parser.add_argument("--out", required=True, metavar="PREFIX", help="writes PREFIX.json and PREFIX.md")
    args = parser.parse_args(argv)
    try:
        rows = {Path(r).name: run_metrics(Path(r), args.branch) for r in args.runs}
    except UserError as exc:
        print(f"recipe_sweep: error: {exc}", file=sys.stderr)
        return 2
    doc = {name: {"val_r1_by_epoch": v, "best": max(v) if v else None,
                  "best_epoch": (v.index(max(v)) + 1) if v else None} for name, v in rows.items()}
    out = Path(args.out)
    write_text_atomic(out.with_suffix(".json"), json.dumps(doc, indent=1) + "\n")
    text = table(rows)
    write_text_atomic(out.with_suffix(".md"), text)
    print(text, end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
