"""``--config NAME`` resolves outside the source tree: checkout config/, then the installed share."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from distilvpr_core.foundation.config import ConfigError, config_dirs, find_config, load_config, read_yaml

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("name", ["distil_synth", "distil_synth.yaml", "config/distil_synth.yaml"])
def test_names_resolve_from_any_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    monkeypatch.chdir(tmp_path)  # not the source tree: config/distil_synth.yaml is not here
    assert find_config(name) == REPO / "config" / "distil_synth.yaml"
    assert read_yaml(name) == read_yaml(REPO / "config" / "distil_synth.yaml")


def test_a_file_that_exists_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "distil_synth.yaml").write_text("mine: 1\n")
    assert find_config("config/distil_synth.yaml") == Path("config/distil_synth.yaml")


def test_missing_name_lists_where_it_looked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as err:
        load_config(dict, "no_such_config")
    msg = str(err.value)
    assert "config file not found" in msg
    for d in config_dirs():
        assert str(d / "no_such_config.yaml") in msg


def test_paths_in_other_directories_are_not_searched(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # runs/x/distil_synth.yaml is a path, not a name: no fallback to the shipped file.
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="config file not found"):
        find_config("runs/x/distil_synth.yaml")


def test_installed_share_is_found_through_the_ament_index(tmp_path: Path) -> None:
    # A colcon install prefix: the ament index marker and share/distilvpr_core/config.
    prefix = tmp_path / "install"
    (prefix / "share" / "ament_index" / "resource_index" / "packages").mkdir(parents=True)
    (prefix / "share" / "ament_index" / "resource_index" / "packages" / "distilvpr_core").write_text("")
    (prefix / "share" / "distilvpr_core" / "config").mkdir(parents=True)
    (prefix / "share" / "distilvpr_core" / "config" / "only_installed.yaml").write_text("seen: true\n")
    env = dict(os.environ, AMENT_PREFIX_PATH=os.pathsep.join([str(prefix), os.environ.get("AMENT_PREFIX_PATH", "")]),
               PYTHONPATH=str(REPO))
    res = subprocess.run([sys.executable, "-c", "from distilvpr_core.foundation.config import read_yaml; "
                          "print(read_yaml('config/only_installed.yaml'))"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "{'seen': True}"
