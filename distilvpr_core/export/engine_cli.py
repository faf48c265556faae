"""``distilvpr build-engine``: exported ONNX -> TensorRT engine in the engine cache (reused when valid)."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..infer.tensorrt.engine_key import DEFAULT_CALIB_COUNT

HELP = "build (or reuse from the cache) a TensorRT 10 engine for an exported ONNX student"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``distilvpr build-engine``: the fp32 ONNX model, precision, largest batch, engine cache
    directory, INT8 calibration data and whether to prune the cache."""
    parser.add_argument("--model", required=True, metavar="MODEL.onnx", help="fp32 ONNX from 'distilvpr export'")
    parser.add_argument("--precision", default="fp16", choices=("fp32", "fp16", "int8"),
                        help="engine precision (default: fp16)")
    parser.add_argument("--max-batch", type=int, default=8, help="largest batch the engine accepts (default: 8)")
    parser.add_argument("--cache-dir", metavar="DIR",
                        help="engine cache (default: $DISTILVPR_ENGINE_CACHE or ~/.cache/distilvpr/engines)")
    parser.add_argument("--calib", metavar="DIR",
                        help="int8: calibration images, or a dataset root with --calib-traversal")
    parser.add_argument("--calib-traversal", metavar="NAME", help="int8: traversal of the dataset at --calib")
    parser.add_argument("--calib-count", type=int, default=DEFAULT_CALIB_COUNT,
                        help=f"int8: images used, evenly spaced (default: {DEFAULT_CALIB_COUNT}, as the "
                             "tensorrt backend, so both reuse one engine)")
    parser.add_argument("--no-prune", action="store_true",
                        help="keep cache entries no request can reach any more (default: delete them "
                             "after a build)")


def run(args: argparse.Namespace) -> int:
    """Build (or reuse from the cache) the TensorRT engine for ``--model`` on this GPU, batch
    1..``--max-batch``; print its path, why it was built and its key; returns 0."""
    from ..foundation.errors import UserError
    from ..infer.tensorrt.calibration import CalibrationSource
    from ..infer.tensorrt.engines import ensure_engine

    if args.max_batch < 1:
        raise UserError(f"--max-batch: must be >= 1, got {args.max_batch}")
    src = None
    if args.calib:
        src = CalibrationSource(Path(args.calib), args.calib_traversal, args.calib_count)
    elif args.calib_traversal:
        raise UserError("--calib-traversal needs --calib DATASET_ROOT")
    res = ensure_engine(args.model, args.precision, args.cache_dir, (1, 1, args.max_batch), src,
                        prune=not args.no_prune)
    state = "built" if res.built else "reused"
    print(f"{state} {res.engine} ({res.reason}); key {res.key.digest()[:20]}: "
          f"{res.key.facts.describe()}, {args.precision}, batch 1..{args.max_batch}")
    return 0
