"""Time and memory of loading a prior map: what reading vectors.npy into memory costs.

    python scripts/map_load_cost.py build DIR [--rows 100000] [--dim 256]
    python scripts/map_load_cost.py load DIR [--repeat 3]

``load`` prints, per repeat in a fresh process, the load time (s, checksums
verified), the first exact search (s) and the process's resident memory
after load and search (MiB), split into anonymous memory (RssAnon, the
process's own) and mapped file pages (RssFile, shared with the page cache).
Run ``load`` with the PYTHONPATH of two checkouts to compare them (docs/map.md).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time


def _rss_mib() -> dict:
    """Resident memory, MiB: anonymous (private, this process's own) and file-backed
    (mapped file pages, shared with the page cache and evictable)."""
    out = {}
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(("RssAnon:", "RssFile:")):
                out[line.split(":")[0]] = int(line.split()[1]) / 1024
    return out


def _build(path: str, rows: int, dim: int) -> None:
    import numpy as np
    from distilvpr_core.mapdb import PriorMap
    rng = np.random.default_rng(0)
    x = rng.standard_normal((rows, dim)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    poses = np.zeros((rows, 7))
    poses[:, 0], poses[:, 6] = np.arange(rows), 1.0
    m = PriorMap.create(dim, "0" * 64, {"input_size": [224, 224]})
    m.add(x, np.arange(rows, dtype=np.int64) * 10**8, poses, "cost", np.arange(rows))
    m.save(path)
    print(f"wrote {path}: {rows} rows of dim {dim}")


def _once(path: str) -> dict:
    import numpy as np
    from distilvpr_core.mapdb import PriorMap
    base = _rss_mib()
    t0 = time.perf_counter()
    m = PriorMap.load(path)
    t1 = time.perf_counter()
    q = np.asarray(m.descriptors[123], np.float32).copy()
    m.search(q, 5)
    t2 = time.perf_counter()
    after = _rss_mib()
    return {"load_s": t1 - t0, "first_search_s": t2 - t1,
            **{f"{k}_delta_mib": after[k] - base[k] for k in base}}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("action", choices=["build", "load", "_once"])
    p.add_argument("dir")
    p.add_argument("--rows", type=int, default=100_000)
    p.add_argument("--dim", type=int, default=256)
    p.add_argument("--repeat", type=int, default=3)
    a = p.parse_args(argv)
    if a.action == "build":
        _build(a.dir, a.rows, a.dim)
    elif a.action == "_once":
        print(json.dumps(_once(a.dir)))
    else:
        for _ in range(a.repeat):  # a fresh process each time: RSS starts from nothing
            out = subprocess.run([sys.executable, __file__, "_once", a.dir], check=True,
                                 capture_output=True, text=True).stdout
            r = json.loads(out.strip().splitlines()[-1])
            print(f"load {r['load_s']:.3f} s  first search {r['first_search_s'] * 1e3:.1f} ms  "
                  f"RssAnon +{r['RssAnon_delta_mib']:.0f} MiB  RssFile +{r['RssFile_delta_mib']:.0f} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
