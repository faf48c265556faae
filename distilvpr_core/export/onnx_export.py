"""Export the student to ONNX with its preprocessing contract and fingerprint in the metadata.

Output: opset >= 17, input ``image`` float32 [batch, 3, H, W] (batch dynamic,
H x W fixed from the contract), output ``descriptor`` float32 [batch, D] raw
(not L2-normalised).  The file passes ``onnx.checker`` (full check) and
contains only ops the TensorRT 10 ONNX parser supports (export/trt_ops.py).
"""
from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from ..foundation.atomic import write_bytes_atomic
from ..foundation.errors import UserError
from ..foundation.contract import PreprocessContract
from ..infer.model_meta import ModelInfo, seal_model
from ..infer.tensorrt.ops import TRT10_ONNX_OPSET_RANGE, opset_in_range, unsupported_ops

INPUT_NAME = "image"
OUTPUT_NAME = "descriptor"
MIN_OPSET = 17


@dataclass(frozen=True)
class ExportResult:
    """What :func:`export_student_onnx` wrote: the ONNX path, its opset and op types, the ops TensorRT 10
    cannot parse, and the largest torch vs ONNX Runtime descriptor difference."""
    path: Path
    opset: int
    ops: tuple[str, ...]          # op types in the graph, sorted
    trt_unsupported: tuple[str, ...]
    max_abs_diff: float           # torch vs ONNX Runtime on the check batch (raw descriptors)


def _to_onnx_bytes(model: torch.nn.Module, contract: PreprocessContract, opset: int) -> bytes:
    dummy = torch.zeros(2, 3, contract.height, contract.width)
    buf = io.BytesIO()
    with warnings.catch_warnings():
        # The TorchScript exporter is deprecated in torch >= 2.9 but gives a
        # plain static graph for this conv net; the dynamo one is not needed.
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(model, (dummy,), buf, input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                          dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
                          opset_version=opset, do_constant_folding=True, dynamo=False)
    return buf.getvalue()


def _ort_check(data: bytes, model: torch.nn.Module, contract: PreprocessContract) -> float:
    """Max |torch - onnxruntime| on a fixed random batch of 3 (catches a broken export)."""
    import onnxruntime as ort

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(3, 3, contract.height, contract.width, generator=gen)
    with torch.no_grad():
        ref = model(x).numpy()
    sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    got = sess.run([OUTPUT_NAME], {INPUT_NAME: x.numpy()})[0]
    return float(abs(ref - got).max())


def export_student_onnx(model: torch.nn.Module, contract: PreprocessContract, fingerprint: str,
                        out: str | Path, opset: int = MIN_OPSET, allow_trt_unsupported: bool = False
                        ) -> ExportResult:
    """Write ``model`` (fp32, eval) to ``out`` atomically; returns what was checked.

    Raises UserError for opset < 17, ops TensorRT 10 lacks (unless
    ``allow_trt_unsupported``), a failing ``onnx.checker`` or a torch/ONNX
    Runtime mismatch above 1e-3 relative to the descriptor scale.
    """
    import onnx

    out = Path(out)
    if opset < MIN_OPSET:
        raise UserError(f"--opset {opset}: must be >= {MIN_OPSET}")
    model = model.float().cpu().eval()
    proto = onnx.load_from_string(_to_onnx_bytes(model, contract, opset))
    proto.doc_string = "DistilVPR camera-only student (distilvpr export)"
    seal_model(proto, ModelInfo(contract, fingerprint, "fp32"))
    try:
        onnx.checker.check_model(proto, full_check=True)
    except onnx.checker.ValidationError as exc:
        raise UserError(f"{out}: exported model fails onnx.checker: {exc}") from None
    bad = unsupported_ops(proto)
    if not opset_in_range(proto):
        bad.append(f"opset {opset} outside TensorRT 10 range {TRT10_ONNX_OPSET_RANGE}")
    if bad and not allow_trt_unsupported:
        raise UserError(f"{out}: the graph uses what TensorRT 10 does not support: {bad}; change the "
                        "model or pass --allow-trt-unsupported for an ONNX-Runtime-only model")
    data = proto.SerializeToString()
    diff = _ort_check(data, model, contract)
    with torch.no_grad():
        scale = float(model(torch.zeros(1, 3, contract.height, contract.width)).abs().max()) + 1e-6
    if diff > 1e-3 * max(scale, 1.0):
        raise UserError(f"{out}: ONNX Runtime output differs from torch by {diff:.3g}; export is broken")
    write_bytes_atomic(out, data)
    ops = tuple(sorted({n.op_type for n in proto.graph.node}))
    return ExportResult(out, opset, ops, tuple(bad), diff)
