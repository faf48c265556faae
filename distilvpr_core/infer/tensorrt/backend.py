"""TensorRT backend: TensorRT 10 tensor-address API on one CUDA stream, pinned host buffers.

The engine's I/O is checked against the preprocessing contract (input
[N, 3, H, W] float32, output [N, D] float32) and the buffers are sized from
its optimisation profile's maximum batch, not from the sidecar alone; each
call checks the output shape TensorRT will write before running.  One
execution context and one set of buffers serve every thread, so calls take a
lock (a multi-threaded executor is safe, not parallel).

``path`` is an exported ``.onnx`` (engine reused from, or built into, the
engine cache; a cached engine TensorRT cannot deserialise is rebuilt with a
warning) or an ``.engine`` with its sidecar ``.json`` (checked against this
GPU and TensorRT version before loading).  Imports no torch; TensorRT
and cuda-python are imported when the backend is created.
"""
from __future__ import annotations

import hashlib
import logging
import threading
from pathlib import Path
from typing import Any

import numpy as np

from ...foundation.errors import UserError
from .calibration import CalibrationSource
from ...foundation.contract import PreprocessContract
from .engine_key import DEFAULT_CALIB_COUNT
from ..embedder import Embedder

log = logging.getLogger(__name__)


def _dims(d: Any) -> tuple[int, ...]:
    return tuple(int(v) for v in d)


def check_engine_io(engine: Any, trt: Any, contract: PreprocessContract, source: str) -> tuple[str, str, int]:
    """(input name, output name, profile max batch) of ``engine`` after checking it against ``contract``.

    UserError naming ``source`` unless the engine has one float32 input
    [N, 3, H, W] and one float32 output [N, D] with the contract's H, W, D, and
    a profile 0 whose max shape is [B, 3, H, W].
    """
    names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
    inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
    outputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
    if len(inputs) != 1 or len(outputs) != 1:
        raise UserError(f"{source}: expected one input and one output, got {inputs} -> {outputs}")
    i, o = inputs[0], outputs[0]
    for name in (i, o):
        if engine.get_tensor_dtype(name) != trt.DataType.FLOAT:
            raise UserError(f"{source}: tensor {name!r} is {engine.get_tensor_dtype(name)}, not float32")
    chw, d = (3, contract.height, contract.width), contract.descriptor_dim
    in_shape, out_shape = _dims(engine.get_tensor_shape(i)), _dims(engine.get_tensor_shape(o))
    if len(in_shape) != 4 or in_shape[1:] != chw:
        raise UserError(f"{source}: engine input {list(in_shape)}, the model contract says "
                        f"[N, {chw[0]}, {chw[1]}, {chw[2]}]; rebuild the engine from this model")
    if len(out_shape) != 2 or out_shape[1] != d:
        raise UserError(f"{source}: engine output {list(out_shape)}, the model contract says [N, {d}]; "
                        "rebuild the engine from this model")
    lo, _opt, hi = (_dims(s) for s in engine.get_tensor_profile_shape(i, 0))
    if hi[1:] != chw or lo[1:] != chw or not 1 <= lo[0] <= hi[0]:
        raise UserError(f"{source}: engine profile {list(lo)}..{list(hi)} does not fit [N, "
                        f"{chw[0]}, {chw[1]}, {chw[2]}]; rebuild the engine")
    return i, o, hi[0]


class TrtEmbedder(Embedder):
    """Embedder on a TensorRT engine.

    Options: ``precision`` ("fp32" | "fp16" | "int8"; ignored for .engine),
    ``cache_dir`` (default ``engines.default_cache_dir()``; the timing
    cache lives there too), ``max_batch`` (engine profile max; opt = 1),
    ``calib`` (image directory or dataset root, int8), ``calib_traversal``,
    ``calib_count`` (default ``engine_key.DEFAULT_CALIB_COUNT``, as
    ``build-engine``).
    """
    backend = "tensorrt"

    def __init__(self, path: str | Path, precision: str = "fp16", cache_dir: str | Path | None = None,
                 max_batch: int = 8, calib: str | Path | None = None, calib_traversal: str | None = None,
                 calib_count: int = DEFAULT_CALIB_COUNT) -> None:
        from .build import current_facts, import_tensorrt, trt_logger
        from .engine_cache import check_engine_facts, read_sidecar
        from .engines import ensure_engine

        path = Path(path)
        trt = import_tensorrt()
        facts = current_facts()
        self._trt = trt
        self._runtime = trt.Runtime(trt_logger(trt))  # outlives the engine: closed after it
        if path.suffix == ".engine":
            meta = read_sidecar(path)
            check_engine_facts(meta, facts, path)
            engine_path, built = path, False
            engine = self._deserialise(path, meta)
        else:
            src = CalibrationSource(Path(calib), calib_traversal, calib_count) if calib else None
            res = ensure_engine(path, precision, cache_dir, (1, 1, max_batch), src, facts=facts)
            meta = read_sidecar(res.engine)
            engine = self._deserialise(res.engine, meta)
            if engine is None and not res.built:
                # A cached plan this TensorRT cannot read (a driver or TensorRT update with the
                # same version string, a plan truncated before its sidecar was trusted): rebuild.
                log.warning("%s: cached engine does not deserialise with this TensorRT; rebuilding it",
                            res.engine)
                res = ensure_engine(path, precision, cache_dir, (1, 1, max_batch), src, facts=facts,
                                    reject=meta["engine_sha256"])
                meta = read_sidecar(res.engine)
                engine = self._deserialise(res.engine, meta)
            engine_path, built = res.engine, res.built
        if engine is None:
            raise UserError(f"{engine_path}: TensorRT could not deserialise the engine (built by "
                            "another TensorRT version or corrupt); delete it and rebuild")
        contract = PreprocessContract.from_dict(meta["contract"], source=str(engine_path))
        super().__init__(contract, meta["fingerprint"], min(max_batch, int(meta["key"]["batch"][2])))
        self.engine_path, self.built_now = engine_path, built
        self.precision = meta["key"]["precision"]
        self._engine = engine
        context = engine.create_execution_context()
        if context is None:  # TensorRT logs why; almost always the GPU memory for its activations
            raise UserError(f"{engine_path}: TensorRT could not create an execution context (out of GPU "
                            "memory?); free GPU memory or lower max_batch")
        self._bind(context)

    def _deserialise(self, engine_path: Path, meta: dict[str, Any]) -> Any:
        """The engine at ``engine_path`` (bytes checked against the sidecar's sha256), or None if
        TensorRT cannot deserialise it."""
        blob = engine_path.read_bytes()
        if hashlib.sha256(blob).hexdigest() != meta.get("engine_sha256"):
            raise UserError(f"{engine_path}: engine bytes do not match the sha256 in its sidecar "
                            "(corrupt or replaced); rebuild it with 'distilvpr build-engine'")
        return self._runtime.deserialize_cuda_engine(blob)

    def _bind(self, context: Any) -> None:
        """Check the engine's I/O against the contract, size buffers from its profile, bind them."""
        from .cuda_mem import DeviceBuffer, PinnedArray, Stream

        self._in, self._out, profile_max = check_engine_io(self._engine, self._trt, self.contract,
                                                           str(self.engine_path))
        if self.max_batch > profile_max:
            self.max_batch = profile_max  # the Embedder splits larger inputs into chunks of this
        self._context = context
        self._lock = threading.Lock()  # one context, one set of buffers: one call at a time
        c, b = self.contract, self.max_batch
        self._h_in = PinnedArray((b, 3, c.height, c.width), np.float32)
        self._h_out = PinnedArray((b, c.descriptor_dim), np.float32)
        self._d_in = DeviceBuffer(self._h_in.nbytes)
        self._d_out = DeviceBuffer(self._h_out.nbytes)
        self._stream = Stream()
        # Addresses never change: set once; only the input shape varies per call.
        for name, buf in ((self._in, self._d_in), (self._out, self._d_out)):
            if not self._context.set_tensor_address(name, buf.ptr):
                raise UserError(f"{self.engine_path}: TensorRT refused the device address for tensor "
                                f"{name!r}; rebuild the engine")

    def _forward(self, x: np.ndarray) -> np.ndarray:
        n = len(x)
        c = self.contract
        if n > self.max_batch:
            raise UserError(f"{self.engine_path}: batch {n} above the engine's buffers ({self.max_batch})")
        with self._lock:
            if not self._context.set_input_shape(self._in, (n, 3, c.height, c.width)):
                raise UserError(f"{self.engine_path}: batch {n} outside the engine profile "
                                f"(max {self.max_batch})")
            out_shape = tuple(int(d) for d in self._context.get_tensor_shape(self._out))
            if out_shape != (n, c.descriptor_dim):
                raise UserError(f"{self.engine_path}: engine output {list(out_shape)} for batch {n}, "
                                f"expected [{n}, {c.descriptor_dim}]; rebuild the engine")
            self._h_in.array[:n] = x
            self._stream.h2d(self._d_in, self._h_in.ptr, x.nbytes)
            if not self._context.execute_async_v3(self._stream.handle):
                raise RuntimeError("TensorRT execute_async_v3 failed")
            self._stream.d2h(self._h_out.ptr, self._d_out, n * c.descriptor_dim * 4)
            self._stream.sync()
            return self._h_out.array[:n].copy()

    def close(self) -> None:
        lock = getattr(self, "_lock", None)
        if lock is not None:
            with lock:  # never free buffers under a call in flight
                self._close()
        else:
            self._close()

    def _close(self) -> None:
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
