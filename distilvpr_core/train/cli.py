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
    """Options of ``distilvpr distil``: ``--config`` (default: the packaged one) and ``--set KEY=VALUE`` overrides."""
    add_config_args(parser, DEFAULT_CONFIG)


def run(args: argparse.Namespace) -> int:
    """Load the distillation config with its overrides and run the whole training pipeline; returns 0."""
    from ..foundation.config import load_config
    from .config import DistilRunConfig
    from .pipeline import run_pipeline
    cfg = load_config(DistilRunConfig, args.config, args.overrides)
    run_pipeline(cfg, list(sys.argv))
    return 0
