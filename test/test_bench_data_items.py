"""scripts/bench_data_items.py: per-item data-loader cost with and without data.cache_images."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "bench_data_items.py"


def _module():
    spec = importlib.util.spec_from_file_location("bench_data_items", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_it_times_both_item_kinds_and_the_bev_grid(synth_tiny, tmp_path, repo_root, monkeypatch, capsys):
    monkeypatch.chdir(repo_root)
    out = tmp_path / "items.json"
    rc = _module().main(["--set", f"data.root={synth_tiny}", "--set", "data.input_size=[64, 48]",
                         "--set", "teacher.bev.cells=16", "--items", "3", "--out", str(out)])
    assert rc == 0
    res = json.loads(out.read_text())
    assert res["items"] == 3 and res["input_size"] == [64, 48]
    assert set(res["ms_per_item"]) == {"student_plain", "student_cached", "teacher_plain",
                                       "teacher_cached", "bev_grid"}
    assert all(v > 0 for v in res["ms_per_item"].values())
    assert set(res["ratio_cached_over_plain"]) == {"student", "teacher"} and res["points_per_scan"] > 0


def test_bad_input_is_a_clear_error(tmp_path, repo_root, monkeypatch, capsys):
    monkeypatch.chdir(repo_root)
    rc = _module().main(["--set", f"data.root={tmp_path / 'missing'}", "--items", "2"])
    assert rc == 2 and "error:" in capsys.readouterr().err
