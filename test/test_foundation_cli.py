"""Every registered subcommand answers --help; user errors are one clean line."""
from __future__ import annotations

import subprocess
import sys

import pytest

from distilvpr_core.app.cli import SUBCOMMANDS, main


@pytest.mark.parametrize("name", sorted(SUBCOMMANDS))
def test_subcommand_help(name: str) -> None:
    res = subprocess.run([sys.executable, "-m", "distilvpr_core.app.cli", name, "--help"],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "usage: distilvpr" in res.stdout and len(res.stdout.splitlines()) >= 3


def test_top_level_help_lists_subcommands() -> None:
    res = subprocess.run([sys.executable, "-m", "distilvpr_core.app.cli", "--help"],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0
    for name in SUBCOMMANDS:
        assert name in res.stdout


def test_no_subcommand_prints_help_and_fails(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "SUBCOMMAND" in capsys.readouterr().out


def test_doctor_runs(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert "numpy" in out and "ROS_AUTOMATIC_DISCOVERY_RANGE" in out
