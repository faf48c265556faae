"""Run directories: every run records its resolved config, argv, versions, commit.

Layout of ``<root>/<YYYYmmdd-HHMMSS>-<name>/``::

    config.yaml     the resolved configuration (after --set overrides)
    argv.txt        the command line, one argument per line
    versions.json   python / numpy / torch / onnxruntime / faiss versions, host
    git.txt         ``git describe --always --dirty`` of the source tree, or "unknown"
"""
from __future__ import annotations

import json
import platform
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any, Sequence

from ..foundation.atomic import write_text_atomic
from ..foundation.config import dump_yaml

_PACKAGES = ("numpy", "torch", "torchvision", "onnxruntime", "onnx", "faiss-cpu", "rclpy", "rosbags")


def package_versions() -> dict[str, str]:
    """Installed versions of the packages that change numbers, plus the host."""
    out = {"python": platform.python_version(), "platform": platform.platform(),
           "machine": platform.machine()}
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def git_commit(start: Path | None = None) -> str:
    """``git describe --always --dirty`` of the source checkout, or "unknown"."""
    here = start or Path(__file__).resolve().parent
    try:
        res = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=here,
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return res.stdout.strip() if res.returncode == 0 and res.stdout.strip() else "unknown"


def create_run_dir(root: str | Path, name: str, config: Any,
                   argv: Sequence[str] | None = None) -> Path:
    """Create a fresh timestamped run directory under ``root`` and record the run."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    root = Path(root)
    run = root / f"{stamp}-{name}"
    suffix = 1
    while run.exists():
        suffix += 1
        run = root / f"{stamp}-{name}-{suffix}"
    run.mkdir(parents=True)
    write_text_atomic(run / "config.yaml", dump_yaml(config))
    write_text_atomic(run / "argv.txt", "\n".join(sys.argv if argv is None else argv) + "\n")
    write_text_atomic(run / "versions.json", json.dumps(package_versions(), indent=2) + "\n")
    write_text_atomic(run / "git.txt", git_commit() + "\n")
    return run
