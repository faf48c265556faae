"""Build a TensorRT 10 engine from the exported ONNX (fp32 / fp16 / int8), with a timing cache.

TensorRT is imported lazily; without it every entry point raises a UserError
that says so.  No torch.  INT8 uses implicit quantisation with an
``IInt8EntropyCalibrator2`` fed by the shared preprocessing on real frames
(directory or dataset traversal), its calibration table cached next to the
engine.  Dynamic batch: one optimisation profile (min, opt, max) x 3 x H x W.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import write_bytes_atomic
from ..errors import UserError
from ..infer.calibration import CalibrationSource, iter_batches
from ..infer.contract import PreprocessContract
from .engine_cache import EngineSpec, GpuFacts


def import_tensorrt() -> Any:
    try:
        import tensorrt as trt
    except ImportError:
        raise UserError("TensorRT is not installed (python package 'tensorrt'); install TensorRT 10 "
                        "(JetPack on Jetson, 'pip install tensorrt' on x86 with an NVIDIA GPU) or use "
                        "backend='onnxruntime'") from None
    if int(trt.__version__.split(".")[0]) < 10:
        raise UserError(f"TensorRT {trt.__version__} found; this code needs TensorRT >= 10")
    return trt


def current_facts(device: int = 0) -> GpuFacts:
    """The real TensorRT version and GPU of this machine."""
    from ..infer.cuda_mem import gpu_name_and_cc

    trt = import_tensorrt()
    name, cc = gpu_name_and_cc(device)
    return GpuFacts(trt.__version__, name, cc)


def _logger(trt: Any) -> Any:
    return trt.Logger(trt.Logger.WARNING)


def _make_calibrator(trt: Any, src: CalibrationSource, contract: PreprocessContract, batch: int,
                     cache_file: Path) -> Any:
    from ..infer.cuda_mem import DeviceBuffer

    class Calibrator(trt.IInt8EntropyCalibrator2):
        """Feeds full batches of preprocessed frames; caches the calibration table."""

        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self._batches = (b for b in iter_batches(src, contract, batch) if len(b) == batch)
            self._dev = DeviceBuffer(batch * 3 * contract.height * contract.width * 4)
            self._host: np.ndarray | None = None  # keeps the last batch alive during the copy

        def get_batch_size(self) -> int:
            return batch

        def get_batch(self, names: list[str]) -> list[int] | None:
            from ..infer.cuda_mem import check, cudart
            nxt = next(self._batches, None)
            if nxt is None:
                return None
            self._host = np.ascontiguousarray(nxt, np.float32)
            rt = cudart()
            check(rt.cudaMemcpy(self._dev.ptr, self._host.ctypes.data, self._host.nbytes,
                                rt.cudaMemcpyKind.cudaMemcpyHostToDevice), "cudaMemcpy calib")
            return [self._dev.ptr]

        def read_calibration_cache(self) -> bytes | None:
            return cache_file.read_bytes() if cache_file.is_file() else None

        def write_calibration_cache(self, cache: Any) -> None:
            write_bytes_atomic(cache_file, bytes(cache))

    return Calibrator()


def build_engine(onnx_path: str | Path, spec: EngineSpec, contract: PreprocessContract,
                 timing_cache: str | Path | None = None, calib: CalibrationSource | None = None,
                 calib_cache: str | Path | None = None, calib_batch: int = 8,
                 workspace_mb: int = 1024) -> bytes:
    """Serialised engine bytes for ``onnx_path`` as ``spec`` asks.

    ``timing_cache``: file read before and written (atomically) after the
    build, so rebuilds for the same GPU skip kernel timing.  Raises UserError
    for parse errors (with the parser's messages) or a failed build.
    """
    trt = import_tensorrt()
    logger = _logger(trt)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # TensorRT 10: networks are always explicit-batch
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errs = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise UserError(f"{onnx_path}: TensorRT cannot parse it: {errs}")
    if network.num_inputs != 1:
        raise UserError(f"{onnx_path}: expected one input, TensorRT sees {network.num_inputs}")
    inp = network.get_input(0)
    h, w = spec.input_hw
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mb << 20)

    tc_path = Path(timing_cache) if timing_cache else None
    tc_bytes = tc_path.read_bytes() if tc_path and tc_path.is_file() else b""
    cache = config.create_timing_cache(tc_bytes)
    config.set_timing_cache(cache, ignore_mismatch=False)

    lo, opt, hi = spec.batch
    profile = builder.create_optimization_profile()
    profile.set_shape(inp.name, (lo, 3, h, w), (opt, 3, h, w), (hi, 3, h, w))
    config.add_optimization_profile(profile)

    if spec.precision in ("fp16", "int8") and getattr(builder, "platform_has_fast_fp16", True):
        config.set_flag(trt.BuilderFlag.FP16)  # int8 layers fall back to fp16, not fp32
    if spec.precision == "int8":
        if calib is None:
            raise UserError("precision int8 needs calibration images (--calib)")
        config.set_flag(trt.BuilderFlag.INT8)
        # Calibration runs at one fixed shape: its own profile.
        cprof = builder.create_optimization_profile()
        cshape = (calib_batch, 3, h, w)
        cprof.set_shape(inp.name, cshape, cshape, cshape)
        config.set_calibration_profile(cprof)
        cfile = Path(calib_cache) if calib_cache else Path(str(onnx_path) + ".calib")
        config.int8_calibrator = _make_calibrator(trt, calib, contract, calib_batch, cfile)

    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise UserError(f"{onnx_path}: TensorRT engine build failed ({spec.precision}); see the "
                        "TensorRT log above")
    if tc_path is not None:
        write_bytes_atomic(tc_path, bytes(memoryview(config.get_timing_cache().serialize())))
    return bytes(memoryview(serialized))
