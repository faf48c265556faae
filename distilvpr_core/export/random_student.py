"""A randomly initialised student, saved and exported: for benchmarks and tests.

Real components end to end (the training checkpoint format, the ONNX
exporter, the preprocessing contract and fingerprint) without trained
weights or downloads; latency does not depend on the weights.
"""
from __future__ import annotations

from pathlib import Path


def export_random_student(out_dir: str | Path, input_size: tuple[int, int] = (320, 240), dim: int = 384,
                          seed: int = 0) -> tuple[Path, Path]:
    """Write ``out_dir/student.pt`` and ``out_dir/student.onnx``; returns both paths.

    input_size: student input (W, H) pixels; dim: descriptor size D; seed: torch init seed.
    """
    import torch

    from ..models import StudentConfig, build_student, save_checkpoint
    from .onnx_export import export_student_onnx
    from ..models.student_io import load_student_checkpoint

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    cfg = StudentConfig(dim=dim)
    ckpt = save_checkpoint(out / "student.pt", build_student(cfg), "student", cfg, input_size)
    student = load_student_checkpoint(ckpt)
    export_student_onnx(student.model, student.contract, student.fingerprint, out / "student.onnx")
    return out / "student.pt", out / "student.onnx"
