"""INT8 for CPUs: ONNX Runtime static quantisation (QDQ), calibrated on real frames.

Weights int8 per channel (symmetric), activations uint8 (asymmetric)
calibrated with MinMax (default) / Entropy / Percentile over the calibration
images.  U8 activations x S8 weights is the combination ONNX Runtime's x86
kernels are fast for: measured here 12 ms vs 38 ms fp32 (one thread), while
S8 activations ran at 32 ms.  (This QDQ file is for CPUs: TensorRT wants
zero-point-0 activations and builds its own INT8 engine by calibration.)  The
output keeps the distilvpr metadata (same weights fingerprint) with
``distilvpr.precision = int8``.  No torch.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from ..foundation.atomic import write_bytes_atomic
from ..foundation.errors import UserError
from .tensorrt.calibration import CalibrationSource, iter_batches
from .model_meta import ModelInfo, check_weights, load_onnx_proto, parse_props, seal_model

CALIBRATE_METHODS = ("minmax", "entropy", "percentile")


def quantize_int8(fp32_path: str | Path, out: str | Path, calib: CalibrationSource,
                  method: str = "minmax", batch_size: int = 8) -> Path:
    """Write the QDQ int8 model of ``fp32_path`` to ``out`` (atomically); returns ``out``."""
    import onnx
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat,
                                          QuantType, quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    methods = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
               "percentile": CalibrationMethod.Percentile}
    if method not in methods:
        raise UserError(f"calibration method {method!r} unknown; valid: {list(CALIBRATE_METHODS)}")
    proto = load_onnx_proto(fp32_path)
    info = parse_props({p.key: p.value for p in proto.metadata_props}, str(fp32_path))
    check_weights(proto, info, str(fp32_path))
    if info.precision != "fp32":
        raise UserError(f"{fp32_path}: is already {info.precision}; quantise the fp32 export")
    input_name = proto.graph.input[0].name

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter_batches(calib, info.contract, batch_size)

        def get_next(self):  # -> dict | None, as the ORT API wants
            batch = next(self._it, None)
            return None if batch is None else {input_name: batch}

    with tempfile.TemporaryDirectory(prefix="distilvpr-quant-") as tmp:
        pre, q = Path(tmp) / "pre.onnx", Path(tmp) / "int8.onnx"
        # Shape inference + graph cleanup first, as ORT recommends for static quantisation.
        quant_pre_process(str(fp32_path), str(pre), skip_symbolic_shape=True)
        quantize_static(str(pre), str(q), _Reader(), quant_format=QuantFormat.QDQ,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        per_channel=True, calibrate_method=methods[method],
                        extra_options={"ActivationSymmetric": False, "WeightSymmetric": True})
        qproto = onnx.load(str(q))
    seal_model(qproto, ModelInfo(info.contract, info.fingerprint, "int8"))
    return write_bytes_atomic(out, qproto.SerializeToString())


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-row cosine similarity of float32 [N, D] arrays -> float32 [N]."""
    a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    return (a * b).sum(1).astype(np.float32)
