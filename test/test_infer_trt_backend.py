"""TensorRT backend logic without TensorRT: engine I/O checks, buffer sizing, address checks, one call at a time.

The engine, execution context and CUDA memory are fakes (test/fake_tensorrt.py
and below); what is tested is the backend's own code around them.
"""
from __future__ import annotations

import hashlib
import logging
import threading
import time
from pathlib import Path

import fake_tensorrt as ftrt
import numpy as np
import pytest
from test_export_engine_cache import ORIN, write_tiny_onnx

from distilvpr_core.foundation.errors import UserError
from distilvpr_core.infer.tensorrt import build as trt_build
from distilvpr_core.infer.tensorrt import cuda_mem
from distilvpr_core.foundation.contract import PreprocessContract
from distilvpr_core.infer.tensorrt.backend import TrtEmbedder, check_engine_io
from distilvpr_core.infer.tensorrt.engine_cache import read_sidecar
from distilvpr_core.infer.tensorrt.engines import ensure_engine

CONTRACT = PreprocessContract(input_size=(8, 8), descriptor_dim=4)  # W x H = 8 x 8, D = 4
TRT = ftrt.make_module()


class Buf:
    def __init__(self, nbytes: int) -> None:
        self.nbytes, self.ptr, self.freed = nbytes, 0x1000 + nbytes, False

    def free(self) -> None:
        self.freed = True


class Pinned(Buf):
    def __init__(self, shape, dtype) -> None:
        self.array = np.zeros(shape, dtype)
        super().__init__(self.array.nbytes)


class FakeStream:
    handle = 7

    def h2d(self, dst: Buf, src_ptr: int, nbytes: int) -> None:
        assert nbytes <= dst.nbytes, "host-to-device copy past the device buffer"

    def d2h(self, dst_ptr: int, src: Buf, nbytes: int) -> None:
        assert nbytes <= src.nbytes, "device-to-host copy past the device buffer"

    def sync(self) -> None:
        pass

    def destroy(self) -> None:
        pass


class Context:
    """Execution context: reports the output shape it would write; detects overlapping calls."""

    def __init__(self, out_dim: int = 4, accept_address: bool = True, profile_max: int = 8) -> None:
        self.out_dim, self.accept_address, self.profile_max = out_dim, accept_address, profile_max
        self.addresses: dict[str, int] = {}
        self.active = self.max_active = 0
        self.n = 0

    def set_tensor_address(self, name: str, ptr: int) -> bool:
        self.addresses[name] = ptr
        return self.accept_address

    def set_input_shape(self, name: str, shape: tuple) -> bool:
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        time.sleep(0.002)
        self.n = shape[0]
        self.active -= 1
        return shape[0] <= self.profile_max

    def get_tensor_shape(self, name: str) -> tuple:
        return (self.n, self.out_dim)

    def execute_async_v3(self, stream: int) -> bool:
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        time.sleep(0.005)
        self.active -= 1
        return True


@pytest.fixture(autouse=True)
def fake_cuda(monkeypatch):
    monkeypatch.setattr(cuda_mem, "DeviceBuffer", Buf)
    monkeypatch.setattr(cuda_mem, "PinnedArray", Pinned)
    monkeypatch.setattr(cuda_mem, "Stream", FakeStream)


def embedder(engine: ftrt.Engine, context: Context, max_batch: int = 8) -> TrtEmbedder:
    """A TrtEmbedder bound to a fake engine/context (what __init__ does after loading the engine)."""
    emb = object.__new__(TrtEmbedder)
    emb.contract, emb.fingerprint, emb.max_batch = CONTRACT, "ab" * 32, max_batch
    emb.engine_path, emb._trt, emb._engine = Path("m.engine"), TRT, engine
    emb._bind(context)
    return emb


def test_engine_io_checked_against_the_contract():
    assert check_engine_io(ftrt.Engine(), TRT, CONTRACT, "m.engine") == ("image", "descriptor", 8)
    bad = {"output [-1, 256]": ftrt.Engine(out_shape=(-1, 256)),
           "input [-1, 3, 16, 16]": ftrt.Engine(in_shape=(-1, 3, 16, 16)),
           "profile": ftrt.Engine(profile=((1, 3, 8, 8), (1, 3, 8, 8), (8, 3, 16, 8))),
           "not float32": ftrt.Engine(dtype=ftrt.DataType.HALF),
           "one input and one output": ftrt.Engine(outputs=2)}
    for what, engine in bad.items():
        with pytest.raises(UserError, match=rf"m\.engine: .*{what.split()[0]}"):
            check_engine_io(engine, TRT, CONTRACT, "m.engine")


def test_buffers_sized_from_the_engine_profile_not_the_request():
    profile4 = ((1, 3, 8, 8), (1, 3, 8, 8), (4, 3, 8, 8))
    emb = embedder(ftrt.Engine(profile=profile4), Context(profile_max=4), max_batch=16)
    assert emb.max_batch == 4
    assert emb._d_in.nbytes == 4 * 3 * 8 * 8 * 4 and emb._d_out.nbytes == 4 * 4 * 4
    out = emb.embed_preprocessed(np.zeros((10, 3, 8, 8), np.float32))  # split into 4 + 4 + 2
    assert out.shape == (10, 4)
    assert emb._context.addresses == {"image": emb._d_in.ptr, "descriptor": emb._d_out.ptr}


def test_output_shape_mismatch_is_refused_before_running():
    emb = embedder(ftrt.Engine(), Context(out_dim=4))
    emb._context.out_dim = 384  # an engine that would write [n, 384] into a [n, 4] buffer
    with pytest.raises(UserError, match=r"engine output \[2, 384\] for batch 2, expected \[2, 4\]"):
        emb._forward(np.zeros((2, 3, 8, 8), np.float32))


def test_refused_tensor_address_is_an_error():
    with pytest.raises(UserError, match="refused the device address for tensor 'image'"):
        embedder(ftrt.Engine(), Context(accept_address=False))


def test_one_call_at_a_time_on_the_shared_context():
    emb = embedder(ftrt.Engine(), Context())
    x = np.zeros((2, 3, 8, 8), np.float32)
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(10):
                emb._forward(x)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and emb._context.max_active == 1
    emb.close()
    assert emb._d_in is None and emb._context is None


def test_stream_handle_never_falls_back_to_getptr():
    class Handle:
        def getPtr(self) -> int:  # the address of the storage, not the handle
            return 0xDEAD

    assert cuda_mem.handle(5) == 5
    with pytest.raises(TypeError, match="cannot take the integer handle of Handle"):
        cuda_mem.handle(Handle())


@pytest.fixture
def model_onnx(tmp_path) -> Path:
    """The tiny ONNX model of test_export_engine_cache (contract 8 x 8 -> 4, as the fake engines)."""
    return write_tiny_onnx(tmp_path / "tiny.onnx")


class Plans:
    """The TensorRT builder, standing in: hands out the plans in ``plans`` in turn (b"engine..." deserialise)."""

    def __init__(self, *plans: bytes) -> None:
        self.plans, self.calls = list(plans), 0

    def __call__(self, onnx_path, spec, contract, **kw) -> bytes:
        self.calls += 1
        return self.plans.pop(0)


@pytest.fixture
def fake_trt(monkeypatch):
    """TrtEmbedder's TensorRT, GPU facts and builder, faked; returns a setter for the builder's plans."""
    monkeypatch.setattr(trt_build, "import_tensorrt", lambda: TRT)
    monkeypatch.setattr(trt_build, "current_facts", lambda device=0: ORIN)
    monkeypatch.setattr(ftrt.Engine, "context_factory", Context)

    def plans(*blobs: bytes) -> Plans:
        p = Plans(*blobs)
        monkeypatch.setattr(trt_build, "build_engine", p)
        return p
    return plans


def test_cached_engine_that_no_longer_deserialises_is_rebuilt_and_replaced(model_onnx, tmp_path, fake_trt,
                                                                         caplog):
    cache = tmp_path / "c"
    builder = fake_trt(b"plan this TensorRT cannot read", b"engine rebuilt")
    stale = ensure_engine(model_onnx, "fp16", cache, facts=ORIN, builder=builder)  # cached, sidecar valid
    with caplog.at_level(logging.WARNING):
        emb = TrtEmbedder(model_onnx, "fp16", cache)
    assert "does not deserialise with this TensorRT; rebuilding it" in caplog.text
    assert builder.calls == 2 and emb.built_now and emb.engine_path == stale.engine
    assert stale.engine.read_bytes() == b"engine rebuilt"  # replaced in place, atomically:
    assert read_sidecar(stale.engine)["engine_sha256"] == hashlib.sha256(b"engine rebuilt").hexdigest()
    assert not [p.name for p in cache.iterdir() if p.name.startswith(".")]  # no temp file left
    assert emb._forward(np.zeros((2, 3, 8, 8), np.float32)).shape == (2, 4)
    emb.close()
    assert not TrtEmbedder(model_onnx, "fp16", cache).built_now  # the rebuilt engine is served from now on


def test_engine_that_does_not_deserialise_after_a_rebuild_is_an_error(model_onnx, tmp_path, fake_trt):
    builder = fake_trt(b"unreadable 1", b"unreadable 2")
    ensure_engine(model_onnx, "fp16", tmp_path / "c", facts=ORIN, builder=builder)
    with pytest.raises(UserError, match="could not deserialise the engine"):
        TrtEmbedder(model_onnx, "fp16", tmp_path / "c")
    assert builder.calls == 2  # one rebuild, no loop
    # An .engine given by path has no ONNX to rebuild from: an error, nothing built.
    engine = next((tmp_path / "c").glob("*.engine"))
    with pytest.raises(UserError, match="could not deserialise the engine"):
        TrtEmbedder(engine)
    assert builder.calls == 2


def test_no_execution_context_is_an_error(model_onnx, tmp_path, fake_trt, monkeypatch):
    fake_trt(b"engine ok")
    monkeypatch.setattr(ftrt.Engine, "context_factory", None)  # create_execution_context() -> None
    with pytest.raises(UserError, match="could not create an execution context"):
        TrtEmbedder(model_onnx, "fp16", tmp_path / "c")
