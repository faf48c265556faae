"""INT8 calibration for the TensorRT builder: an entropy calibrator fed by the shared
preprocessing, and the device buffer it uploads batches through.

The buffer belongs to ``build_engine``, which frees it however the build ends
(also when creating the calibrator fails); the calibrator only uploads into it.

The calibrator body is plain Python so its error handling is tested without
TensorRT; ``make_calibrator`` mixes it into ``trt.IInt8EntropyCalibrator2``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from ...foundation.atomic import write_bytes_atomic
from ...foundation.errors import UserError


class CalibratorBody:
    """The body of the INT8 calibrator (mixed into ``trt.IInt8EntropyCalibrator2`` at build time).

    Feeds full batches; an exception while reading or uploading a batch is
    kept in ``error`` and ends the data (the binding swallows exceptions from
    ``get_batch``), and ``build_engine`` re-raises it after the build, with its
    type (a KeyboardInterrupt stays one).  ``upload(host) -> ptr`` copies one
    float32 batch to the device.
    """

    def _setup(self, batches: Iterator[np.ndarray], batch: int, cache_file: Path,
               upload: Callable[[np.ndarray], int]) -> None:
        self._batches, self._batch, self._cache_file = batches, batch, cache_file
        self._upload = upload
        self.error: BaseException | None = None
        self.batches_fed = 0

    def get_batch_size(self) -> int:
        return self._batch

    def get_batch(self, names: list[str]) -> list[int] | None:
        if self.error is not None:
            return None
        try:
            nxt = next(self._batches, None)
            if nxt is None:
                if self.batches_fed == 0:
                    raise UserError(f"INT8 calibration got no full batch of {self._batch} images; "
                                    f"give at least {self._batch} readable images (--calib-count)")
                return None
            ptr = self._upload(np.ascontiguousarray(nxt, np.float32))
            self.batches_fed += 1
            return [ptr]
        except BaseException as exc:  # noqa: BLE001 -- Ctrl-C too: re-raised, as is, after the build
            self.error = exc
            return None

    def read_calibration_cache(self) -> bytes | None:
        return self._cache_file.read_bytes() if self._cache_file.is_file() else None

    def write_calibration_cache(self, cache: Any) -> None:
        if self.error is None:  # never keep scales from a partial calibration
            write_bytes_atomic(self._cache_file, bytes(memoryview(cache)))


def device_uploader(nbytes: int) -> tuple[Callable[[np.ndarray], int], Callable[[], None]]:
    """(upload, free) over one device buffer of ``nbytes`` (cuda-python)."""
    from .cuda_mem import DeviceBuffer, check, cudart

    dev = DeviceBuffer(nbytes)
    keep: list[np.ndarray] = []  # the host batch stays alive until the next copy

    def upload(host: np.ndarray) -> int:
        if host.nbytes > dev.nbytes:
            raise UserError(f"calibration batch of {host.nbytes} bytes exceeds its {dev.nbytes}-byte buffer")
        keep[:] = [host]
        rt = cudart()
        check(rt.cudaMemcpy(dev.ptr, host.ctypes.data, host.nbytes,
                            rt.cudaMemcpyKind.cudaMemcpyHostToDevice), "cudaMemcpy calib")
        return dev.ptr

    return upload, dev.free


def make_calibrator(trt: Any, batches: Iterator[np.ndarray], batch: int, cache_file: Path,
                    upload: Callable[[np.ndarray], int]) -> Any:
    """A ``trt.IInt8EntropyCalibrator2`` over ``batches`` (float32 [batch, 3, H, W])."""

    class Calibrator(CalibratorBody, trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self._setup(batches, batch, cache_file, upload)

    return Calibrator()
