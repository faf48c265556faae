"""``distilvpr export``: student checkpoint -> ONNX (+ optional INT8 QDQ model for CPUs)."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..foundation.errors import UserError

HELP = "export a student checkpoint to ONNX (opset>=17, dynamic batch, contract in metadata), optional INT8"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``distilvpr export``: the student checkpoint, the ONNX output and opset, and the
    optional INT8 QDQ output with its calibration images."""
    parser.add_argument("--checkpoint", required=True, metavar="CKPT",
                        help="student checkpoint (.pt) written by 'distilvpr distil'")
    parser.add_argument("--out", required=True, metavar="MODEL.onnx", help="ONNX file to write")
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset, >= 17 (default: 17)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing output files")
    parser.add_argument("--allow-trt-unsupported", action="store_true",
                        help="write the model even if it uses ops TensorRT 10 lacks (ONNX Runtime only)")
    q = parser.add_argument_group("INT8 (ONNX Runtime static QDQ quantisation, for CPUs)")
    q.add_argument("--int8-out", metavar="MODEL.int8.onnx", help="also write an INT8 model here")
    q.add_argument("--calib", metavar="DIR",
                   help="calibration images: a directory of images, or a dataset root with --calib-traversal")
    q.add_argument("--calib-traversal", metavar="NAME", help="traversal of the dataset at --calib")
    q.add_argument("--calib-count", type=int, default=128, help="images used, evenly spaced (default: 128)")
    q.add_argument("--calib-method", default="minmax", choices=("minmax", "entropy", "percentile"),
                   help="activation range estimator (default: minmax)")


def _refuse_existing(path: Path, overwrite: bool) -> None:
    if path.exists() and not overwrite:
        raise UserError(f"{path}: exists; pass --overwrite to replace it")


def run(args: argparse.Namespace) -> int:
    """Export the student checkpoint to ONNX (and, with ``--int8-out``, an INT8 QDQ copy calibrated on
    ``--calib``); refuses existing outputs without ``--overwrite``; returns 0."""
    from .onnx_export import export_student_onnx
    from ..models.student_io import load_student_checkpoint

    out = Path(args.out)
    _refuse_existing(out, args.overwrite)
    if args.int8_out:
        if not args.calib:
            raise UserError("--int8-out needs --calib DIR (images, or a dataset root with --calib-traversal)")
        _refuse_existing(Path(args.int8_out), args.overwrite)
    elif args.calib or args.calib_traversal:
        raise UserError("--calib/--calib-traversal only make sense with --int8-out")
    student = load_student_checkpoint(args.checkpoint)
    res = export_student_onnx(student.model, student.contract, student.fingerprint, out,
                              opset=args.opset, allow_trt_unsupported=args.allow_trt_unsupported)
    c = student.contract
    print(f"wrote {res.path}: opset {res.opset}, input image float32 [batch, 3, {c.height}, {c.width}], "
          f"output descriptor float32 [batch, {c.descriptor_dim}]")
    print(f"  fingerprint {student.fingerprint}")
    print(f"  ops {', '.join(res.ops)}")
    print(f"  TensorRT 10 unsupported ops: {', '.join(res.trt_unsupported) or 'none'}; "
          f"torch vs onnxruntime max |diff| {res.max_abs_diff:.2e}")
    if args.int8_out:
        from ..infer.tensorrt.calibration import CalibrationSource
        from ..infer.quantize import quantize_int8

        src = CalibrationSource(Path(args.calib), args.calib_traversal, args.calib_count)
        path = quantize_int8(out, args.int8_out, src, method=args.calib_method)
        print(f"wrote {path}: INT8 QDQ (u8 activations, s8 per-channel weights, {args.calib_method})")
    return 0
