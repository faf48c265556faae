"""`distilvpr bench [embedder|map|node] ...`: the speed benchmarks in one place.

Each target lives in its own module (imported only when chosen) and prints
numbers measured in one run, with ratios against a baseline timed in the same
run, so a noisy machine still gives meaningful comparisons.
``distilvpr bench --model student.onnx`` is short for ``bench embedder``.
"""
from __future__ import annotations

import argparse
import importlib

HELP = "speed benchmarks: embedder backends (default), map search, node latency, distillation step"

#: The core's targets; ``node`` (it needs ROS) comes from plugins.bench_targets().
CORE_TARGETS: dict[str, str] = {
    "embedder": "distilvpr_core.bench.embedder",
    "map": "distilvpr_core.bench.map",
    "distill": "distilvpr_core.bench.distill",
}
DEFAULT_TARGET = "embedder"


def targets() -> dict[str, str]:
    """name -> module of every benchmark target (core ones first)."""
    from ..foundation.plugins import bench_targets
    return {**CORE_TARGETS, **bench_targets()}


def add_arguments(parser: argparse.ArgumentParser, argv_hint: list[str] | None = None) -> None:
    """Add one sub-parser per target; only the chosen target's module is imported."""
    sub = parser.add_subparsers(dest="bench_target", metavar="TARGET")
    all_targets = targets()
    chosen = next((a for a in (argv_hint or []) if a in all_targets), None)
    for name, module_name in all_targets.items():
        if name == chosen:
            module = importlib.import_module(module_name)
            sp = sub.add_parser(name, help=module.HELP, description=module.HELP)
            module.add_arguments(sp)
            sp.set_defaults(_bench_run=module.run)
        else:
            sub.add_parser(name, help=f"see 'distilvpr bench {name} --help'")


def normalise_argv(argv: list[str]) -> list[str]:
    """``bench --model X`` -> ``bench embedder --model X`` (help stays top-level)."""
    i = argv.index("bench")
    rest = argv[i + 1:]
    if rest and rest[0] not in targets() and rest[0] not in ("-h", "--help"):
        return argv[:i + 1] + [DEFAULT_TARGET] + rest
    return argv


def run(args: argparse.Namespace) -> int:
    """Run the ``distilvpr bench`` target chosen on the command line; its exit code (0 if it returns None).
    Exits naming the targets if none was chosen."""
    if getattr(args, "_bench_run", None) is None:
        raise SystemExit("distilvpr bench: choose a target: " + ", ".join(targets()))
    return int(args._bench_run(args) or 0)
