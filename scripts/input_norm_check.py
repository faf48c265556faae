#!/usr/bin/env python3
"""Model-free check of the student's input normalisations on a validation town.

Tiny-image retrieval (no learning): every frame of every drive is resized, normalised
with each ``student.input_norm`` (models/input_norm.py), average-pooled to a 16x12 thumbnail
and compared by cosine with the map drive's thumbnails; R@1 per query drive, a true match
within ``--radius-m``.  A normalisation that removes the change of light brings the
conditions' thumbnails together before any training, so this is cheap evidence for which
normalisations deserve a training run.  Run it on a validation town only.

    python scripts/input_norm_check.py --town data/towns/town_4 --out docs/input_norm_check.json
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


def _drive(path: Path, size: tuple[int, int], stride: int):
    """(images float32 [N, 3, H, W] as the student sees them, positions [N, 3] map frame, metres).

    The frames go through the project's one preprocessing (foundation/preprocess.py: resize,
    ImageNet mean/std), so the check sees what the student's input_norm would see."""
    from PIL import Image
    from distilvpr_core.foundation.contract import PreprocessContract
    from distilvpr_core.foundation.preprocess import preprocess
    ims = sorted((path / "images").iterdir())[::stride]
    poses = np.load(path / "poses.npy")[::stride]
    pos = poses[:, :3, 3] if poses.ndim == 3 else poses[:, :3]
    contract = PreprocessContract(input_size=tuple(size))
    x = preprocess([np.asarray(Image.open(p).convert("RGB")) for p in ims], contract)
    return np.asarray(x, np.float32), pos


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--town", required=True, help="a native dataset (a validation town)")
    parser.add_argument("--map-drive", default="map_noon", help="database drive (default map_noon)")
    parser.add_argument("--size", nargs=2, type=int, default=[64, 48], metavar=("W", "H"))
    parser.add_argument("--stride", type=int, default=2, help="every k-th frame (default 2)")
    parser.add_argument("--radius-m", type=float, default=25.0)
    parser.add_argument("--out", required=True, help="JSON file to write (Markdown beside it)")
    args = parser.parse_args(argv)
    import torch
    from distilvpr_core.models.input_norm import INPUT_NORMS, build_input_norm
    root = Path(args.town) / "traversals"
    if not (root / args.map_drive).is_dir():
        raise UserError(f"--town {args.town}: no traversal {args.map_drive!r} under {root}")
    drives = {p.name: _drive(p, tuple(args.size), args.stride) for p in sorted(root.iterdir()) if p.is_dir()}
    table: dict[str, dict[str, float]] = {}
    for name in INPUT_NORMS:
        norm = build_input_norm(name)
        thumbs = {}
        for d, (x, _) in drives.items():
            with torch.no_grad():
                f = torch.nn.functional.adaptive_avg_pool2d(norm(torch.from_numpy(x)), (12, 16)).flatten(1)
            thumbs[d] = torch.nn.functional.normalize(f - f.mean(1, keepdim=True), dim=1).numpy()
        db, db_pos = thumbs[args.map_drive], drives[args.map_drive][1]
        table[name] = {}
        for d, (_, pos) in drives.items():
            if d == args.map_drive:
                continue
            top = (thumbs[d] @ db.T).argmax(1)
            revisit = np.linalg.norm(pos[:, None] - db_pos[None], axis=2).min(1) < args.radius_m
            hit = np.linalg.norm(pos - db_pos[top], axis=1) < args.radius_m
            table[name][d] = round(100.0 * float((hit & revisit).sum() / max(1, revisit.sum())), 1)
        print(name, table[name])
    doc = {"command": "python scripts/input_norm_check.py " + " ".join(argv if argv is not None else sys.argv[1:]),
           "town": str(args.town), "map_drive": args.map_drive, "size": args.size, "stride": args.stride,
           "metric": "tiny-image (16x12) R@1 per query drive, map = map_drive", "r1": table}
    out = Path(args.out)
    write_text_atomic(out, json.dumps(doc, indent=1) + "\n")
    queries = list(next(iter(table.values())))
    md = [f"Tiny-image R@1 (%) on `{args.town}`, map = `{args.map_drive}`; `{doc['command']}`", "",
          "| input_norm | " + " | ".join(queries) + " |", "|---|" + "---|" * len(queries)]
    md += [f"| {n} | " + " | ".join(f"{r[q]:.1f}" for q in queries) + " |" for n, r in table.items()]
    write_text_atomic(out.with_suffix(".md"), "\n".join(md) + "\n")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except UserError as exc:
        print(f"input_norm_check: error: {exc}", file=sys.stderr)
        sys.exit(2)
