"""Start the localizer as a real process and talk to it over DDS.

Used by the tests and by ``distilvpr bench node``: the node runs exactly as
on a robot (``python -m distilvpr_ros.localizer --ros-args ...``), the caller
is an ordinary rclpy node in this process.  DDS stays on this machine:
:func:`require_local_dds` refuses to run unless discovery is LOCALHOST.
"""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from distilvpr_core.foundation.local_dds import PROFILE_VARS, local_dds_env


def large_images_profile() -> str:
    """Path of config/fastdds_large_images.xml (source tree, else installed share)."""
    from ..share import share_file
    return str(share_file("config/fastdds_large_images.xml"))


def require_local_dds(env: dict[str, str] | None = None, large_images: bool = True) -> dict[str, str]:
    """Environment for talking to a node: :func:`distilvpr_core.foundation.local_dds.local_dds_env`
    (LOCALHOST discovery, any other range refused, a random ROS_DOMAIN_ID if unset).

    With ``large_images`` the shared-memory Fast DDS profile is selected
    unless one is set already: without it most 640x480 raw frames are lost
    (see config/fastdds_large_images.xml).  Returns a copy for children.
    """
    return local_dds_env(env, large_images_profile() if large_images else None)


@contextlib.contextmanager
def local_ros_client(name: str) -> Iterator[Any]:
    """rclpy initialised on the local-only DDS set-up, with one node ``name``.

    The large-image DDS profile chosen by :func:`require_local_dds` is undone
    on exit, so one test module's settings never leak into the next.
    """
    import rclpy
    saved = {var: os.environ.get(var) for var in PROFILE_VARS}
    require_local_dds()
    rclpy.init()
    node = rclpy.create_node(name)
    try:
        yield node
    finally:
        node.destroy_node()
        rclpy.shutdown()
        for var, value in saved.items():
            if value is None:
                os.environ.pop(var, None)
            else:
                os.environ[var] = value


class LocalizerProcess:
    """``python -m distilvpr_ros.localizer`` (or ``module``, e.g. the lifecycle
    node) with ``ros_args`` (everything after ``--ros-args``); stdout+stderr go to ``log_path``.  Use as a context
    manager: the process is always stopped with SIGINT (then SIGKILL)."""

    def __init__(self, ros_args: Sequence[str], log_path: str | Path, cwd: str | Path | None = None,
                 module: str = "distilvpr_ros.localizer") -> None:
        self.log_path = Path(log_path)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "wb")
        args = list(ros_args)
        if args[:1] != ["--ros-args"]:
            args = ["--ros-args", *args]
        env = require_local_dds(dict(os.environ), large_images=False)
        # The child imports this same distilvpr_ros, whatever its working directory.
        source_root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (source_root, env.get("PYTHONPATH", "")) if p)
        self.proc = subprocess.Popen([sys.executable, "-m", module, *args],
                                     stdout=self._log, stderr=subprocess.STDOUT, cwd=cwd, env=env,
                                     start_new_session=True)
        self.returncode: int | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def output(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def exit_reason(self, tail_lines: int = 15) -> str | None:
        """Why the node is gone (exit code, log path and log tail), or None while it runs."""
        if self.alive():
            return None
        tail = "\n".join(self.output().splitlines()[-tail_lines:])
        return f"the localizer exited with code {self.proc.returncode} ({self.log_path}):\n{tail}"

    def stop(self, timeout_s: float = 15.0) -> int:
        """SIGINT, wait, SIGKILL if it hangs; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.returncode = self.proc.returncode
        self._log.close()
        return self.returncode

    def __enter__(self) -> "LocalizerProcess":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class NodeExited(RuntimeError):
    """The localizer process ended while it was being waited for."""


def spin_until(node: Any, predicate: Callable[[], bool], timeout_s: float,
               what: str = "condition", proc: LocalizerProcess | None = None) -> None:
    """Spin ``node`` until ``predicate()``; TimeoutError naming ``what`` (with
    the node's log tail when ``proc`` is given) or if ``proc`` died."""
    import rclpy
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if proc is not None and not proc.alive():
            raise NodeExited(f"localizer exited ({proc.proc.returncode}) while waiting for {what}:\n"
                             + proc.output()[-3000:])
        if time.monotonic() > deadline:
            tail = ("\nnode log:\n" + proc.output()[-3000:]) if proc is not None else ""
            raise TimeoutError(f"timed out after {timeout_s} s waiting for {what}{tail}")
        rclpy.spin_once(node, timeout_sec=0.02)


def diagnostics_values(msg: Any, name_contains: str = "place recognition") -> dict[str, str] | None:
    """key -> value of the localizer's status in a DiagnosticArray, or None."""
    for status in msg.status:
        if name_contains in status.name:
            return {kv.key: kv.value for kv in status.values}
    return None
