"""Check a colcon install tree the way `ros2 run` / `ros2 launch` resolve it.

Run with the workspace's setup sourced (AMENT_PREFIX_PATH includes it):

    python scripts/check_install_tree.py

`ros2 run PKG EXE` looks up PKG's prefix in the ament index and runs
PREFIX/lib/PKG/EXE; `ros2 launch PKG FILE` looks in PREFIX/share/PKG/ and
its subfolders.  This script does those look-ups with ament_index_python and
runs the executables with --help.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from ament_index_python.packages import get_package_prefix, get_package_share_directory


def check(cond: bool, what: str) -> None:
    print(f"  [{'ok' if cond else 'FAIL'}] {what}")
    if not cond:
        raise SystemExit(f"install-tree check failed: {what}")


def main() -> int:
    print("install-tree checks (ament index, as ros2 run / ros2 launch resolve):")
    core_prefix = Path(get_package_prefix("distilvpr_core"))
    ros_prefix = Path(get_package_prefix("distilvpr_ros"))
    print(f"  distilvpr_core prefix: {core_prefix}")
    distil = core_prefix / "lib" / "distilvpr_core" / "distil"
    check(distil.is_file() and os.access(distil, os.X_OK), f"{distil} is an executable")
    # No python3 on PATH: distil must run with the interpreter that built the package.
    bare = {"PATH": "/nonexistent", **{k: os.environ[k] for k in ("AMENT_PREFIX_PATH", "PYTHONPATH")
                                       if k in os.environ}}
    res = subprocess.run([str(distil), "--help"], capture_output=True, text=True, timeout=120, env=bare)
    check(res.returncode == 0 and "--config" in res.stdout,
          f"`ros2 run distilvpr_core distil --help` runs without python3 on PATH (rc={res.returncode}) "
          f"{res.stderr[-300:]}")
    # The README's `--config config/distil_synth.yaml` outside the source tree: the installed
    # copy is found (a bad --set then fails on that file, naming it, exit 2).
    with tempfile.TemporaryDirectory() as cwd:
        res = subprocess.run([str(distil), "--config", "config/distil_synth.yaml", "--set", "no_such_key=1"],
                             capture_output=True, text=True, timeout=300, cwd=cwd)
    # The installed share, or the checkout's config/ under --symlink-install (a develop install).
    check(res.returncode == 2 and "no_such_key" in res.stderr
          and re.search(r": error: /\S*(share/distilvpr_core/)?config/distil_synth\.yaml", res.stderr),
          f"`distil --config config/distil_synth.yaml` outside the source tree reads the installed config "
          f"(rc={res.returncode}) {res.stderr[-300:]}")
    share = Path(get_package_share_directory("distilvpr_ros"))
    check((share / "launch" / "localize.launch.py").is_file(), "share/distilvpr_ros/launch/localize.launch.py")
    for cfg in ("localize.yaml", "distil_synth.yaml", "synth_town.yaml", "synth_tiny.yaml"):
        check((share / "config" / cfg).is_file(), f"share/distilvpr_ros/config/{cfg}")
    for cfg in ("distil_synth.yaml", "synth_town.yaml"):
        core_cfg = Path(get_package_share_directory("distilvpr_core")) / "config" / cfg
        check(core_cfg.is_file(), f"share/distilvpr_core/config/{cfg} (--config NAME)")
    check((Path(get_package_share_directory("distilvpr_core")) / "package.xml").is_file(),
          "share/distilvpr_core/package.xml")
    check((share / "config" / "distilvpr.rviz").is_file(), "share/distilvpr_ros/config/distilvpr.rviz (rviz:=true)")
    for exe in ("localizer", "lifecycle_localizer", "replay_eval", "distilvpr"):
        path = ros_prefix / "lib" / "distilvpr_ros" / exe
        check(path.is_file() and os.access(path, os.X_OK), f"lib/distilvpr_ros/{exe} (ros2 run distilvpr_ros {exe})")
    # The ROS subcommands reach `distilvpr` through the distilvpr.plugins entry point.
    distilvpr = ros_prefix / "lib" / "distilvpr_ros" / "distilvpr"
    for argv in (["replay-eval", "--help"], ["bench", "node", "--help"]):
        res = subprocess.run([str(distilvpr), *argv], capture_output=True, text=True, timeout=300)
        check(res.returncode == 0 and "usage: distilvpr" in res.stdout,
              f"`distilvpr {' '.join(argv)}` from the install tree (rc={res.returncode}) {res.stderr[-300:]}")
    res = subprocess.run([str(ros_prefix / "lib" / "distilvpr_ros" / "replay_eval"), "--help"],
                         capture_output=True, text=True, timeout=300)
    check(res.returncode == 0 and "--compare-offline" in res.stdout,
          f"`ros2 run distilvpr_ros replay_eval --help` runs (rc={res.returncode}) {res.stderr[-300:]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
