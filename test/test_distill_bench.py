"""The distillation benchmark runs end to end on a tiny real student."""
from __future__ import annotations

import argparse
import json

import pytest
import torch

from distilvpr_core.bench import distill as bench
from distilvpr_core.errors import UserError


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    return parser.parse_args(list(argv))


def test_bench_reports_loss_and_step_times(tmp_path, capsys):
    torch.set_num_threads(1)
    out = tmp_path / "bench.json"
    assert bench.run(_args("--batch", "6", "--dim", "32", "--size", "64", "48", "--repeats", "1",
                           "--methods", "none", "distilvpr", "--threads", "1", "--json", str(out))) == 0
    data = json.loads(out.read_text())
    res = data["results"]
    assert set(res) == {"loss_none_ms", "loss_distilvpr_ms", "step_plain_ms", "step_distilvpr_ms", "step_ratio",
                        "step_ratio_from_loss"}
    assert all(v > 0 for v in res.values())
    assert res["step_ratio"] == pytest.approx(res["step_distilvpr_ms"] / res["step_plain_ms"])
    assert res["step_ratio_from_loss"] == pytest.approx(1 + res["loss_distilvpr_ms"] / res["step_plain_ms"])
    assert data["meta"]["size"] == [64, 48]
    assert "step_ratio" in capsys.readouterr().out
    assert bench.run(_args("--batch", "128", "--repeats", "1", "--methods", "rkd", "--losses-only",
                           "--threads", "1", "--json", str(out))) == 0
    assert set(json.loads(out.read_text())["results"]) == {"loss_rkd_ms"}


def test_bench_rejects_bad_flags():
    with pytest.raises(UserError, match="--methods: unknown method 'fitnet'"):
        bench.run(_args("--methods", "fitnet"))
    with pytest.raises(UserError, match="--batch 2"):
        bench.run(_args("--batch", "2"))
