"""Subcommands added to ``distilvpr`` by other installed packages (the ROS layer).

The core never imports the ROS package, not even by name: a package that
adds subcommands declares an entry point in the group :data:`GROUP` whose
object is a module (or any object) with ``SUBCOMMANDS`` (name -> (module,
help)) and/or ``BENCH_TARGETS`` (name -> module).  Those registries are
small and import nothing, so ``distilvpr --help`` stays fast.
"""
from __future__ import annotations

from importlib.metadata import entry_points
from typing import Any

GROUP = "distilvpr.plugins"
#: Said when a subcommand a plugin would add is missing.
REINSTALL_HINT = (f"subcommands that need ROS are registered by the ROS package through the "
                  f"'{GROUP}' entry point; if one is missing, reinstall the package "
                  "(pip install -e . or colcon build)")


def _registries() -> list[Any]:
    found = []
    for ep in sorted(entry_points(group=GROUP), key=lambda e: e.name):
        found.append(ep.load())
    return found


def subcommands() -> dict[str, tuple[str, str]]:
    """name -> (module, one-line help) of every registered plugin subcommand."""
    out: dict[str, tuple[str, str]] = {}
    for reg in _registries():
        out.update(getattr(reg, "SUBCOMMANDS", {}))
    return out


def bench_targets() -> dict[str, str]:
    """name -> module of every registered plugin benchmark target."""
    out: dict[str, str] = {}
    for reg in _registries():
        out.update(getattr(reg, "BENCH_TARGETS", {}))
    return out
