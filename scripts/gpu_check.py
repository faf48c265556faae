#!/usr/bin/env python3
"""One prepared GPU check of the deployment path; prints one table (see scripts/gpu_check.sh).

torch CUDA part (needs only torch, torchvision, numpy, pillow, pyyaml):
fp32 on CUDA (TF32 off) vs fp32 CPU, the fp16 Embedder, fp16 and bf16
autocast, CUDA graphs, all vs fp32 on CUDA, plus a stress row whose
activations are of a trained network's size (> 40, where the textbook
fp16 GeM overflowed).  TensorRT part (also needs onnx, onnxruntime,
tensorrt 10, cuda-python): fp32/fp16/INT8 engines of the exported student
vs ONNX Runtime fp32 on the CPU execution provider: cosine >= 0.9999 fp32,
>= 0.999 fp16, and INT8 R@1 on a synthetic place/revisit pair within one
query of fp32.  Rows whose requirements are missing are listed as skipped
with the reason; a skip is not a failure, but the output then ends with a
line starting ``SKIPPED: no TensorRT row ran``.  Randomly initialised
student (no downloads).  Exit 1 if a check that ran failed; exit 3 with
``--require-tensorrt`` when no TensorRT row ran.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # a fresh checkout works without installing the package
if str(REPO / "scripts") not in sys.path:
    sys.path.insert(0, str(REPO / "scripts"))  # gpu_check_lib beside this file, however it is loaded

TORCH_PART = ("torch", "torchvision", "numpy", "PIL", "yaml")
# cuda-python is checked by the backend's own import helper (new or old module path), not by name.
TRT_PART = ("onnx", "onnxruntime", "tensorrt")
TRT_ROWS = ("TensorRT fp32 engine", "TensorRT fp16 engine", "TensorRT INT8 engine")
# The reference runs on the CPU provider: "ORT fp32" on a CUDA or TensorRT provider would be a
# GPU result compared with another GPU result (the TensorRT EP even builds its own engine).
ORT_REFERENCE_PROVIDER = "CPUExecutionProvider"
EXIT_NO_TENSORRT = 3
from gpu_check_lib import (Budget, Report, Row, cosine_stats, judge,  # noqa: E402
                           missing_modules, p50_ms, recall_at_1, synthetic_places)


def torch_rows(rep: Report, tmp: Path, args: argparse.Namespace, budget: Budget) -> dict[str, Any]:
    """The torch rows; returns what the TensorRT part reuses (checkpoint, frames, CUDA facts)."""
    import numpy as np
    import torch

    from distilvpr_core.models.student_io import load_student_checkpoint
    from distilvpr_core.infer.embedder import l2_normalize
    from distilvpr_core.foundation.preprocess import preprocess
    from distilvpr_core.infer.torch_backend import TorchEmbedder
    from distilvpr_core.models import StudentConfig, build_student, save_checkpoint

    torch.manual_seed(0)
    cfg = StudentConfig(dim=args.dim)
    ckpt = save_checkpoint(tmp / "student.pt", build_student(cfg), "student", cfg, args.size)
    frames, _ = synthetic_places(8, seed=1)
    out: dict[str, Any] = {"ckpt": ckpt, "frames": frames}

    cpu = TorchEmbedder(ckpt, device="cpu")
    ref_cpu = cpu.embed(frames)
    rep.add(Row("torch fp32 CPU (reference)", "ok", finite="yes" if np.isfinite(ref_cpu).all() else "NO",
                notes=f"{args.size[0]}x{args.size[1]}, D={args.dim}, 640x480 frames"))
    cuda_rows = ("torch fp32 CUDA, TF32 off", "torch fp16 Embedder (GeM in fp32)", "torch fp16 autocast",
                 "torch bf16 autocast", "torch fp16 CUDA graphs", "torch fp16, activations of trained size")
    if not torch.cuda.is_available():
        for name in cuda_rows:
            rep.add(Row(name, notes="torch sees no CUDA device (torch.cuda.is_available() is False)"))
        return out
    out["cuda"] = True
    sync = torch.cuda.synchronize

    def timed(row: Row, emb_fn: Callable[[Any], Any]) -> Row:
        row.b1 = f"{p50_ms(lambda: emb_fn(frames[:1]), args.iters, sync):.2f}"
        row.b8 = f"{p50_ms(lambda: emb_fn(frames[:8]), args.iters, sync):.2f}"
        return row

    prev = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        fp32 = TorchEmbedder(ckpt, device="cuda", fp16=False)
        ref = fp32.embed(frames)
        lo, mean = cosine_stats(ref, ref_cpu)
        rep.add(timed(judge(Row(cuda_rows[0], cos=f"{lo:.7f} / {mean:.7f}", vs="fp32 CPU"),
                            lo, 0.99999, bool(np.isfinite(ref).all())), fp32.embed))
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = prev

    fp16 = TorchEmbedder(ckpt, device="cuda")
    got = fp16.embed(frames)
    lo, mean = cosine_stats(got, ref)
    rep.add(timed(judge(Row(cuda_rows[1], cos=f"{lo:.6f} / {mean:.6f}", vs="fp32 CUDA"), lo, 0.999,
                        bool(np.isfinite(got).all())), fp16.embed))

    model = load_student_checkpoint(ckpt).model.cuda().eval()
    contract = fp32.contract
    for name, dtype, floor in ((cuda_rows[2], torch.float16, 0.999), (cuda_rows[3], torch.bfloat16, 0.995)):
        if dtype == torch.bfloat16 and not torch.cuda.is_bf16_supported():
            rep.add(Row(name, notes="this GPU has no bf16"))
            continue

        def amp(x_frames: Any, dtype: Any = dtype) -> Any:
            x = torch.from_numpy(preprocess(x_frames, contract)).cuda()
            with torch.inference_mode(), torch.autocast("cuda", dtype=dtype):
                return l2_normalize(model(x).float().cpu().numpy())
        got = amp(frames)
        lo, mean = cosine_stats(got, ref)
        rep.add(timed(judge(Row(name, cos=f"{lo:.6f} / {mean:.6f}", vs="fp32 CUDA"), lo, floor,
                            bool(np.isfinite(got).all())), amp))

    graphs = TorchEmbedder(ckpt, device="cuda", cuda_graphs=True)
    got, eager = graphs.embed(frames), fp16.embed(frames)
    lo, mean = cosine_stats(got, eager)
    rep.add(timed(judge(Row(cuda_rows[4], cos=f"{lo:.6f} / {mean:.6f}", vs="fp16 eager"), lo, 0.9999,
                        bool(np.isfinite(got).all())), graphs.embed))

    # Trained networks have 1x1-conv activations far above random init's (~4): scale the projection.
    hot = load_student_checkpoint(ckpt).model
    with torch.no_grad():
        hot.proj.weight.mul_(args.stress_scale)
    hot_ckpt = save_checkpoint(tmp / "student_hot.pt", hot, "student", cfg, args.size)
    with torch.inference_mode():
        x = torch.from_numpy(preprocess(frames, contract)).cuda()
        act_max = float(hot.cuda().eval().proj(hot.backbone(x)).max())
    hot32 = TorchEmbedder(hot_ckpt, device="cuda", fp16=False).embed(frames)
    hot16 = TorchEmbedder(hot_ckpt, device="cuda").embed(frames)
    lo, mean = cosine_stats(hot16, hot32)
    rep.add(judge(Row(cuda_rows[5], cos=f"{lo:.6f} / {mean:.6f}", vs="fp32 CUDA",
                      notes=f"proj x{args.stress_scale:g}, max activation {act_max:.0f} (textbook GeM "
                            "overflows fp16 above ~40)"), lo, 0.999, bool(np.isfinite(hot16).all())))
    out["gpu_name"] = torch.cuda.get_device_name(0)
    return out


def tensorrt_blocker(torch_out: dict[str, Any]) -> str:
    """Why the TensorRT rows cannot run here ("" if they can): modules, CUDA, TensorRT, cuda-python."""
    gone = missing_modules(TRT_PART)
    if gone:
        return f"missing python modules {gone} (TensorRT part needs {list(TRT_PART)} and cuda-python)"
    if not torch_out.get("cuda"):
        return "no CUDA device"
    from distilvpr_core.foundation.errors import UserError
    from distilvpr_core.infer.tensorrt.build import import_tensorrt
    from distilvpr_core.infer.tensorrt.cuda_mem import cudart
    try:
        import_tensorrt()
        cudart()  # cuda.bindings.runtime or the older cuda.cudart, as the backend accepts
    except UserError as exc:
        return str(exc)
    return ""


def ort_reference(onnx_path: Path) -> Any:
    """The ONNX Runtime embedder every TensorRT row is compared with, on the CPU provider only."""
    from distilvpr_core.infer import load_embedder
    return load_embedder(onnx_path, backend="onnxruntime", providers=[ORT_REFERENCE_PROVIDER])


def tensorrt_rows(rep: Report, tmp: Path, args: argparse.Namespace, budget: Budget,
                  torch_out: dict[str, Any]) -> None:
    reason = tensorrt_blocker(torch_out)
    if reason:
        for name in TRT_ROWS:
            rep.add(Row(name, notes=reason))
        return

    import numpy as np
    from PIL import Image

    from distilvpr_core.export.onnx_export import export_student_onnx
    from distilvpr_core.models.student_io import load_student_checkpoint
    from distilvpr_core.infer import load_embedder

    st = load_student_checkpoint(torch_out["ckpt"])
    onnx_path = tmp / "student.onnx"
    export_student_onnx(st.model, st.contract, st.fingerprint, onnx_path)
    frames = torch_out["frames"]
    places, revisits = synthetic_places(args.places, seed=2)
    calib = tmp / "calib"
    calib.mkdir()
    for i, img in enumerate(synthetic_places(64, seed=3)[0]):
        Image.fromarray(img).save(calib / f"{i:03d}.png")
    ort = ort_reference(onnx_path)
    ref = ort.embed(frames)
    ref_r1 = recall_at_1(ort.embed(places), ort.embed(revisits))
    for name, precision, floor in zip(TRT_ROWS, ("fp32", "fp16", "int8"), (0.9999, 0.999, None)):
        if budget.left() < 20:
            rep.add(Row(name, notes=f"time budget ({args.budget_s:g} s) spent"))
            continue
        t0 = time.perf_counter()
        opts: dict[str, Any] = {"precision": precision, "cache_dir": tmp / "engines"}
        if precision == "int8":
            opts.update(calib=calib, calib_count=64)
        try:
            emb = load_embedder(onnx_path, backend="tensorrt", **opts)
        except Exception as exc:  # noqa: BLE001 -- a failed build is a failed row, the table still prints
            rep.add(Row(name, "FAIL", notes=f"build: {type(exc).__name__}: {exc}"))
            continue
        build_s = time.perf_counter() - t0
        got = emb.embed(frames)
        lo, mean = cosine_stats(got, ref)
        row = Row(name, cos=f"{lo:.6f} / {mean:.6f}", vs="ORT fp32 CPU", notes=f"build {build_s:.1f} s")
        if floor is not None:
            judge(row, lo, floor, bool(np.isfinite(got).all()))
        else:
            r1 = recall_at_1(emb.embed(places), emb.embed(revisits))
            one_query = 100.0 / len(places)
            row.finite = "yes" if np.isfinite(got).all() else "NO"
            row.result = "ok" if row.finite == "yes" and ref_r1 - r1 <= one_query + 1e-9 else "FAIL"
            row.notes += f"; R@1 {r1:.1f} vs ORT fp32 CPU {ref_r1:.1f} ({len(places)} places, drop <= 1 query)"
        row.b1 = f"{p50_ms(lambda: emb.embed(frames[:1]), args.iters):.2f}"
        row.b8 = f"{p50_ms(lambda: emb.embed(frames[:8]), args.iters):.2f}"
        rep.add(row)
        emb.close()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size", default="320x240", help="student input WxH (default: 320x240, deployment size)")
    p.add_argument("--dim", type=int, default=384, help="descriptor size (default: 384)")
    p.add_argument("--iters", type=int, default=20, help="timed calls per row and batch (default: 20)")
    p.add_argument("--places", type=int, default=64, help="places in the INT8 R@1 set (default: 64)")
    p.add_argument("--stress-scale", type=float, default=25.0,
                   help="projection weight scale for the trained-size activation row (default: 25)")
    p.add_argument("--budget-s", type=float, default=85.0, help="skip TensorRT rows past this (default: 85)")
    p.add_argument("--out", help="markdown table file (default: $OUT/gpu_check.md when OUT is set)")
    p.add_argument("--require-tensorrt", action="store_true",
                   help=f"exit {EXIT_NO_TENSORRT} when no TensorRT row ran (a device check that must test TensorRT)")
    args = p.parse_args(argv)
    w, _, h = args.size.partition("x")
    args.size = (int(w), int(h))
    if args.out is None and os.environ.get("OUT"):
        args.out = str(Path(os.environ["OUT"]) / "gpu_check.md")
    return args


def header_lines(argv: list[str]) -> list[str]:
    lines = ["## distilvpr GPU check", "",
             f"- command: `scripts/gpu_check.sh {' '.join(argv)}`".rstrip()
             + f"; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
             f"- python {platform.python_version()} on {platform.machine()}"]
    try:
        import torch
        dev = "no CUDA device"
        if torch.cuda.is_available():
            p = torch.cuda.get_device_properties(0)
            dev = (f"{p.name}, compute {p.major}.{p.minor}, {p.multi_processor_count} SMs, "
                   f"{p.total_memory >> 20} MiB")
        lines.append(f"- torch {torch.__version__} (CUDA {torch.version.cuda}), device: {dev}")
    except ImportError:
        lines.append("- torch not installed")
    for mod in ("onnxruntime", "tensorrt"):
        try:
            lines.append(f"- {mod} {__import__(mod).__version__}")
        except Exception:  # noqa: BLE001 -- absent or broken: say so, the rows say the rest
            lines.append(f"- {mod}: not available")
    return lines


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    budget = Budget(args.budget_s)
    rep = Report(header_lines(argv))
    gone = missing_modules(TORCH_PART)
    if gone:
        rep.add(Row("all rows", notes=f"missing python modules {gone}; the torch part needs "
                                      f"{list(TORCH_PART)}"))
    else:
        with tempfile.TemporaryDirectory(prefix="distilvpr-gpu-check-") as tmp:
            out: dict[str, Any] = {}
            for part, run in (("torch part", lambda: out.update(torch_rows(rep, Path(tmp), args, budget))),
                              ("TensorRT part", lambda: tensorrt_rows(rep, Path(tmp), args, budget, out))):
                try:
                    run()
                except Exception as exc:  # noqa: BLE001 -- one broken part must not hide the other's rows
                    traceback.print_exc()
                    rep.add(Row(part, "FAIL", notes=f"{type(exc).__name__}: {exc}"[:300]))
    table = rep.markdown()
    print("\n" + table)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(table)
        print(f"table written to {args.out}")
    ran = [r for r in rep.rows if r.check in TRT_ROWS and r.result != "skipped"]
    if ran:
        print(f"TensorRT rows run: {len(ran)} of {len(TRT_ROWS)}")
    else:  # the last line, so nobody reads a green exit as "TensorRT passed"
        why = next((r.notes for r in rep.rows if r.check in TRT_ROWS), "the TensorRT part did not run")
        print(f"SKIPPED: no TensorRT row ran ({why})")
    if rep.failed():
        return 1
    return EXIT_NO_TENSORRT if args.require_tensorrt and not ran else 0


if __name__ == "__main__":
    sys.exit(main())
