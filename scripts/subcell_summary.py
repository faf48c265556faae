#!/usr/bin/env python3
"""Table of sub-cell keypoint runs: per drive, one column per run, each cell
``oracle poses / within 0.5 m, 5° / within 0.25 m, 2° / wrong (> 5 m) | median pose-to-keyframe m /
share closer to the truth than the keyframe | matched points within 2 px of the truth``.

Inputs are the outputs of scripts/pose_conditions.py (``pose_conditions.json``, its
``oracle_beyond_keyframe``) and, when the run directory has it, scripts/keypoint_reprojection.py
(``keypoint_reprojection_<kind>.json``, or ``keypoint_reprojection.json`` of that kind: the
share of matched query points within 2 px of the projection of the keyframe feature's 3D point
at the true pose).

    python scripts/subcell_summary.py --title "Validation" "cell centres=runs/x/val_off:patch" \\
        "match4=runs/x/val_match4:patch" "sift=runs/x/val_sift:sift" --out summary.md
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from distilvpr_core.foundation.atomic import write_text_atomic  # noqa: E402


def cell(per_drive: dict, reproj: dict | None) -> str:
    """The text of one run's cell for one drive (module doc); — where not measured."""
    pm = per_drive.get("oracle")
    if pm is None:
        return "—"
    st = pm["stages"]["published"]
    sh = st["share_of_revisits"]
    text = f"{st['poses']} / {100 * sh['0.5m_5deg']:.0f} % / {100 * sh['0.25m_2deg']:.0f} % / {st['wrong_closures']}"
    b = per_drive.get("oracle_beyond_keyframe")
    text += (f" \\| {b['median_pose_to_keyframe_m']:.2f} m / {100 * b['share_closer_than_keyframe']:.0f} %"
             if b else " \\| —")
    if reproj is not None:
        w = reproj["keypoints"]["within_2px"]
        text += " \\| —" if w is None else f" \\| {100 * w:.0f} %"
    return text


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--title", required=True)
    ap.add_argument("runs", nargs="+", metavar="LABEL=DIR:KIND")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    cols, drives = [], {}
    for spec in args.runs:
        label, rest = spec.split("=", 1)
        d, kind = rest.rsplit(":", 1)
        res = json.load(open(Path(d) / "pose_conditions.json"))["kinds"][kind]["drives"]
        reproj = {}
        for rp in (Path(d) / f"keypoint_reprojection_{kind}.json", Path(d) / "keypoint_reprojection.json"):
            if rp.is_file() and json.load(open(rp))["kind"] == kind:
                reproj = json.load(open(rp))["drives"]
                break
        cols.append((label, res, reproj))
        for trav, r in res.items():
            if r.get("oracle") is not None:
                drives.setdefault(trav, r["oracle"]["stages"]["published"]["revisits"])
    lines = [f"**{args.title}** (each cell: oracle poses / within 0.5 m, 5° / within 0.25 m, 2° / wrong > 5 m "
             "\\| median pose-to-keyframe / closer to the truth than the keyframe \\| matched points within "
             "2 px of the truth)", "", "| drive | revisits | " + " | ".join(c[0] for c in cols) + " |",
             "|---|---|" + "---|" * len(cols)]
    for trav, rev in drives.items():
        lines.append(f"| {trav} | {rev} | " + " | ".join(
            cell(res.get(trav, {}), reproj.get(trav) if reproj else None) for _, res, reproj in cols) + " |")
    lines += ["", "Command: `python " + shlex.join(sys.argv) + "`"]
    write_text_atomic(args.out, "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
