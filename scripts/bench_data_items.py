#!/usr/bin/env python3
"""What one training item costs the data loader, with and without ``data.cache_images``.

Builds the training set of a distil config twice (images decoded from disk on every
access, and decoded once into memory) and times, in one process on one thread:

- a student item (image: decode or cache, resize, colour jitter, normalise, erasing);
- a teacher item (the same + LiDAR scan: load, augment, bird's-eye-view grid);
- the bird's-eye-view grid alone (``models.bev.points_to_bev``) on the same scans.

Items are timed interleaved (plain, cached, plain, ...) so load changes on a shared
machine hit both alike; the ratios are the numbers to compare across machines.

    python scripts/bench_data_items.py --config config/distil_synth.yaml \\
        --set data.root=data/synth_bench --set data.input_size=[320,240] --out data_items.json
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from distilvpr_core.foundation.atomic import write_text_atomic  # noqa: E402


def _median_ms(samples: list[float]) -> float:
    return round(statistics.median(samples) * 1e3, 3)


def measure(config: str, sets: list[str], items: int) -> dict:
    """Median ms per item of each kind (plain / cached) and their ratios."""
    import dataclasses

    import torch
    from distilvpr_core.foundation.config import load_config
    from distilvpr_core.data.datasets import FrameIndex, PlaceDataset, select
    from distilvpr_core.models.bev import points_to_bev
    from distilvpr_core.data.traversals import open_split_traversals
    from distilvpr_core.train.pipeline import DistilRunConfig
    from distilvpr_core.train.eval_stage import lidar_prepare
    torch.set_num_threads(1)
    cfg = load_config(DistilRunConfig, REPO / config, sets)   # an absolute config path stays itself
    datasets = {}   # cached? -> (student items, teacher items or None without LiDAR)
    for cached in (False, True):
        data = dataclasses.replace(cfg.data, cache_images=cached)
        travs, _ = open_split_traversals(data)
        frames = FrameIndex(select(travs, "train", data.root))
        prep = lidar_prepare(cfg.teacher) if frames.traversals[0].has_lidar else None
        datasets[cached] = (PlaceDataset(frames, data.contract(), cfg.aug, None, 0),
                           PlaceDataset(frames, data.contract(), cfg.aug, prep, 0) if prep else None)
    n = min(items, len(datasets[False][0]))
    times: dict[str, list[float]] = {}
    for k in range(n):
        for kind in (0, 1):            # student, teacher
            for cached in (False, True):
                ds = datasets[cached][kind]
                if ds is None:
                    continue
                t0 = time.perf_counter()
                ds[k]
                times.setdefault(f"{('student', 'teacher')[kind]}_{'cached' if cached else 'plain'}",
                                 []).append(time.perf_counter() - t0)
    out = {"config": config, "sets": sets, "items": n, "input_size": list(cfg.data.input_size),
           "ms_per_item": {k: _median_ms(v) for k, v in times.items()}}
    ms = out["ms_per_item"]
    out["ratio_cached_over_plain"] = {
        kind: round(ms[f"{kind}_cached"] / ms[f"{kind}_plain"], 3)
        for kind in ("student", "teacher") if f"{kind}_plain" in ms}
    if datasets[False][1] is not None:
        trav = datasets[False][0].frames.traversals[0]
        scans = [trav.load_lidar(i) for i in range(min(n, len(trav)))]
        bev = []
        for pts in scans:
            t0 = time.perf_counter()
            points_to_bev(pts, cfg.teacher.bev)
            bev.append(time.perf_counter() - t0)
        out["ms_per_item"]["bev_grid"] = _median_ms(bev)
        out["points_per_scan"] = int(statistics.median(len(p) for p in scans))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="config/distil_synth.yaml", help="distil config (default: %(default)s)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="config override, repeatable (e.g. data.root=data/synth_bench)")
    ap.add_argument("--items", type=int, default=100, help="training items timed per kind (default: %(default)s)")
    ap.add_argument("--out", help="write the numbers as JSON here (atomically)")
    args = ap.parse_args(argv)
    if args.items < 1:
        ap.error("--items must be >= 1")
    from distilvpr_core.foundation.errors import UserError
    try:
        res = measure(args.config, args.set, args.items)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    text = json.dumps(res, indent=2)
    print(text)
    if args.out:
        write_text_atomic(args.out, text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
