"""scripts/recipe_sweep.py: per-epoch validation table of a sweep, equal-epoch comparison, bad input."""
from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
import recipe_sweep  # noqa: E402


def _run(root: Path, name: str, vals: list[float]) -> Path:
    """A benchmark runs_root holding one run directory whose metrics.json has these val R@1."""
    run = root / name / f"20261207-000000-{name}"
    run.mkdir(parents=True)
    rows = [{"epoch": i, "loss": 1.0, "val_R@1": v} for i, v in enumerate(vals)]
    (run / "metrics.json").write_text(json.dumps({"student": rows, "teacher": []}))
    return root / name


def test_table_compares_at_common_epochs(tmp_path, capsys):
    a = _run(tmp_path, "full", [10.0, 30.0, 40.0])
    b = _run(tmp_path, "cut_short", [20.0, 35.0])   # a run stopped after 2 epochs
    out = tmp_path / "sweep"
    assert recipe_sweep.main(["--runs", str(a), str(b), "--out", str(out)]) == 0
    doc = json.loads(out.with_suffix(".json").read_text())
    assert doc["full"] == {"val_r1_by_epoch": [10.0, 30.0, 40.0], "best": 40.0, "best_epoch": 3}
    assert doc["cut_short"]["best_epoch"] == 2
    md = out.with_suffix(".md").read_text()
    # the full run is best overall, but over the epochs both have (1-2) the short one leads
    assert "| full | 10.0 | 30.0 | 40.0 | 40.0 (3) | 30.0 |" in md
    assert "| cut_short | 20.0 | 35.0 | – | 35.0 (2) | 35.0 |" in md
    assert "best over epochs 1-2" in md


def test_refuses_a_folder_without_one_run(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert recipe_sweep.main(["--runs", str(tmp_path / "empty"), "--out", str(tmp_path / "x")]) == 2
    assert "expected one run directory" in capsys.readouterr().err
    bad = tmp_path / "bad" / "run"
    bad.mkdir(parents=True)
    (bad / "metrics.json").write_text("{not json")
    assert recipe_sweep.main(["--runs", str(bad), "--out", str(tmp_path / "y")]) == 2
    assert "not readable JSON" in capsys.readouterr().err
    assert not (tmp_path / "y.json").exists()
