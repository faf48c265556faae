"""`distilvpr doctor`: what this machine offers distilvpr, and what is missing.

Checks are read-only and import each optional dependency in isolation, so a
broken package is reported instead of crashing the command.
``distilvpr doctor --data DIR`` checks a dataset folder instead
(:mod:`distilvpr_core.data.check`): files, pickle classes, roles, counts.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
from importlib import metadata
from pathlib import Path

HELP = "check the Python/ROS/GPU environment (or, with --data, a dataset folder) and print what is found"

# (import name, distribution name, what it is for)
_CHECKS = (
    ("numpy", "numpy", "arrays everywhere"),
    ("onnxruntime", "onnxruntime", "CPU/GPU inference backend"),
    ("faiss", "faiss-cpu", "prior-map search"),
    ("rosbags", "rosbags", "reading/writing rosbag2 files"),
    ("torch", "torch", "training, export, backend:=torch"),
    ("torchvision", "torchvision", "backbones"),
    ("trimesh", "trimesh", "synthetic town ray casting"),
    ("embreex", "embreex", "Embree ray tracer for trimesh"),
    ("rclpy", "rclpy", "ROS 2 nodes"),
    ("tensorrt", "tensorrt", "TensorRT backend (NVIDIA GPUs / Jetson)"),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``distilvpr doctor``: ``--strict``, and ``--data`` (with ``--format``, ``--image-root``,
    ``--val-run``) to check a dataset folder instead of the installation."""
    parser.add_argument("--strict", action="store_true",
                        help="exit 1 if a required (non-GPU) dependency is missing")
    parser.add_argument("--data", metavar="DIR",
                        help="check this dataset folder instead (exit 1 on any problem)")
    parser.add_argument("--format", default="auto", choices=("auto", "native", "oxford", "boreas"),
                        help="dataset format of --data (auto: guessed from the files present)")
    parser.add_argument("--image-root", default="", metavar="DIR",
                        help="oxford/boreas: folder with the per-run images (data.image_root)")
    parser.add_argument("--val-run", action="append", default=[], metavar="RUN",
                        help="oxford/boreas: a training run held out as val (data.val_runs); repeatable")


def _guess_format(root: Path) -> str:
    if (root / "dataset.json").is_file():
        return "native"
    if any(root.glob("boreas_*.pickle")):
        return "boreas"
    return "oxford"


def check_data(args: argparse.Namespace) -> int:
    """``doctor --data``: check the dataset folder (format guessed from its files unless ``--format``);
    exit code 1 if any problem was found, else 0."""
    from ..data.check import check_dataset
    from ..data.datasets import DataConfig
    root = Path(args.data)
    fmt = _guess_format(root) if args.format == "auto" else args.format
    cfg = DataConfig(format=fmt, root=str(root), image_root=args.image_root, val_runs=list(args.val_run))
    return 1 if check_dataset(cfg) else 0


def _probe(module: str, dist: str) -> tuple[bool, str]:
    try:
        importlib.import_module(module)
    except Exception as exc:  # any import failure is what we want to report
        return False, f"{type(exc).__name__}: {exc}".splitlines()[0][:100]
    try:
        return True, metadata.version(dist)
    except metadata.PackageNotFoundError:
        return True, "installed"


def run(args: argparse.Namespace) -> int:
    """Print which dependencies import (and their versions), CUDA and the ROS environment variables;
    exit code 1 only with ``--strict`` and a required (non-GPU) dependency missing."""
    if getattr(args, "data", None):
        return check_data(args)
    print(f"python       {sys.version.split()[0]} ({sys.executable})")
    missing_required = []
    for module, dist, why in _CHECKS:
        ok, info = _probe(module, dist)
        print(f"{'ok ' if ok else '-- '} {module:<12} {info:<24} {why}")
        if not ok and module not in ("tensorrt", "torch", "torchvision", "trimesh", "embreex"):
            missing_required.append(module)
    try:
        import torch
        cuda = torch.cuda.is_available()
        name = torch.cuda.get_device_name(0) if cuda else "none"
        print(f"cuda         {'yes' if cuda else 'no'} ({name})")
    except Exception:
        print("cuda         unknown (torch not importable)")
    ament = os.environ.get("AMENT_PREFIX_PATH") or (
        "UNSET (export AMENT_PREFIX_PATH=$VIRTUAL_ENV for the PyPI ROS wheels)")
    rng = os.environ.get("ROS_AUTOMATIC_DISCOVERY_RANGE") or (
        "UNSET (DDS discovers on every interface; set LOCALHOST on a dev machine)")
    print(f"AMENT_PREFIX_PATH             {ament}")
    print(f"ROS_AUTOMATIC_DISCOVERY_RANGE {rng}")
    print(f"ROS_DOMAIN_ID                 {os.environ.get('ROS_DOMAIN_ID', 'unset (0)')}")
    if missing_required:
        print(f"missing required: {', '.join(missing_required)} -- run `make setup`")
        return 1 if args.strict else 0
    return 0
