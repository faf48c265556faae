"""The report directory: strict JSON, markdown tables, real PNGs, partial reports."""
from __future__ import annotations

import json

import pytest
from PIL import Image

from distilvpr_core.loopeval.outcome import QueryOutcome
from distilvpr_core.loopeval.report import PLOTS, write_report
from test_loopeval_metrics import MAP, hand_case


def test_report_has_metrics_tables_and_plots(tmp_path):
    res = write_report(tmp_path / "rep", hand_case(), MAP, meta={"title": "hand", "mode": "test"},
                       extra_counts={"unmatched_answers": 3})
    rep = tmp_path / "rep"
    data = json.loads((rep / "metrics.json").read_text())
    assert data == res and data["complete"] is True and data["missing"] == []
    assert data["metrics"]["recall_at_n"]["1"] == pytest.approx(0.4)
    assert data["metrics"]["counts"]["unmatched_answers"] == 3
    md = (rep / "report.md").read_text()
    assert "| 40.0 % | 60.0 % | 60.0 % | 0.300 | 20.0 % | 0.9000 |" in md
    assert "INCOMPLETE" not in md
    for name in PLOTS:
        with Image.open(rep / name) as im:
            assert im.format == "PNG" and im.size[0] >= 400
            # A plot with content has many colours, not a blank canvas.
            assert len(im.convert("RGB").getcolors(1 << 20)) > 20
    csv = (rep / "per_query.csv").read_text().splitlines()
    header = csv[0].split(",")
    assert header[-2:] == ["top1_correct", "accepted"] and len(csv) == 1 + 7
    row = dict(zip(header, csv[2].split(",")))
    assert row["top1_correct"] == "0" and row["accepted"] == ""       # q1: wrong top-1, acceptance unknown


def test_partial_report_says_what_is_missing(tmp_path):
    outs = [QueryOutcome(i, None, answered=False) for i in range(3)]
    res = write_report(tmp_path, outs, None, missing=["no ground truth: topic /gt not in bag"])
    assert res["complete"] is False
    assert json.loads((tmp_path / "metrics.json").read_text())["metrics"]["latency_s"]["mean"] is None
    md = (tmp_path / "report.md").read_text()
    assert md.index("INCOMPLETE") < md.index("| queries") and "topic /gt not in bag" in md
    assert all((tmp_path / p).stat().st_size > 1000 for p in PLOTS)


def test_rewriting_a_report_replaces_it(tmp_path):
    write_report(tmp_path, hand_case(), MAP, missing=["first run"])
    write_report(tmp_path, hand_case(), MAP)
    assert json.loads((tmp_path / "metrics.json").read_text())["complete"] is True
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]   # no temp files left
