"""``distilvpr train-local``: train the learned local descriptor on the synthetic town, export ONNX."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..foundation.errors import UserError

HELP = ("train the learned local descriptor on synthetic-town correspondences (CPU), "
        "checkpoint + ONNX export")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``distilvpr train-local``: config (+ --set overrides), output directory."""
    from ..foundation.config import add_config_args
    add_config_args(parser, "config/local_features.yaml")
    parser.add_argument("--out", required=True, metavar="DIR",
                        help="run directory: checkpoint_best.pt, checkpoint_last.pt, local_features.onnx, "
                             "train_log.json")
    parser.add_argument("--overwrite", action="store_true", help="write into a non-empty --out")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    """Train and export; prints where the files went and the validation accuracy."""
    from ..foundation.config import load_config
    from .config import LocalTrainConfig
    from .trainer import train_local
    out = Path(args.out)
    if out.exists() and any(out.iterdir()) and not args.overwrite:
        raise UserError(f"--out {out}: directory exists and is not empty; pass --overwrite or choose another")
    cfg = load_config(LocalTrainConfig, args.config, args.overrides)
    rec = train_local(cfg, out, progress=not args.quiet)
    print(f"wrote {out}/local_features.onnx (weights {rec['onnx']['weights_sha256'][:12]}), "
          f"best validation accuracy {rec['best_val_accuracy']:.3f}; rendering {rec['render_s']:.0f} s, "
          f"training {rec['train_s']:.0f} s")
    return 0
