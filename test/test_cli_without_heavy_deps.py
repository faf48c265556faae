"""The CLI on a robot installed with the run-time keys only (no torch, onnx, trimesh).

Each test runs ``distilvpr`` in a subprocess whose ``sitecustomize`` makes
``import torch`` (onnx, trimesh, ...) raise ModuleNotFoundError, as on a
robot without them: every subcommand's ``--help`` must work, and a
subcommand that needs one must say in one line what to install (exit 2).
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from distilvpr_core.app.cli import all_subcommands
from distilvpr_core.foundation.missing_deps import EXTRAS

REPO = Path(__file__).resolve().parent.parent
HIDDEN = ("torch", "torchvision", "onnx", "onnxscript", "trimesh", "embreex", "tensorboard")
BLOCKER = f'''
import sys
HIDDEN = {HIDDEN!r}
class _Hide:
    """Finds nothing for the hidden modules: import raises ModuleNotFoundError."""
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in HIDDEN:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None
sys.meta_path.insert(0, _Hide())
'''


@pytest.fixture(scope="module")
def hidden_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    site = tmp_path_factory.mktemp("hide_heavy")
    (site / "sitecustomize.py").write_text(BLOCKER)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(site), str(REPO), env.get("PYTHONPATH", "")])
    return env


def _cli(env: dict[str, str], *argv: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "distilvpr_core.app.cli", *argv], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def test_blocker_hides_torch(hidden_env: dict[str, str]) -> None:
    res = subprocess.run([sys.executable, "-c", "import torch"], env=hidden_env,
                         capture_output=True, text=True, timeout=60)
    assert res.returncode != 0 and "ModuleNotFoundError" in res.stderr


@pytest.mark.parametrize("argv", [[name] for name in all_subcommands()]
                         + [["bench", t] for t in ("embedder", "map", "node", "distill", "sim")]
                         + [["map", a] for a in ("build", "info", "verify", "merge", "query", "init")])
def test_help_without_heavy_modules(hidden_env: dict[str, str], argv: list[str]) -> None:
    res = _cli(hidden_env, *argv, "--help")
    assert res.returncode == 0, res.stderr[-2000:]
    assert "usage: distilvpr" in res.stdout
    assert "Traceback" not in res.stderr


@pytest.mark.parametrize("argv, module", [
    (["distil", "--set", "run.out_dir=OUT"], "torch"),
    (["eval", "--checkpoint", "student.pt"], "torch"),
    (["export", "--checkpoint", "student.pt", "--out", "OUT/m.onnx"], "torch"),
    (["synth", "--out", "OUT/town"], "trimesh"),
])
def test_needing_a_hidden_module_says_what_to_install(hidden_env: dict[str, str], tmp_path: Path,
                                                      argv: list[str], module: str) -> None:
    argv = [a.replace("OUT", str(tmp_path)) for a in argv]
    res = _cli(hidden_env, *argv, cwd=tmp_path)
    assert res.returncode == 2, res.stderr[-2000:]
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    key, pip = EXTRAS[module]
    assert f"'{module}'" in lines[0] and key in lines[0] and pip.split()[0] in lines[0]


def test_distil_entry_point_script_help(hidden_env: dict[str, str]) -> None:
    # `ros2 run distilvpr_core distil --help` runs scripts/distil.
    res = subprocess.run([sys.executable, str(REPO / "scripts" / "distil"), "--help"], env=hidden_env,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and "--config" in res.stdout, res.stderr[-2000:]
