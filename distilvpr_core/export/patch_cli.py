"""``distilvpr export-patch``: student checkpoint -> the dense ONNX model of the ``patch`` local features."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..foundation.errors import UserError

HELP = ("export a student's layer-3 map as the dense model of the 'patch' local features "
        "(PCA to 128-d fitted on calibration images)")


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected WxH, e.g. 320x240") from None
    return w, h


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``distilvpr export-patch``: the checkpoint, the output, the input size and
    pooling window, and the calibration images of the PCA."""
    parser.add_argument("--checkpoint", required=True, metavar="CKPT",
                        help="student checkpoint (.pt) written by 'distilvpr distil' (e.g. student_best.pt)")
    parser.add_argument("--out", required=True, metavar="PATCH.onnx",
                        help="ONNX file to write; pass it to 'distilvpr map build --features patch "
                             "--local-model PATCH.onnx' (the map then carries it)")
    parser.add_argument("--input-size", type=_size, default=(320, 240), metavar="WxH",
                        help="size the frame is stretched to before the trunk, at least 32x32; one patch "
                             "per 16x16 input pixels (default 320x240: 20x15 = 300 patches; the trunk is "
                             "fully convolutional, so this need not be the student's training size; "
                             "docs/local_features.md)")
    parser.add_argument("--pool", type=int, default=1, choices=(1, 3, 5),
                        help="patch size in layer-3 cells: each descriptor is the mean of a "
                             "pool x pool window around its cell (stride 1; default 1 = the cell itself)")
    parser.add_argument("--subcell-source", default="match4",
                        choices=("image", "layer1", "layer2", "match8", "match4", "off"),
                        help="where each patch's point lies near its 16-pixel cell, so PnP can give a pose "
                             "of its own: coarse-to-fine (match4 (default) / match8: the query's layer-3 map "
                             "at stride 4 / 8, in which each matched keyframe cell is looked for), or the "
                             "soft-argmax of a response in a window around the cell centre (image = Harris "
                             "corners of the normalised input, stride 1; layer1 / layer2 = the trunk's "
                             "activation norm, stride 4 / 8); off = the cell centre (PnP then returns the "
                             "keyframe's pose); measured in docs/local_features.md, 'Sub-cell keypoints'")
    parser.add_argument("--subcell-radius", type=int, default=4, metavar="N",
                        help="half-width of that window in fine pixels (default 4: +-16 input pixels with "
                             "match4)")
    parser.add_argument("--subcell-beta", type=float, default=30.0, metavar="B",
                        help="soft-argmax sharpness (default 30; match4/match8 on the cosine, 0 = arg-max + "
                             "parabola; image/layer1/layer2 on the response divided by its window maximum, "
                             "0 = the window centre)")
    parser.add_argument("--calib", required=True, metavar="DIR",
                        help="calibration images for the PCA: a directory of images, or a dataset root "
                             "with --calib-traversal (use a training town, never a validation or test drive)")
    parser.add_argument("--calib-traversal", action="append", default=[], metavar="NAME",
                        help="traversal of the dataset at --calib (repeatable: e.g. one per condition)")
    parser.add_argument("--calib-count", type=int, default=32,
                        help="images per traversal (or of the directory), evenly spaced (default: 32)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output file")


def run(args: argparse.Namespace) -> int:
    """Export the patch model of the checkpoint; refuses an existing output without
    ``--overwrite``; returns 0."""
    from ..features.patch.export import SubCellConfig, export_patch_onnx
    from ..infer.tensorrt.calibration import CalibrationSource, iter_images
    from ..models.student_io import load_student_checkpoint

    out = Path(args.out)
    if out.exists() and not args.overwrite:
        raise UserError(f"{out}: exists; pass --overwrite to replace it")
    if args.calib_count < 1:
        raise UserError(f"--calib-count {args.calib_count}: must be >= 1")
    sources = [CalibrationSource(Path(args.calib), t, args.calib_count) for t in args.calib_traversal] \
        or [CalibrationSource(Path(args.calib), None, args.calib_count)]
    subcell = SubCellConfig(args.subcell_source, args.subcell_radius, args.subcell_beta)
    subcell.check()  # before loading anything: a bad setting is the user's to fix
    student = load_student_checkpoint(args.checkpoint)
    images = (img for src in sources for img in iter_images(src))
    res = export_patch_onnx(student, out, args.input_size, args.pool, images, subcell)
    w, h = args.input_size
    print(f"wrote {res.path}: input image float32 [1, 3, {h}, {w}] -> descriptors [1, 128, {-(-h // 16)}, "
          f"{-(-w // 16)}] + score + {subcell.output}, pool {args.pool}")
    how = (f"coarse-to-fine on the layer-3 map at stride {subcell.stride}" if subcell.coarse_to_fine else
           f"soft-argmax of the {subcell.source} response (stride {subcell.stride})")
    print("  keypoints: " + (f"{how}, radius {subcell.radius}, beta {subcell.beta:g}" if subcell.on
                             else "cell centres"))
    print(f"  student fingerprint {student.fingerprint}")
    print(f"  PCA on {res.pca_vectors} cells keeps {100 * res.pca_explained:.1f} % of the variance; "
          f"torch vs onnxruntime max |diff| {res.max_abs_diff:.2e}")
    return 0
