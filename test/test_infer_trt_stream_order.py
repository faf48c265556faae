"""The TensorRT backend's call order on its CUDA stream, against a simulated GPU (test/fake_cuda.py).

The real ``cuda_mem`` buffers and stream run on a fake cuda-python whose
streams are asynchronous; the execution context enqueues a kernel that
computes ``x.reshape(n, -1) @ W`` from the device input address into the
device output address.  A missing sync, a device-to-host copy before
``execute_async_v3``, a copy in the wrong direction, or work on stream 0 each
returns wrong numbers or an error here.
"""
from __future__ import annotations

import ctypes
from pathlib import Path

import fake_tensorrt as ftrt
import numpy as np
import pytest
from fake_cuda import FakeCudaRuntime

from distilvpr_core.foundation.contract import PreprocessContract
from distilvpr_core.foundation.errors import UserError
from distilvpr_core.infer.tensorrt import cuda_mem
from distilvpr_core.infer.tensorrt.backend import TrtEmbedder

CONTRACT = PreprocessContract(input_size=(8, 8), descriptor_dim=4)
W = np.random.default_rng(0).normal(size=(3 * 8 * 8, 4)).astype(np.float32)


class KernelContext:
    """Execution context whose ``execute_async_v3`` enqueues ``out = x @ W`` on the stream it is given."""

    def __init__(self, rt: FakeCudaRuntime) -> None:
        self.rt, self.addresses, self.n = rt, {}, 0

    def set_tensor_address(self, name: str, ptr: int) -> bool:
        self.rt.log.append(("address", name, ptr))
        self.addresses[name] = ptr
        return True

    def set_input_shape(self, name: str, shape: tuple) -> bool:
        self.n = shape[0]
        return True

    def get_tensor_shape(self, name: str) -> tuple:
        return (self.n, 4)

    def execute_async_v3(self, stream: int) -> bool:
        self.rt.log.append(("execute", int(stream)))
        n, src, dst = self.n, self.addresses["image"], self.addresses["descriptor"]

        def kernel() -> None:
            x = np.frombuffer((ctypes.c_byte * (n * W.shape[0] * 4)).from_address(src), np.float32)
            out = x.reshape(n, -1) @ W
            ctypes.memmove(dst, out.astype(np.float32).tobytes(), out.nbytes)
        self.rt.enqueue(stream, kernel)
        return True


@pytest.fixture
def gpu(monkeypatch) -> FakeCudaRuntime:
    rt = FakeCudaRuntime()
    monkeypatch.setattr(cuda_mem, "cudart", lambda: rt)
    return rt


def embedder(rt: FakeCudaRuntime) -> TrtEmbedder:
    emb = object.__new__(TrtEmbedder)
    emb.contract, emb.fingerprint, emb.max_batch = CONTRACT, "ab" * 32, 8
    emb.engine_path, emb._trt, emb._engine = Path("m.engine"), ftrt.make_module(), ftrt.Engine()
    emb._bind(KernelContext(rt))
    return emb


def test_each_call_returns_its_own_engine_output(gpu):
    emb = embedder(gpu)
    rng = np.random.default_rng(1)
    for n in (3, 2, 5):  # a stale or missing copy shows up as zeros or the previous call's rows
        x = rng.normal(size=(n, 3, 8, 8)).astype(np.float32)
        np.testing.assert_allclose(emb._forward(x), x.reshape(n, -1) @ W, rtol=1e-5, atol=1e-5)
    emb.close()
    assert gpu.device == {} and gpu.host == {}  # every buffer freed


def test_copy_execute_copy_sync_on_the_backend_stream(gpu):
    emb = embedder(gpu)
    stream, d_in, d_out = emb._stream.handle, emb._d_in.ptr, emb._d_out.ptr
    assert stream != 0  # never the default stream
    addresses = {name: ptr for kind, name, ptr in gpu.log if kind == "address"}
    assert addresses == {"image": d_in, "descriptor": d_out}  # set before any call, never changed
    gpu.log.clear()
    emb._forward(np.ones((2, 3, 8, 8), np.float32))
    assert gpu.log == [("H2D", stream, d_in, emb._h_in.ptr, 2 * 3 * 8 * 8 * 4),
                       ("execute", stream),
                       ("D2H", stream, emb._h_out.ptr, d_out, 2 * 4 * 4),
                       ("sync", stream)]
    emb.close()


def test_a_copy_in_the_wrong_direction_is_a_cuda_error(gpu):
    dev, host = cuda_mem.DeviceBuffer(64), cuda_mem.PinnedArray((16,), np.float32)
    stream = cuda_mem.Stream()
    stream.h2d(dev, host.ptr, 64)
    stream.d2h(host.ptr, dev, 64)
    with pytest.raises(UserError, match="CUDA error in cudaMemcpyAsync H2D: cudaErrorInvalidValue"):
        stream.h2d(cuda_mem.DeviceBuffer(64), dev.ptr, 64)  # source is device memory, not host
    stream.sync()
    stream.destroy()
