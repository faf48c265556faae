"""The ``localizer`` node: camera in, scored loop-closure candidates out.

Configured and active from construction; the wiring (topics, services,
parameters) is :class:`distilvpr_ros.localizer_wiring.LocalizerMixin`, which
the managed :mod:`distilvpr_ros.lifecycle_localizer` shares.  See
docs/node.md for the topic and parameter reference, and its exit codes.

Run: ``python -m distilvpr_ros.localizer --ros-args --params-file
config/localize.yaml -p map_path:=MAP -p model_path:=MODEL``.
"""
from __future__ import annotations

import os
import re
import sys
import tempfile
from typing import Any, Callable, Sequence

import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.subscription import RCLError

from distilvpr_core.foundation.errors import UserError

from .localizer_wiring import LocalizerMixin


class Localizer(LocalizerMixin, Node):
    """The plain (unmanaged) node: configured and active from construction."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__("localizer", **kwargs)
        try:
            self._declare()
            self._load()
            self._open()
        except BaseException:
            self._free()
            self._stop_log_forwarding()
            raise

    def destroy_node(self) -> None:
        self._free()
        self._stop_log_forwarding()
        super().destroy_node()


#: Exit codes of the node processes (docs/node.md): 0 a requested stop, 1 a bug
#: (with its traceback), EXIT_CONFIG a configuration error (bad parameter,
#: params file, map or model), printed as one line.  The launch file backs
#: off when respawning after it (launch_args.respawn_after).
EXIT_CONFIG = 2


def _rcl_message(exc: BaseException) -> str:
    """rcl's error without its C source locations (``, at /project/src/parse.c:435``)."""
    return re.sub(r",? at [^,]*\.c:\d+", "", str(exc)).strip()


def _init(argv: Sequence[str] | None) -> None:
    """``rclpy.init``; when it fails, rcl's own "Failed to parse global
    arguments" log line (written to fd 2 by C code) is dropped, so the user
    sees one line: the RCLError's, which says more."""
    sys.stderr.flush()
    saved = os.dup(2)
    ok = False
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            rclpy.init(args=argv)
            ok = True
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            if ok:  # anything rcl said on a good start is kept
                held.seek(0)
                os.write(2, held.read())


def run_node(make_node: Callable[[], Any], argv: Sequence[str] | None = None, name: str = "localizer") -> int:
    """init, build the node, spin, clean exit; the exit code (see :data:`EXIT_CONFIG`)."""
    try:
        _init(argv)
    except RCLError as exc:  # rcl could not parse a -p value or a params file
        print(f"{name}: error: {_rcl_message(exc)}", file=sys.stderr)
        return EXIT_CONFIG
    node = None
    try:
        node = make_node()
        rclpy.spin(node)
    except UserError as exc:
        # Start-up mistake: one line naming the parameter or file, no traceback.
        rclpy.logging.get_logger(name).fatal(str(exc))
        return EXIT_CONFIG
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except RuntimeError:
        # A SIGINT/SIGTERM that shuts the context down while the executor builds its wait set
        # surfaces as rclpy's RCLError ("context is not valid") instead of
        # ExternalShutdownException: that is a requested shutdown too.  Anything else is a bug.
        if rclpy.ok():
            raise
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``localizer`` / ``python -m distilvpr_ros.localizer``; exit code."""
    return run_node(Localizer, argv)


if __name__ == "__main__":
    sys.exit(main())
