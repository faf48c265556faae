#!/usr/bin/env python3
"""Extraction time per frame of each local-feature kind, on frames of one drive (one thread).

    python scripts/local_feature_latency.py --dataset DIR --traversal val_dawn \\
        --kind sift --kind patch=patch.onnx --frames 40 --out latency.json

``--kind NAME`` or ``NAME=MODEL.onnx`` (kinds that need a model); every ``len/frames``-th
frame of the drive, each kind extracting ``--max-features`` (the node's
verify_max_features); the first frame is a warm-up and not timed.  Writes p50/p90/mean
milliseconds per kind to ``--out`` (JSON) and prints them.  The numbers are wall time on
whatever else the machine runs at the time: say so beside them.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from distilvpr_core.foundation.atomic import write_text_atomic  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--traversal", required=True)
    ap.add_argument("--kind", action="append", required=True, metavar="NAME[=MODEL.onnx]")
    ap.add_argument("--frames", type=int, default=40)
    ap.add_argument("--max-features", type=int, default=300)
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)

    import cv2
    cv2.setNumThreads(1)
    from distilvpr_core.data import native
    from distilvpr_core.features import registry
    t = native.open_dataset(args.dataset).traversal(args.traversal)
    idx = np.linspace(0, len(t.stamps_ns) - 1, max(2, args.frames + 1)).astype(int)
    images = [t.load_image(int(i)) for i in idx]
    out = {"command": " ".join(sys.argv), "frames": len(images) - 1, "image": list(images[0].shape),
           "load_average": list(os.getloadavg()), "kinds": {}}
    for spec in args.kind:
        kind, _, model = spec.partition("=")
        extract = registry.bound(kind, model or None)
        extract(images[0], args.max_features)       # warm-up (session start, caches)
        ms, n = [], []
        for img in images[1:]:
            t0 = time.perf_counter()
            f = extract(img, args.max_features)
            ms.append(1000 * (time.perf_counter() - t0))
            n.append(len(f))
        out["kinds"][spec] = {"p50_ms": float(np.percentile(ms, 50)), "p90_ms": float(np.percentile(ms, 90)),
                              "mean_ms": float(np.mean(ms)), "features_mean": float(np.mean(n))}
        print(f"{spec}: {out['kinds'][spec]}", flush=True)
    out["load_average_after"] = list(os.getloadavg())
    write_text_atomic(args.out, json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
