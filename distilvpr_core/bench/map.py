"""`distilvpr bench map`: prior-map search speed, recall and load time in one run.

Every number is measured in the same process on the same data, and each
speed is compared with a baseline timed interleaved with it (query by query),
so a busy machine slows both alike:

* exact: one query over N x D with ``PriorMap.search`` (flat) vs a plain numpy
  BLAS matrix-vector product ``X @ q`` vs FAISS ``IndexFlatIP.search``; and a
  batch of queries vs FAISS's batched flat search.
* ann: HNSW / IVF-PQ per-query latency and Recall@1 against exact search on
  clustered descriptors, for each efSearch / nprobe given.
* io: save and verified load (sha256 of every file) of the flat map, with the
  process's memory.
"""
from __future__ import annotations

import argparse
import json
import resource
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..foundation.atomic import write_text_atomic
from ..mapdb.clustered import clustered_descriptors, revisit_queries
from ..mapdb.priormap import PriorMap

HELP = "prior-map benchmark: exact vs numpy BLAS vs FAISS, HNSW/IVF-PQ recall+latency, load time"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``distilvpr bench map``: map size and descriptor dimension, query counts, ANN kinds and
    their parameters, clusters, query noise, FAISS threads, io workdir and ``--json``."""
    parser.add_argument("--size", type=int, default=1_000_000, help="keyframes in the exact/io map (default 1M)")
    parser.add_argument("--dim", type=int, default=384, help="descriptor dimension (default 384)")
    parser.add_argument("--queries", type=int, default=50, help="single queries timed per method (default 50)")
    parser.add_argument("--batch", type=int, default=64, help="queries in the batched search (default 64)")
    parser.add_argument("--k", type=int, default=10, help="neighbours per query (default 10)")
    parser.add_argument("--ann", default="hnsw,ivfpq", help="comma list of ANN kinds to run, or 'none'")
    parser.add_argument("--ann-size", type=int, default=200_000,
                        help="keyframes in the ANN maps (default 200k; 1M HNSW takes long on 2 cores)")
    parser.add_argument("--hnsw-m", type=int, default=32, help="HNSW M (default 32)")
    parser.add_argument("--ef-construction", type=int, default=80, help="HNSW efConstruction (default 80)")
    parser.add_argument("--ef-search", default="16,32,64,128", help="HNSW efSearch values to try")
    parser.add_argument("--nlist", type=int, default=0, help="IVF lists (default 4*sqrt(ann-size))")
    parser.add_argument("--pq-m", type=int, default=48, help="PQ sub-quantizers (must divide dim)")
    parser.add_argument("--nprobe", default="8,16,32,64", help="IVF nprobe values to try")
    parser.add_argument("--clusters", type=int, default=0, help="descriptor clusters (default size/100)")
    parser.add_argument("--skip-io", action="store_true", help="skip the save/load measurement")
    parser.add_argument("--workdir", default=None, help="where the io map is written (default: a temp dir)")
    parser.add_argument("--json", default=None, metavar="FILE", help="also write all numbers as JSON")
    parser.add_argument("--query-noise", type=float, default=0.5,
                        help="revisit noise, relative to the descriptor norm (default 0.5 = cluster spread)")
    parser.add_argument("--threads", type=int, default=0,
                        help="FAISS OpenMP threads (default: FAISS's choice; 1 helps on a busy machine)")
    parser.add_argument("--seed", type=int, default=0)


def _interleaved(fns: dict[str, Callable[[int], Any]], n: int) -> dict[str, list[float]]:
    """Call each fn(i) for i in range(n), alternating methods; seconds per call."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for name, fn in fns.items():
        fn(0)  # warm-up: page in the matrix, allocate BLAS buffers
    for i in range(n):
        for name, fn in fns.items():
            t = time.perf_counter()
            fn(i)
            times[name].append(time.perf_counter() - t)
    return times


def _ms(ts: list[float]) -> dict[str, float]:
    a = np.asarray(ts) * 1e3
    return {"median_ms": float(np.median(a)), "p90_ms": float(np.percentile(a, 90)), "n": len(ts)}


def _rss_mib() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * resource.getpagesize() / 2**20


def _flat_map(x: np.ndarray) -> PriorMap:
    n = x.shape[0]
    m = PriorMap.create(x.shape[1], "bench", {"bench": True})
    poses = np.zeros((n, 7))
    poses[:, 6] = 1
    m.add(x, np.arange(n, dtype=np.int64), poses, "bench", np.arange(n))
    return m


def bench_exact(m: PriorMap, queries: np.ndarray, k: int, batch: int) -> dict[str, Any]:
    """Single-query and batched exact search; checks every method agrees on top-1."""
    import faiss
    x = m.descriptors
    faiss_index = faiss.IndexFlatIP(x.shape[1])  # FAISS's own exact search over the same rows
    faiss_index.add(x)
    nq = queries.shape[0]
    t = _interleaved({
        "numpy_matvec": lambda i: x @ queries[i],
        "priormap_search": lambda i: m.search(queries[i], k),
    }, nq)
    n_faiss = max(3, nq // 5)  # FAISS single query is slow; fewer repeats
    tf = _interleaved({"faiss_flat_single": lambda i: faiss_index.search(queries[i:i + 1], k)}, n_faiss)
    ours = m.search(queries, k).ids[:, 0]
    top1_ok = bool(np.array_equal(ours, np.argmax(queries @ x.T, axis=1)))
    qb = queries[np.arange(batch) % nq]
    tb = _interleaved({"priormap_batch": lambda i: m.search(qb, k),
                       "faiss_flat_batch": lambda i: faiss_index.search(qb, k)}, 3)
    out = {name: _ms(v) for name, v in {**t, **tf}.items()}
    for name, v in tb.items():
        out[name] = {**_ms(v), "per_query_ms": float(np.median(v)) * 1e3 / batch, "batch": batch}
    out["ratio_search_over_matvec"] = out["priormap_search"]["median_ms"] / out["numpy_matvec"]["median_ms"]
    # Paired: each query's two timings ran back to back, so load changes cancel.
    out["paired_ratio_median"] = float(np.median(np.asarray(t["priormap_search"]) / np.asarray(t["numpy_matvec"])))
    out["top1_matches_argmax"] = top1_ok
    out["faiss_top1_matches"] = bool(np.array_equal(faiss_index.search(queries, 1)[1][:, 0], ours))
    return out


def bench_ann(kind: str, x: np.ndarray, queries: np.ndarray, k: int, args: argparse.Namespace,
              settings: list[int]) -> dict[str, Any]:
    """Build one ANN map over x; latency and Recall@1 (vs exact) per search setting."""
    n, d = x.shape
    exact_top1 = np.argmax(queries @ x.T, axis=1)
    if kind == "hnsw":
        params = {"M": args.hnsw_m, "ef_construction": args.ef_construction}
        knob = "ef_search"
    else:
        params = {"nlist": args.nlist or int(4 * np.sqrt(n)), "m": args.pq_m}
        knob = "nprobe"
    m = PriorMap.create(d, "bench", {"bench": True}, index=kind, index_params=params)
    poses = np.zeros((n, 7))
    poses[:, 6] = 1
    t0 = time.perf_counter()
    m.add(x, np.arange(n, dtype=np.int64), poses, "bench", np.arange(n))
    build_s = time.perf_counter() - t0
    rows = []
    for value in settings:
        m.set_search_params(**{knob: value})
        times = _interleaved({"q": lambda i: m.search(queries[i], k)}, queries.shape[0])["q"]
        top1 = m.search(queries, k).ids[:, 0]
        rows.append({knob: value, **_ms(times), "recall_at_1": float(np.mean(top1 == exact_top1))})
    return {"kind": kind, "size": n, "params": params, "build_s": build_s, "settings": rows}


def bench_io(m: PriorMap, workdir: Path) -> dict[str, Any]:
    """Save, then load with full verification; time and memory."""
    path = workdir / "bench_map"
    t0 = time.perf_counter()
    m.save(path)
    save_s = time.perf_counter() - t0
    size = sum(p.stat().st_size for p in path.iterdir())
    rss0 = _rss_mib()
    t0 = time.perf_counter()
    loaded = PriorMap.load(path, expect_fingerprint="bench", expect_dim=m.dim)
    load_s = time.perf_counter() - t0
    rss1 = _rss_mib()
    q = m.descriptors[0]
    t0 = time.perf_counter()
    loaded.search(q, 10)  # first query pages the mapped rows in
    first_s = time.perf_counter() - t0
    rss2 = _rss_mib()
    assert len(loaded) == len(m)
    del loaded
    return {"save_s": save_s, "load_verified_s": load_s, "map_bytes": size,
            "load_rss_increase_mib": rss1 - rss0, "first_query_s": first_s,
            "rss_increase_after_first_query_mib": rss2 - rss0}


def _print(report: dict[str, Any]) -> None:
    e = report["exact"]
    print(f"\nexact search, N={report['size']} x D={report['dim']} float32, k={report['k']} "
          f"(median / p90 ms per query)")
    for name in ("numpy_matvec", "priormap_search", "faiss_flat_single", "priormap_batch", "faiss_flat_batch"):
        r = e[name]
        extra = f"  ({r['per_query_ms']:.2f} ms/query in batches of {r['batch']})" if "batch" in r else ""
        print(f"  {name:<20} {r['median_ms']:9.2f} {r['p90_ms']:9.2f}{extra}")
    print(f"  PriorMap.search / numpy matvec = {e['ratio_search_over_matvec']:.2f} (median of the "
          f"per-query ratios {e['paired_ratio_median']:.2f}); top-1 == argmax: {e['top1_matches_argmax']}, "
          f"== FAISS: {e['faiss_top1_matches']}")
    for a in report.get("ann", []):
        print(f"\n{a['kind']} N={a['size']} params={a['params']} build {a['build_s']:.1f} s")
        for r in a["settings"]:
            knob = "ef_search" if "ef_search" in r else "nprobe"
            print(f"  {knob}={r[knob]:<4} {r['median_ms']:7.3f} ms/query (p90 {r['p90_ms']:.3f})  "
                  f"Recall@1 vs exact {r['recall_at_1']:.3f}")
    if "io" in report:
        io = report["io"]
        print(f"\nio: save {io['save_s']:.2f} s, verified load (sha256 of every file) "
              f"{io['load_verified_s']:.2f} s, {io['map_bytes'] / 2**20:.0f} MiB on disk; RSS +"
              f"{io['load_rss_increase_mib']:.0f} MiB after load, +{io['rss_increase_after_first_query_mib']:.0f}"
              f" MiB after the first query ({io['first_query_s'] * 1e3:.0f} ms)")
    print(f"peak RSS {report['peak_rss_mib']:.0f} MiB")


def run(args: argparse.Namespace) -> int:
    """Measure exact search, save/load and the ANN indexes on clustered random descriptors (see module doc);
    print the report, write it to ``--json``; returns 0."""
    from ..foundation.errors import UserError
    for name in ("size", "dim", "queries", "batch", "k", "ann_size"):
        if getattr(args, name) < 1:
            raise UserError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    kinds = [] if args.ann.strip() == "none" else [s.strip() for s in args.ann.split(",") if s.strip()]
    for kind in kinds:
        if kind not in ("hnsw", "ivfpq"):
            raise UserError(f"--ann: unknown kind {kind!r}; use hnsw, ivfpq or none")
    try:
        efs = [int(v) for v in args.ef_search.split(",")]
        nprobes = [int(v) for v in args.nprobe.split(",")]
    except ValueError:
        raise UserError("--ef-search / --nprobe: expected comma-separated integers, e.g. 16,32,64") from None
    if args.threads:
        import faiss
        faiss.omp_set_num_threads(args.threads)
    clusters = args.clusters or max(1, args.size // 100)
    report: dict[str, Any] = {"size": args.size, "dim": args.dim, "k": args.k, "clusters": clusters,
                              "query_noise": args.query_noise, "argv_threads": args.threads}
    t0 = time.perf_counter()
    x = clustered_descriptors(args.size, args.dim, clusters, seed=args.seed)
    queries = revisit_queries(x, min(args.queries, args.size), args.query_noise, seed=args.seed + 1)
    print(f"generated {args.size} x {args.dim} clustered descriptors in {time.perf_counter() - t0:.1f} s")
    m = _flat_map(x)
    del x  # the map holds its own copy
    report["exact"] = bench_exact(m, queries, args.k, args.batch)
    if not args.skip_io:
        work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="distilvpr-bench-"))
        try:
            report["io"] = bench_io(m, work)
        finally:
            if not args.workdir:
                shutil.rmtree(work, ignore_errors=True)
    ann_x = np.array(m.descriptors[:args.ann_size]) if kinds else None
    del m
    report["ann"] = []
    for kind in kinds:
        aq = revisit_queries(ann_x, min(args.queries, ann_x.shape[0]), args.query_noise, seed=args.seed + 2)
        report["ann"].append(bench_ann(kind, ann_x, aq, args.k, args,
                                       efs if kind == "hnsw" else nprobes))
    report["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    _print(report)
    if args.json:
        write_text_atomic(args.json, json.dumps(report, indent=2) + "\n")
    return 0
