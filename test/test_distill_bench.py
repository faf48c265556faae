"""The distillation benchmark runs end to end on a tiny real student."""
from __future__ import annotations

import argparse
import json

import pytest
import torch

from distilvpr_core.bench import distill as bench
from distilvpr_core.foundation.errors import UserError


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


class _VirtualClock:
    """A perf_counter that only moves when the code under test says work was done."""

    def __init__(self) -> None:
        self.now_s = 0.0

    def __call__(self) -> float:
        return self.now_s

    def spend(self, ms: float) -> None:
        self.now_s += ms / 1e3


def test_median_excludes_the_warm_up_call(monkeypatch):
    clock = _VirtualClock()
    monkeypatch.setattr(bench, "time", type("T", (), {"perf_counter": staticmethod(clock)}))
    durations = iter([900.0, 3.0, 1.0, 2.0])  # first call is the warm-up
    assert bench._median_ms(lambda: clock.spend(next(durations)), 3, lambda: None) == pytest.approx(2.0)


def test_student_step_times_the_distillation_term_only_in_the_distil_step(monkeypatch):
    """Forward costs 10 ms and the distillation term 3 ms (virtual): plain 10, distil 13, ratio 1.3."""
    from distilvpr_core import distill as distill_pkg
    from distilvpr_core import models as models_pkg

    clock = _VirtualClock()
    monkeypatch.setattr(bench, "time", type("T", (), {"perf_counter": staticmethod(clock)}))
    real_build_student, real_build_loss = models_pkg.build_student, distill_pkg.build_distill_loss
    calls = {"distill": 0}

    def slow_student(cfg):
        model = real_build_student(cfg)
        model.register_forward_hook(lambda *_: clock.spend(10.0))
        return model

    def slow_loss(cfg):
        loss = real_build_loss(cfg)

        def timed(s, t):
            calls["distill"] += 1
            clock.spend(3.0)
            return loss(s, t)
        return timed

    monkeypatch.setattr(models_pkg, "build_student", slow_student)
    monkeypatch.setattr(distill_pkg, "build_distill_loss", slow_loss)
    torch.set_num_threads(1)
    res = bench._student_steps(_args("--batch", "4", "--dim", "16", "--size", "64", "48", "--repeats", "3"),
                               torch.device("cpu"), lambda: None)
    assert res["step_plain_ms"] == pytest.approx(10.0)
    assert res["step_distilvpr_ms"] == pytest.approx(13.0)
    assert res["step_ratio"] == pytest.approx(1.3)
    assert calls["distill"] == 1 + 3  # one warm-up distil step, then one per repeat
