#!/usr/bin/env python3
"""One compact markdown table per group of scripts/pose_conditions.py outputs: per drive and
feature kind, ``published poses / share of revisits within (0.5 m, 5°) / within (0.25 m, 2°) /
wrong (> 5 m)``, oracle rows then engine rows.

    python scripts/pose_conditions_summary.py --table "Validation" A/pose_conditions.json B/pose_conditions.json \\
        --table "Test" C/pose_conditions.json > summary.md

``--columns TITLE LABEL=JSON:KIND ...`` instead gives one oracle column per LABEL (e.g.
settings of one kind from several runs, which ``--table`` would merge under the kind).
"""
from __future__ import annotations

import argparse
import json

KINDS = ("orb", "sift", "learned", "patch")


def table(title: str, files: list[str]) -> str:
    """The markdown of one group (drives in first-seen order; a kind not measured: —)."""
    data: dict = {}
    for f in files:
        for kind, per in json.load(open(f))["kinds"].items():
            for trav, r in per["drives"].items():
                data.setdefault(trav, {})[kind] = r
    out = [f"**{title}**", "", "| drive | revisits | " + " | ".join(f"{k} oracle" for k in KINDS) + " | "
           + " | ".join(f"{k} engine" for k in KINDS) + " |", "|---|---|" + "---|" * 2 * len(KINDS)]
    for trav, per in data.items():
        rev, cells = None, {"oracle": [], "engine": []}
        for k in KINDS:
            for row in ("oracle", "engine"):
                if k not in per or per[k][row] is None:
                    cells[row].append("—")
                    continue
                st = per[k][row]["stages"]["published"]
                rev, sh = st["revisits"], st["share_of_revisits"]
                cells[row].append(f"{st['poses']} / {100 * sh['0.5m_5deg']:.0f} % / "
                                  f"{100 * sh['0.25m_2deg']:.0f} % / {st['wrong_closures']}")
        out.append(f"| {trav} | {rev} | " + " | ".join(cells["oracle"] + cells["engine"]) + " |")
    return "\n".join(out) + "\n"


def _cell(r: dict | None) -> str:
    if r is None:
        return "—"
    st = r["stages"]["published"]
    sh = st["share_of_revisits"]
    return f"{st['poses']} / {100 * sh['0.5m_5deg']:.0f} % / {100 * sh['0.25m_2deg']:.0f} % / {st['wrong_closures']}"


def columns(title: str, specs: list[str]) -> str:
    """One oracle column per ``LABEL=JSON:KIND`` (drives in first-seen order)."""
    data: dict = {}
    labels = []
    for spec in specs:
        label, _, rest = spec.partition("=")
        path, _, kind = rest.rpartition(":")
        labels.append(label)
        for trav, r in json.load(open(path))["kinds"][kind]["drives"].items():
            data.setdefault(trav, {})[label] = r["oracle"]
    out = [f"**{title}** (oracle rows)", "", "| drive | revisits | " + " | ".join(labels) + " |",
           "|---|---|" + "---|" * len(labels)]
    for trav, per in data.items():
        rev = next(r["stages"]["published"]["revisits"] for r in per.values() if r is not None)
        out.append(f"| {trav} | {rev} | " + " | ".join(_cell(per.get(lb)) for lb in labels) + " |")
    return "\n".join(out) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--table", nargs="+", action="append", default=[], metavar=("TITLE", "JSON"))
    ap.add_argument("--columns", nargs="+", action="append", default=[], metavar=("TITLE", "LABEL=JSON:KIND"))
    args = ap.parse_args()
    if not args.table and not args.columns:
        ap.error("give --table TITLE JSON... and/or --columns TITLE LABEL=JSON:KIND...")
    for title, *files in args.table:
        print(table(title, files))
    for title, *specs in args.columns:
        print(columns(title, specs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
