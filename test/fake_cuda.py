"""A stand-in for cuda-python's runtime module: host memory posing as a GPU, with asynchronous streams.

Device and pinned allocations are real host buffers (ctypes), kept in two
tables, so a copy whose direction does not match its pointers fails as CUDA
fails it (cudaErrorInvalidValue).  Work on a stream (copies, and kernels that
a fake execution context enqueues) is queued per stream handle and runs only
when that stream is synchronised: a host buffer read before the sync holds
the old bytes, as on a GPU.  Stream 0 is a queue of its own (as under
per-thread default streams), so work put there is never finished by syncing
the backend's stream.  Every call that orders work is appended to ``log``.
"""
from __future__ import annotations

import ctypes
import enum
from typing import Any, Callable


class cudaError_t(enum.IntEnum):  # cuda-python's names
    cudaSuccess = 0
    cudaErrorInvalidValue = 1


class cudaMemcpyKind(enum.IntEnum):
    cudaMemcpyHostToHost = 0
    cudaMemcpyHostToDevice = 1
    cudaMemcpyDeviceToHost = 2


OK = cudaError_t.cudaSuccess


class FakeCudaRuntime:
    cudaError_t = cudaError_t
    cudaMemcpyKind = cudaMemcpyKind

    def __init__(self) -> None:
        self.log: list[tuple] = []
        self.device: dict[int, Any] = {}
        self.host: dict[int, Any] = {}
        self.queues: dict[int, list[Callable[[], None]]] = {0: []}
        self._next_stream = 0x51

    # memory
    def _alloc(self, table: dict[int, Any], nbytes: int) -> tuple:
        buf = ctypes.create_string_buffer(nbytes)
        table[ctypes.addressof(buf)] = buf
        return OK, ctypes.addressof(buf)

    def cudaMalloc(self, nbytes: int) -> tuple:
        return self._alloc(self.device, nbytes)

    def cudaMallocHost(self, nbytes: int) -> tuple:
        return self._alloc(self.host, nbytes)

    def cudaFree(self, ptr: int) -> tuple:
        return (OK,) if self.device.pop(ptr, None) is not None else (cudaError_t.cudaErrorInvalidValue,)

    def cudaFreeHost(self, ptr: int) -> tuple:
        return (OK,) if self.host.pop(ptr, None) is not None else (cudaError_t.cudaErrorInvalidValue,)

    @staticmethod
    def inside(table: dict[int, Any], ptr: int, nbytes: int) -> bool:
        return any(base <= ptr and ptr + nbytes <= base + len(buf) for base, buf in table.items())

    # streams
    def cudaStreamCreate(self) -> tuple:
        handle, self._next_stream = self._next_stream, self._next_stream + 1
        self.queues[handle] = []
        return OK, handle

    def cudaStreamDestroy(self, stream: int) -> tuple:
        self.queues.pop(int(stream))
        return (OK,)

    def enqueue(self, stream: int, work: Callable[[], None]) -> None:
        self.queues[int(stream)].append(work)

    def cudaStreamSynchronize(self, stream: int) -> tuple:
        self.log.append(("sync", int(stream)))
        queue = self.queues[int(stream)]
        while queue:
            queue.pop(0)()
        return (OK,)

    def cudaMemcpyAsync(self, dst: int, src: int, nbytes: int, kind: cudaMemcpyKind, stream: int) -> tuple:
        name = {cudaMemcpyKind.cudaMemcpyHostToDevice: "H2D", cudaMemcpyKind.cudaMemcpyDeviceToHost: "D2H"}[kind]
        self.log.append((name, int(stream), dst, src, nbytes))
        to, frm = (self.device, self.host) if name == "H2D" else (self.host, self.device)
        if not (self.inside(to, dst, nbytes) and self.inside(frm, src, nbytes)):
            return (cudaError_t.cudaErrorInvalidValue,)
        self.enqueue(stream, lambda: ctypes.memmove(dst, src, nbytes))
        return (OK,)

    def cudaGetErrorName(self, err: cudaError_t) -> tuple:
        return OK, err.name.encode()
