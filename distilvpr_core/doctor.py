"""`distilvpr doctor`: what this machine offers distilvpr, and what is missing.

Checks are read-only and import each optional dependency in isolation, so a
broken package is reported instead of crashing the command.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
from importlib import metadata

HELP = "check the Python/ROS/GPU environment and print what is found"

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
    parser.add_argument("--strict", action="store_true",
                        help="exit 1 if a required (non-GPU) dependency is missing")


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
    ament = os.environ.get("AMENT_PREFIX_PATH")
    rng = os.environ.get("ROS_AUTOMATIC_DISCOVERY_RANGE")
    print(f"AMENT_PREFIX_PATH             {ament or 'UNSET (export AMENT_PREFIX_PATH=$VIRTUAL_ENV for the PyPI ROS wheels)'}")
    print(f"ROS_AUTOMATIC_DISCOVERY_RANGE {rng or 'UNSET (DDS discovers on every interface; set LOCALHOST on a dev machine)'}")
    print(f"ROS_DOMAIN_ID                 {os.environ.get('ROS_DOMAIN_ID', 'unset (0)')}")
    if missing_required:
        print(f"missing required: {', '.join(missing_required)} -- run `make setup`")
        return 1 if args.strict else 0
    return 0
