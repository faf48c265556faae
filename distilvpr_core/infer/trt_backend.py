"""TensorRT backend: TensorRT 10 tensor-address API on one CUDA stream, pinned host buffers.

``path`` is an exported ``.onnx`` (engine reused from, or built into, the
engine cache) or an ``.engine`` with its sidecar ``.json`` (checked against
this GPU and TensorRT version before loading).  Imports no torch; TensorRT
and cuda-python are imported when the backend is created.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UserError
from .calibration import CalibrationSource
from .contract import PreprocessContract
from .embedder import Embedder


class TrtEmbedder(Embedder):
    """Embedder on a TensorRT engine.

    Options: ``precision`` ("fp32" | "fp16" | "int8"; ignored for .engine),
    ``cache_dir`` (default ``export.engines.default_cache_dir()``), ``max_batch``
    (engine profile max; opt = 1), ``calib`` (image directory or dataset
    root, int8), ``calib_traversal``, ``calib_count``.
    """
    backend = "tensorrt"

    def __init__(self, path: str | Path, precision: str = "fp16", cache_dir: str | Path | None = None,
                 max_batch: int = 8, calib: str | Path | None = None, calib_traversal: str | None = None,
                 calib_count: int = 128) -> None:
        from ..export.engine_cache import check_engine_facts, read_sidecar
        from ..export.engines import ensure_engine
        from ..export.trt_build import current_facts, import_tensorrt

        path = Path(path)
        self.built_now = False
        trt = import_tensorrt()
        facts = current_facts()
        if path.suffix == ".engine":
            meta = read_sidecar(path)
            check_engine_facts(meta, facts, path)
            engine_path = path
        else:
            src = CalibrationSource(Path(calib), calib_traversal, calib_count) if calib else None
            res = ensure_engine(path, precision, cache_dir, (1, 1, max_batch), src, facts=facts)
            engine_path = res.engine
            meta = read_sidecar(engine_path)
            self.built_now = res.built
        contract = PreprocessContract.from_dict(meta["contract"], source=str(engine_path))
        super().__init__(contract, meta["fingerprint"], min(max_batch, int(meta["key"]["batch"][2])))
        self.engine_path = engine_path
        self.precision = meta["key"]["precision"]
        self._trt = trt
        blob = engine_path.read_bytes()
        if hashlib.sha256(blob).hexdigest() != meta.get("engine_sha256"):
            raise UserError(f"{engine_path}: engine bytes do not match the sha256 in its sidecar "
                            "(corrupt or replaced); rebuild it with 'distilvpr build-engine'")
        self._open(blob)

    def _open(self, blob: bytes) -> None:
        from .cuda_mem import DeviceBuffer, PinnedArray, Stream

        trt = self._trt
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        self._engine = self._runtime.deserialize_cuda_engine(blob)
        if self._engine is None:
            raise UserError(f"{self.engine_path}: TensorRT could not deserialise the engine (built by "
                            "another TensorRT version or corrupt); delete it and rebuild")
        self._context = self._engine.create_execution_context()
        names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
        inputs = [n for n in names if self._engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if self._engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        if len(inputs) != 1 or len(outputs) != 1:
            raise UserError(f"{self.engine_path}: expected one input and one output, got {inputs} -> {outputs}")
        self._in, self._out = inputs[0], outputs[0]
        for name in (self._in, self._out):
            if self._engine.get_tensor_dtype(name) != trt.DataType.FLOAT:
                raise UserError(f"{self.engine_path}: tensor {name!r} is not float32")
        c, b = self.contract, self.max_batch
        self._h_in = PinnedArray((b, 3, c.height, c.width), np.float32)
        self._h_out = PinnedArray((b, c.descriptor_dim), np.float32)
        self._d_in = DeviceBuffer(self._h_in.nbytes)
        self._d_out = DeviceBuffer(self._h_out.nbytes)
        self._stream = Stream()
        # Addresses never change: set once; only the input shape varies per call.
        self._context.set_tensor_address(self._in, self._d_in.ptr)
        self._context.set_tensor_address(self._out, self._d_out.ptr)

    def _forward(self, x: np.ndarray) -> np.ndarray:
        n = len(x)
        c = self.contract
        if not self._context.set_input_shape(self._in, (n, 3, c.height, c.width)):
            raise UserError(f"{self.engine_path}: batch {n} outside the engine profile (max {self.max_batch})")
        self._h_in.array[:n] = x
        nin = x.nbytes
        nout = n * c.descriptor_dim * 4
        self._stream.h2d(self._d_in, self._h_in.ptr, nin)
        if not self._context.execute_async_v3(self._stream.handle):
            raise RuntimeError("TensorRT execute_async_v3 failed")
        self._stream.d2h(self._h_out.ptr, self._d_out, nout)
        self._stream.sync()
        return self._h_out.array[:n].copy()

    def close(self) -> None:
        self._context = None  # the context goes before the memory it points at
        obj: Any = getattr(self, "_stream", None)
        if obj is not None:
            obj.destroy()
            self._stream = None
        for name in ("_d_in", "_d_out", "_h_in", "_h_out"):
            obj = getattr(self, name, None)
            if obj is not None:
                obj.free()
                setattr(self, name, None)
        self._context = self._engine = self._runtime = None
