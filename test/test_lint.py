"""Lint, as ROS 2 packages run ament_flake8 and ament_pep257: ``ruff check`` with the
project's ruff.toml (line length, unused imports and undefined names, a docstring on
every public class and function of the two packages) must find nothing."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def test_ruff_finds_nothing() -> None:
    pytest.importorskip("ruff", reason="ruff is installed by make setup (requirements.txt)")
    res = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "--output-format", "concise", "."],
                         cwd=REPO, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout[-6000:] + res.stderr[-2000:]


def test_the_lint_catches_an_unused_import(tmp_path: Path) -> None:
    """The rules are on: a file with an unused import and a long line fails them."""
    bad = tmp_path / "bad.py"
    bad.write_text('"""x."""\nimport os\nX = "' + "a" * 130 + '"\n')
    res = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "--config",
                          str(REPO / "ruff.toml"), str(bad)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 1 and "F401" in res.stdout and "E501" in res.stdout, res.stdout
