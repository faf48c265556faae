"""Minimal CUDA memory/stream helpers over cuda-python (``cuda.bindings.runtime``).

Only what the TensorRT backend and calibrator need: device buffers, pinned
host buffers viewed as numpy, async copies on one stream.  Imported lazily;
a missing cuda-python or GPU is a UserError that says what to install.
"""
from __future__ import annotations

import ctypes
from dataclasses import dataclass
from typing import Any

import numpy as np

from ...foundation.errors import UserError


def cudart() -> Any:
    """The cuda-python runtime module (new and old import paths)."""
    try:
        from cuda.bindings import runtime  # cuda-python >= 12.6
        return runtime
    except ImportError:
        pass
    try:
        from cuda import cudart as runtime  # older cuda-python
        return runtime
    except ImportError:
        raise UserError("the tensorrt backend needs cuda-python: pip install cuda-python "
                        "(matching your CUDA major version)") from None


def check(result: Any, what: str) -> Any:
    """Unpack a cuda-python ``(err, *values)`` tuple; raise on error."""
    rt = cudart()
    err, *values = result if isinstance(result, tuple) else (result,)
    if err != rt.cudaError_t.cudaSuccess:
        name = rt.cudaGetErrorName(err)[1]
        raise UserError(f"CUDA error in {what}: {name.decode() if isinstance(name, bytes) else name}")
    return values[0] if len(values) == 1 else (values or None)


def handle(obj: Any) -> int:
    """Integer handle/pointer of a cuda-python object (stream) or int.

    cuda-python handles convert with ``int()``.  ``getPtr()`` is no fallback:
    it is the address of the Python object's storage for the handle, not the
    handle, so passing it to TensorRT would name a wrong stream.
    """
    try:
        return int(obj)
    except TypeError:
        raise TypeError(f"cannot take the integer handle of {type(obj).__name__}; this cuda-python "
                        "is not supported (pip install \"cuda-python>=12.6\")") from None


class DeviceBuffer:
    """``nbytes`` of device memory; ``.ptr`` is the device address."""

    def __init__(self, nbytes: int) -> None:
        self.nbytes = nbytes
        self.ptr = handle(check(cudart().cudaMalloc(nbytes), "cudaMalloc"))

    def free(self) -> None:
        if self.ptr:
            check(cudart().cudaFree(self.ptr), "cudaFree")
            self.ptr = 0


class PinnedArray:
    """Page-locked host memory as a numpy array (fast, truly async copies)."""

    def __init__(self, shape: tuple[int, ...], dtype: Any) -> None:
        dtype = np.dtype(dtype)
        self.nbytes = int(np.prod(shape)) * dtype.itemsize
        self.ptr = handle(check(cudart().cudaMallocHost(self.nbytes), "cudaMallocHost"))
        raw = (ctypes.c_byte * self.nbytes).from_address(self.ptr)
        self.array = np.frombuffer(raw, dtype=dtype).reshape(shape)

    def free(self) -> None:
        if self.ptr:
            self.array = None  # type: ignore[assignment]  # no view may outlive the memory
            check(cudart().cudaFreeHost(self.ptr), "cudaFreeHost")
            self.ptr = 0


class Stream:
    """One CUDA stream with async host<->device copies (``h2d``/``d2h``, pointers and sizes in bytes)
    and ``sync``; ``handle`` is the raw stream pointer TensorRT takes."""
    def __init__(self) -> None:
        self.obj = check(cudart().cudaStreamCreate(), "cudaStreamCreate")
        self.handle = handle(self.obj)

    def h2d(self, dst: DeviceBuffer, src_ptr: int, nbytes: int) -> None:
        rt = cudart()
        check(rt.cudaMemcpyAsync(dst.ptr, src_ptr, nbytes, rt.cudaMemcpyKind.cudaMemcpyHostToDevice,
                                 self.obj), "cudaMemcpyAsync H2D")

    def d2h(self, dst_ptr: int, src: DeviceBuffer, nbytes: int) -> None:
        rt = cudart()
        check(rt.cudaMemcpyAsync(dst_ptr, src.ptr, nbytes, rt.cudaMemcpyKind.cudaMemcpyDeviceToHost,
                                 self.obj), "cudaMemcpyAsync D2H")

    def sync(self) -> None:
        check(cudart().cudaStreamSynchronize(self.obj), "cudaStreamSynchronize")

    def destroy(self) -> None:
        if self.obj is not None:
            check(cudart().cudaStreamDestroy(self.obj), "cudaStreamDestroy")
            self.obj = None


@dataclass(frozen=True)
class GpuProperties:
    """Name, compute capability (major, minor), SM count and total memory (MiB) of one CUDA device."""
    name: str
    compute_capability: tuple[int, int]
    sm_count: int
    total_memory_mib: int


def gpu_properties(device: int = 0) -> GpuProperties:
    """Name, compute capability, SM count and total memory (MiB) of CUDA device ``device``."""
    props = check(cudart().cudaGetDeviceProperties(device), "cudaGetDeviceProperties")
    name = props.name
    name = name.decode(errors="replace") if isinstance(name, (bytes, bytearray)) else str(name)
    return GpuProperties(name.split("\x00", 1)[0].strip(), (int(props.major), int(props.minor)),
                         int(props.multiProcessorCount), int(props.totalGlobalMem) >> 20)


def has_cuda_device() -> bool:
    """Whether cuda-python is importable and sees at least one CUDA device (never raises)."""
    try:
        rt = cudart()
        err, count = rt.cudaGetDeviceCount()
    except Exception:  # noqa: BLE001 -- no cuda-python, no driver: no device
        return False
    return err == rt.cudaError_t.cudaSuccess and int(count) > 0
