#!/usr/bin/env python3
"""Copy benchmark results.json files with some rows renamed (run directories keep their names).

Rows of an ablation run under the ablation's names; once validation picks the winner, the
report shows it under the product's row names.  Every key of runs/results/seconds/collapsed/
best_val (``seedK/row`` or ``seedK/row/branch``) whose row is renamed gets the new name.

    python scripts/bench_rename_rows.py --rename default_local_norm=default default=default_no_input_norm \\
        --out runs/bench_towns/renamed runs/bench_towns/seed*/results.json
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from distilvpr_core.foundation.atomic import write_text_atomic  # noqa: E402

KEYS = ("runs", "results", "seconds", "collapsed", "best_val")


def rename_state(state: dict, rename: dict[str, str]) -> dict:
    """``state`` with every row in ``rename`` renamed, simultaneously (a -> b and b -> c both apply once)."""
    out = dict(state)
    for k in KEYS:
        new = {}
        for key, value in state.get(k, {}).items():
            seed, row, *branch = key.split("/")
            new["/".join([seed, rename.get(row, row), *branch])] = value
        out[k] = new
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("results", nargs="+", help="results.json files (their parent folder names the copy)")
    p.add_argument("--rename", nargs="+", required=True, metavar="OLD=NEW")
    p.add_argument("--out", required=True, help="folder for the renamed copies")
    args = p.parse_args(argv)
    pairs = [r.split("=", 1) for r in args.rename]
    if any(len(x) != 2 or not all(x) for x in pairs):
        print("bench_rename_rows: error: --rename takes OLD=NEW pairs", file=sys.stderr)
        return 2
    rename = dict(pairs)
    for f in map(Path, args.results):
        state = rename_state(json.loads(f.read_text()), rename)
        write_text_atomic(Path(args.out) / f"{f.parent.name}.json", json.dumps(state, indent=1) + "\n")
    print(f"wrote {len(args.results)} renamed copies to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
