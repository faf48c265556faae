"""``distilvpr synth``: generate the synthetic multi-traversal town."""
from __future__ import annotations

import argparse
import signal
import threading
from pathlib import Path

HELP = ("generate the synthetic town (or one town per --seeds): native dataset, rosbag2 per traversal, "
        "Oxford export, difficulty report")
DEFAULT_CONFIG = "config/synth_town.yaml"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``distilvpr synth``."""
    from ..foundation.config import add_config_args
    add_config_args(parser, DEFAULT_CONFIG)
    parser.add_argument("--out", required=True, metavar="DIR",
                        help="output dataset directory (created); with --seeds, the towns folder "
                             "(one DIR/town_<seed> per seed)")
    parser.add_argument("--seeds", nargs="+", metavar="SEED", default=None,
                        help="make one town per seed, e.g. --seeds 0 1 2 or --seeds 0-4; a finished "
                             "town is skipped, an interrupted one is rendered again")
    parser.add_argument("--overwrite", action="store_true", help="replace DIR if it exists and is not empty")
    parser.add_argument("--workers", type=int, default=None, metavar="N",
                        help="render processes (default: the config's workers; 0 = one per core)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar or printed report")


def run(args: argparse.Namespace) -> int:
    """Load the config, check the output directory, generate; returns 0."""
    from ..foundation.config import load_config
    from ..foundation.errors import UserError
    from .config import SynthConfig
    from .pipeline import check_output_dir, generate
    cfg = load_config(SynthConfig, args.config, overrides=args.overrides)
    if args.workers is not None and args.workers < 0:
        raise UserError(f"--workers {args.workers}: must be >= 0 (0 = one per core)")
    out = Path(args.out)
    seeds = None
    if args.seeds is not None:
        from .towns import parse_seeds
        seeds = parse_seeds(args.seeds)
    else:
        check_output_dir(out, args.overwrite)
    # SIGTERM becomes KeyboardInterrupt so the temporary output is removed, as on Ctrl-C.
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        if seeds is None:
            generate(cfg, out, overwrite=args.overwrite, workers=args.workers, progress=not args.no_progress)
        else:
            from .towns import generate_towns
            record = generate_towns(cfg, out, seeds, workers=args.workers, overwrite=args.overwrite,
                                    progress=not args.no_progress)
            for seed in seeds:
                town = record["towns"].get(str(seed))
                if town:
                    print(f"town_{seed}: {town['frames']} frames, {town['bytes'] / 2**20:.1f} MiB, "
                          f"rendered in {town['render_s']:.1f} s")
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    print(f"wrote {out}")
    return 0


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry point (same flags as ``distilvpr synth``)."""
    import sys

    from ..foundation.cli_args import standalone_main
    return standalone_main("distilvpr synth", sys.modules[__name__], argv)
