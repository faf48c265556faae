"""``distilvpr distil`` (and ``ros2 run distilvpr_core distil``): the flags, and the run.

Kept apart from :mod:`.pipeline` (which imports torch at the top) so that
``--help`` works on a robot without torch; torch is imported in :func:`run`.
"""
from __future__ import annotations

import argparse
import sys

from ..foundation.config import add_config_args

HELP = "train teacher -> cache teacher embeddings -> distil the camera-only student -> evaluate"
#: The default ``--config``: a name, found in config/ of the checkout or the installed share.
DEFAULT_CONFIG = "config/distil_synth.yaml"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_args(parser, DEFAULT_CONFIG)


def run(args: argparse.Namespace) -> int:
    from ..foundation.config import load_config
    from .config import DistilRunConfig
    from .pipeline import run_pipeline
    cfg = load_config(DistilRunConfig, args.config, args.overrides)
    run_pipeline(cfg, list(sys.argv))
    return 0
