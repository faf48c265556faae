"""`distilvpr bench map` at a tiny size: it runs, and its numbers are self-consistent."""
from __future__ import annotations

import argparse
import json

import pytest

from distilvpr_core.foundation.errors import UserError
from distilvpr_core.bench import map as bench


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    return parser.parse_args(list(argv))


def test_bench_map_small_run_reports_consistent_numbers(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert bench.run(parse("--size", "3000", "--dim", "64", "--queries", "20", "--batch", "8",
                           "--ann-size", "2000", "--ef-search", "16,64", "--nprobe", "4",
                           "--pq-m", "8", "--nlist", "16", "--threads", "1",
                           "--json", str(out))) == 0
    report = json.loads(out.read_text())
    exact = report["exact"]
    assert exact["top1_matches_argmax"] and exact["faiss_top1_matches"]
    for name in ("numpy_matvec", "priormap_search", "faiss_flat_single", "priormap_batch"):
        assert exact[name]["median_ms"] > 0
    kinds = {a["kind"]: a for a in report["ann"]}
    assert set(kinds) == {"hnsw", "ivfpq"} and kinds["hnsw"]["size"] == 2000
    assert [r["ef_search"] for r in kinds["hnsw"]["settings"]] == [16, 64]
    for a in kinds.values():
        for r in a["settings"]:
            assert 0.5 <= r["recall_at_1"] <= 1.0 and r["median_ms"] > 0
    io = report["io"]
    assert io["map_bytes"] > 3000 * 64 * 4 and io["load_verified_s"] > 0
    assert "PriorMap.search / numpy matvec" in capsys.readouterr().out


def test_bench_map_rejects_bad_flags():
    with pytest.raises(UserError, match="--ann: unknown kind 'annoy'"):
        bench.run(parse("--size", "10", "--ann", "annoy"))
    with pytest.raises(UserError, match="--ef-search"):
        bench.run(parse("--size", "10", "--ef-search", "a,b"))
