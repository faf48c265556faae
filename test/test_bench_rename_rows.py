"""scripts/bench_rename_rows.py: renaming benchmark rows after a validation choice."""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))

from bench_rename_rows import main, rename_state  # noqa: E402


def test_swap_applies_once_and_keeps_branches_and_other_rows():
    state = {"results": {"seed0/default": 1, "seed0/default_local_norm": 2, "seed0/teacher": 3},
             "best_val": {"seed0/default_local_norm/student": 40.0, "seed0/teacher/teacher": 90.0},
             "command": "x"}
    out = rename_state(state, {"default_local_norm": "default", "default": "default_no_input_norm"})
    assert out["results"] == {"seed0/default_no_input_norm": 1, "seed0/default": 2, "seed0/teacher": 3}
    assert out["best_val"] == {"seed0/default/student": 40.0, "seed0/teacher/teacher": 90.0}
    assert out["command"] == "x"


def test_bad_pair_is_refused(tmp_path, capsys):
    f = tmp_path / "seed0" / "results.json"
    f.parent.mkdir()
    f.write_text("{}")
    assert main([str(f), "--rename", "nodelimiter", "--out", str(tmp_path / "o")]) == 2
    assert "OLD=NEW" in capsys.readouterr().err
