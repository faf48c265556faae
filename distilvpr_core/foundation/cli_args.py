"""What every subcommand module shares: the config flags and the one-line-error run.

A subcommand module (``HELP``, ``add_arguments(parser)``, ``run(args)``) imports
these instead of the ``distilvpr`` CLI itself, so the CLI stays on top of the
house and a module can also run on its own (``standalone_main``).
"""
from __future__ import annotations

import argparse
import sys
from types import ModuleType
from typing import Callable, Sequence

from .errors import UserError


def add_config_args(parser: argparse.ArgumentParser, default_config: str | None = None) -> None:
    """The ``--config FILE`` and repeatable ``--set KEY.PATH=VALUE`` flags."""
    parser.add_argument("--config", default=default_config, metavar="FILE",
                        help="YAML config file" + (f" (default: {default_config})" if default_config else ""))
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override one config value, e.g. --set train.epochs=3 (repeatable)")


def invoke(prog: str, run: Callable[[argparse.Namespace], int | None], args: argparse.Namespace) -> int:
    """Run a subcommand: user errors become one line and exit 2, Ctrl-C exit 130."""
    try:
        return int(run(args) or 0)
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
