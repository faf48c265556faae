"""``distilvpr synth --seeds``: one town per seed, resumable, with its cost recorded."""
from __future__ import annotations

import json

import numpy as np
import pytest

from distilvpr_core.data import native
from distilvpr_core.foundation.errors import UserError
from distilvpr_core.sim import cli as synth_cli
from distilvpr_core.sim.towns import parse_seeds, town_dir

# A very small town: 4 frames per drive, 2 drives, no bags/Oxford/report.
SMALL = ["route.frames=4", "camera.width=64", "camera.height=48", "lidar.azimuth_bins=64",
         "output.bags=false", "output.oxford=false", "output.difficulty_report=false"]


def _synth(out, *extra):
    argv = ["--config", "config/synth_tiny.yaml", "--out", str(out), "--no-progress", "--workers", "1"]
    for o in SMALL:
        argv += ["--set", o]
    return synth_cli.main(argv + list(extra))


def test_parse_seeds_lists_and_ranges():
    assert parse_seeds(["0", "1", "2"]) == [0, 1, 2]
    assert parse_seeds(["0-4"]) == [0, 1, 2, 3, 4]
    assert parse_seeds(["3", "1-2", "2", "7,9"]) == [3, 1, 2, 7, 9]
    for bad in (["4-2"], ["x"], ["-1"], []):
        with pytest.raises(UserError, match="--seeds"):
            parse_seeds(bad)


def test_towns_are_different_worlds_and_resume(tmp_path, capsys):
    out = tmp_path / "towns"
    assert _synth(out, "--seeds", "3-4") == 0
    a, b = native.open_dataset(town_dir(out, 3)), native.open_dataset(town_dir(out, 4))
    assert a.traversals == b.traversals
    # different seeds -> different worlds (routes and images differ)
    ta, tb = a.traversal(a.traversals[0]), b.traversal(b.traversals[0])
    assert not np.array_equal(ta.load_image(0), tb.load_image(0))
    rec = json.loads((out / "towns.json").read_text())
    assert set(rec["towns"]) == {"3", "4"}
    assert all(t["bytes"] > 0 and t["render_s"] > 0 and t["frames"] > 0 for t in rec["towns"].values())
    # resumable: a finished town is skipped (its bytes untouched) ...
    before = (town_dir(out, 3) / "dataset.json").stat().st_mtime_ns
    # ... an interrupted one (only its hidden partial directory left) is rendered again
    (out / ".town_5.abc.partial").mkdir()
    (out / ".town_5.abc.partial" / "junk").write_text("x")
    capsys.readouterr()
    assert _synth(out, "--seeds", "3", "5") == 0
    assert "town_3: finished earlier, skipped" in capsys.readouterr().err
    assert (town_dir(out, 3) / "dataset.json").stat().st_mtime_ns == before
    assert (town_dir(out, 5) / "dataset.json").is_file()
    assert not list(out.glob(".town_5.*.partial"))
    assert set(json.loads((out / "towns.json").read_text())["towns"]) == {"3", "4", "5"}


def test_one_town_without_seeds_still_refuses_a_full_directory(tmp_path, capsys):
    (tmp_path / "x").write_text("x")
    assert _synth(tmp_path) == 2
    assert "not empty" in capsys.readouterr().err
    assert _synth(tmp_path / "t", "--seeds", "2-1") == 2
    assert "--seeds '2-1'" in capsys.readouterr().err
