#!/usr/bin/env python3
"""One compact markdown table per group of scripts/pose_conditions.py outputs: per drive and
feature kind, ``published poses / share of revisits within (0.5 m, 5°) / within (0.25 m, 2°) /
wrong (> 5 m)``, oracle rows then engine rows.

    python scripts/pose_conditions_summary.py --table "Validation" A/pose_conditions.json B/pose_conditions.json \\
        --table "Test" C/pose_conditions.json > summary.md
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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--table", nargs="+", action="append", required=True, metavar=("TITLE", "JSON"))
    for title, *files in ap.parse_args().table:
        print(table(title, files))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
