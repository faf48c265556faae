"""What every subcommand module shares: the one-line-error run, and running on its own.

A subcommand module (``HELP``, ``add_arguments(parser)``, ``run(args)``) takes its
flags helper from ``foundation.config.add_config_args`` and these, never the
``distilvpr`` CLI itself: the CLI stays on top of the house, and a module can
also run on its own (``standalone_main``).
"""
from __future__ import annotations

import argparse
import sys
from types import ModuleType
from typing import Callable, Sequence

from .errors import UserError
from .missing_deps import install_hint, missing_extra


def invoke(prog: str, run: Callable[[argparse.Namespace], int | None], args: argparse.Namespace) -> int:
    """Run a subcommand: user errors and a missing training-only module (torch, onnx,
    trimesh) become one line and exit 2, Ctrl-C exit 130."""
    try:
        return int(run(args) or 0)
    except ModuleNotFoundError as exc:
        # A robot with the run-time keys only: say what to install, in one line.
        missing = missing_extra(exc)
        if missing is None:
            raise
        print(f"{prog}: error: {install_hint(missing, prog)}", file=sys.stderr)
        return 2
    except UserError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130


def standalone_main(prog: str, module: ModuleType, argv: Sequence[str] | None = None) -> int:
    """Entry point for one subcommand module run on its own (e.g. ``replay_eval``)."""
    parser = argparse.ArgumentParser(prog=prog, description=module.HELP)
    module.add_arguments(parser)
    return invoke(prog, module.run, parser.parse_args(argv))
