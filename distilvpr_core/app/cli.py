"""The ``distilvpr`` command (and the ``distil`` entry point for ``ros2 run``).

Subcommands live in their own modules and are imported only when chosen, so
``distilvpr --help`` is instant and a CPU-only robot never imports torch for a
subcommand that does not need it.  A subcommand module provides::

    HELP: str                                       one line for the overview
    add_arguments(parser: argparse.ArgumentParser)  its flags
    run(args: argparse.Namespace) -> int            the work; returns exit code
"""
from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

from .. import __version__
from ..foundation.cli_args import invoke
from ..foundation.plugins import REINSTALL_HINT, subcommands

# name -> (module, one-line help).  Order is the order shown in --help; the
# subcommands that need ROS (replay-eval) come from plugins.subcommands().
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("distilvpr_core.app.demo",
             "run the end-to-end demo: synth town -> distil -> export -> map "
             "-> node replay -> table"),
    "doctor": ("distilvpr_core.app.doctor",
               "check the Python/ROS/GPU environment (or, with --data, a dataset folder) "
               "and print what is found"),
    "synth": ("distilvpr_core.sim.cli",
              "generate the synthetic town (or one town per --seeds): native dataset, rosbag2 per traversal, "
              "Oxford export, difficulty report"),
    "distil": ("distilvpr_core.train.cli",
               "train teacher -> cache teacher embeddings -> distil the camera-only student "
               "-> evaluate"),
    "eval": ("distilvpr_core.evaluation.cli",
             "evaluate a checkpoint: Recall@N / Recall@1% over every ordered pair "
             "of test traversals"),
    "export": ("distilvpr_core.export.cli",
               "export a student checkpoint to ONNX (opset>=17, dynamic batch, "
               "contract in metadata), optional INT8"),
    "export-patch": ("distilvpr_core.export.patch_cli",
                     "export a student's layer-3 map as the dense model of the 'patch' local features "
                     "(PCA to 128-d fitted on calibration images)"),
    "build-engine": ("distilvpr_core.export.engine_cli",
                     "build (or reuse from the cache) a TensorRT 10 engine "
                     "for an exported ONNX student"),
    "train-local": ("distilvpr_core.localtrain.cli",
                    "train the learned local descriptor on synthetic-town correspondences (CPU), "
                    "checkpoint + ONNX export"),
    "map": ("distilvpr_core.mapdb.cli",
            "prior map: init (empty), build from a dataset or rosbag, "
            "info, verify, merge, query"),
    "bench": ("distilvpr_core.bench.cli",
              "speed benchmarks: embedder backends (default), map search, "
              "node latency, distillation step"),
}


def build_parser(only: str | None = None, argv_hint: list[str] | None = None) -> argparse.ArgumentParser:
    """The top-level parser; imports only the module of ``only`` (or none)."""
    parser = argparse.ArgumentParser(
        prog="distilvpr",
        description="DistilVPR: distil a camera+LiDAR place-recognition teacher into a "
                    "camera-only student, deploy it, and localize against a prior map.",
        epilog="Run 'distilvpr SUBCOMMAND --help' for the flags of one subcommand.")
    parser.add_argument("--version", action="version", version=f"distilvpr {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="SUBCOMMAND")
    for name, (module_name, help_text) in all_subcommands().items():
        # argparse %-formats help strings (not descriptions): escape % there.
        sp = sub.add_parser(name, help=help_text.replace("%", "%%"), description=help_text)
        if name == only:
            module = importlib.import_module(module_name)
            if name == "bench":  # bench imports only the chosen target's module
                module.add_arguments(sp, argv_hint)
            else:
                module.add_arguments(sp)
            sp.set_defaults(_run=module.run)
    return parser


def all_subcommands() -> dict[str, tuple[str, str]]:
    """The core's subcommands, then those registered by plugins (the ROS layer)."""
    extra = subcommands()
    # Shown before "bench", the last core entry, as they always were.
    out = {k: v for k, v in SUBCOMMANDS.items() if k != "bench"}
    out.update(extra)
    out["bench"] = SUBCOMMANDS["bench"]
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``distilvpr``; returns the process exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    chosen = next((a for a in argv if not a.startswith("-")), None)
    if chosen == "bench":
        from ..bench.cli import normalise_argv
        argv = normalise_argv(argv)
    known = all_subcommands()
    if chosen is not None and chosen not in known:
        print(f"distilvpr: unknown subcommand {chosen!r}; valid: {', '.join(known)} ({REINSTALL_HINT})",
              file=sys.stderr)
        return 2
    parser = build_parser(chosen, argv)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    return invoke(f"distilvpr {args.command}", args._run, args)


def distil_main(argv: Sequence[str] | None = None) -> int:
    """``ros2 run distilvpr_core distil ...`` == ``distilvpr distil ...``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    return main(["distil", *argv])


if __name__ == "__main__":
    sys.exit(main())
