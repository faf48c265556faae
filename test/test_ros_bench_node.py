"""``distilvpr bench node`` runs end to end on a short duration and reports sane numbers."""
from __future__ import annotations

import argparse
import json

import pytest

from distilvpr_core.foundation.errors import UserError
from distilvpr_ros import bench_node, synthetic_assets


def parse(argv):
    parser = argparse.ArgumentParser()
    bench_node.add_arguments(parser)
    return parser.parse_args(argv)


def test_bench_requires_a_model_and_map():
    with pytest.raises(UserError, match="--synthetic"):
        bench_node.run(parse(["--duration", "1"]))
    with pytest.raises(UserError, match="NAME:=VALUE"):
        bench_node.run(parse(["--synthetic", "--param", "top_k=3"]))


@pytest.mark.slow
def test_short_bench_measures_latency_next_to_embed_time(tmp_path, capsys):
    import torch
    torch.set_num_threads(1)
    assets = synthetic_assets.build(tmp_path / "assets", places=4)
    out = tmp_path / "bench.json"
    rc = bench_node.run(parse(["--map", str(assets.map), "--model", str(assets.model), "--duration", "4",
                               "--warmup", "1", "--param", "min_interval_s:=0.25",
                               "--param", "intra_op_threads:=1", "--json", str(out)]))
    assert rc == 0
    res = json.loads(out.read_text())
    assert res["backend"] == "onnxruntime" and res["torch_loaded"] == "false"
    assert 8 <= res["answered"] <= 18            # 0.25 s gating over 4 s
    assert res["published_total"] >= 100         # 30 Hz over 5 s, allowing a loaded machine
    # End-to-end includes the node's embed + search, so it can't be smaller.
    assert res["e2e_p50_ms"] >= res["embed_plus_search_p50_ms"] * 0.8 > 0
    assert res["e2e_p99_ms"] >= res["e2e_p50_ms"]
    assert abs(res["rss_growth_mb"]) < 200
    assert set(res["checks"]) and "end-to-end publish->candidates" in capsys.readouterr().out


def test_dds_must_stay_on_this_machine():
    from distilvpr_ros.replay.node_process import require_local_dds
    with pytest.raises(UserError, match="LOCALHOST"):
        require_local_dds({"ROS_AUTOMATIC_DISCOVERY_RANGE": "SUBNET"})
    env = require_local_dds({"ROS_STATIC_PEERS": "192.0.2.1"})
    assert "ROS_STATIC_PEERS" not in env
    assert env["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "LOCALHOST" and 1 <= int(env["ROS_DOMAIN_ID"]) <= 101
    assert env["FASTDDS_DEFAULT_PROFILES_FILE"].endswith("fastdds_large_images.xml")


def test_bench_reports_a_node_that_cannot_start(tmp_path):
    with pytest.raises(UserError, match="no_map_here"):
        bench_node.run(parse(["--map", str(tmp_path / "no_map_here"), "--model", str(tmp_path / "m.onnx"),
                              "--duration", "1"]))
