"""Bad synth configs and output directories fail before any work, naming the key."""
from __future__ import annotations

import argparse

import pytest

from distilvpr_core.foundation.config import ConfigError, load_config
from distilvpr_core.foundation.errors import UserError
from distilvpr_core.sim import cli as synth_cli
from distilvpr_core.sim.config import SynthConfig

TINY = "config/synth_tiny.yaml"
TOWN = "config/synth_town.yaml"


@pytest.mark.parametrize("path", [TINY, TOWN])
def test_shipped_configs_load(repo_root, path):
    cfg = load_config(SynthConfig, repo_root / path)
    roles = [t.role for t in cfg.traversals]
    assert roles.count("train") >= 2 and roles.count("val") >= 1 and roles.count("test") >= 2


def test_default_town_meets_issue_sizes(repo_root):
    cfg = load_config(SynthConfig, repo_root / TOWN)
    assert len(cfg.traversals) >= 4 and cfg.route.frames >= 600
    assert (cfg.camera.width, cfg.camera.height) == (320, 240) and cfg.lidar.beams == 32
    assert any(t.reverse_fraction > 0 for t in cfg.traversals)
    tests = [t for t in cfg.traversals if t.role == "test"]
    assert {t.time_of_day == "night" for t in tests} == {True, False}


@pytest.mark.parametrize("override, key", [
    ("camera.width=-5", "camera.width"),
    ("traversals=[{name: a, time_of_day: teatime}]", "traversals[0].time_of_day"),
    ("traversals=[{name: a, weather: snowstorm}]", "traversals[0].weather"),
    ("route.frames=100000", "route.frames"),
    ("lidar.beams=0", "lidar.beams"),
    ("town.bogus=1", "town.bogus"),
    ("traversals=[{name: a}, {name: a}]", "duplicate"),
    ("traversals=[{name: 'a/b'}]", "traversals[0].name"),
    ("lidar.vfov_down_deg=20", "lidar.vfov_down_deg"),
])
def test_bad_values_name_the_key(repo_root, override, key):
    with pytest.raises(ConfigError, match=key.replace("[", r"\[").replace("]", r"\]")):
        load_config(SynthConfig, repo_root / TINY, overrides=[override])


def _args(**kw):
    parser = argparse.ArgumentParser()
    synth_cli.add_arguments(parser)
    argv = ["--config", kw.pop("config"), "--out", str(kw.pop("out")), "--no-progress"]
    for o in kw.pop("set", []):
        argv += ["--set", o]
    if kw.pop("overwrite", False):
        argv.append("--overwrite")
    return parser.parse_args(argv)


def test_cli_refuses_non_empty_out_dir(repo_root, tmp_path):
    (tmp_path / "keep.txt").write_text("mine")
    with pytest.raises(UserError, match="--overwrite"):
        synth_cli.run(_args(config=str(repo_root / TINY), out=tmp_path))
    assert (tmp_path / "keep.txt").read_text() == "mine"


def test_cli_bad_config_fails_before_writing(repo_root, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(ConfigError, match="route.frames"):
        synth_cli.run(_args(config=str(repo_root / TINY), out=out, set=["route.frames=99999"]))
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_interrupted_run_leaves_no_dataset(repo_root, tmp_path, monkeypatch):
    from distilvpr_core.sim import pipeline as gen
    from distilvpr_core.sim.config import SynthConfig as C
    cfg = load_config(C, repo_root / TINY, overrides=["route.frames=3", "output.bags=false"])
    calls = {"n": 0}
    real = gen.render_frame

    def flaky(task):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        return real(task)
    monkeypatch.setattr(gen, "render_frame", flaky)
    out = tmp_path / "ds"
    with pytest.raises(KeyboardInterrupt):
        gen.generate(cfg, out, workers=1, progress=False)
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_cli_main_prints_one_line_error(repo_root, tmp_path, capsys):
    rc = synth_cli.main(["--config", str(repo_root / TINY), "--out", str(tmp_path / "o"),
                         "--set", "camera.height=0", "--no-progress"])
    assert rc == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "camera.height" in err[0]


def test_sigterm_leaves_nothing_behind(repo_root, tmp_path):
    """Killing a running synth (SIGTERM) removes its temporary output."""
    import os
    import signal
    import subprocess
    import sys
    import time
    out = tmp_path / "ds"
    code = ("import sys; from distilvpr_core.sim.cli import main; "
            f"sys.exit(main(['--config', {str(repo_root / TINY)!r}, '--out', {str(out)!r}, '--no-progress', "
            "'--set', 'route.frames=24', '--set', 'output.difficulty_report=false']))")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=repo_root)
    try:
        deadline = time.monotonic() + 60
        while not list(tmp_path.glob(".ds.*.partial/traversals")) and time.monotonic() < deadline:
            if proc.poll() is not None:
                break
            time.sleep(0.05)
        assert proc.poll() is None, "generation finished before it could be interrupted"
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode != 0
    assert list(tmp_path.iterdir()) == []
