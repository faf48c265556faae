"""trt_build against a fake ``tensorrt`` module: version gate, flags, fp32 pooling, timing cache, calibration.

The fake (test/fake_tensorrt.py) exposes the TensorRT 10 surface distilvpr
calls, or the 11.x one with the removed APIs absent; its builder drives the
calibrator as TensorRT does, swallowing exceptions from ``get_batch``.
"""
from __future__ import annotations

import sys
from pathlib import Path

import fake_tensorrt as ftrt
import numpy as np
import pytest
from PIL import Image

from distilvpr_core.foundation.errors import UserError
from distilvpr_core.infer.tensorrt import build as trt_build
from distilvpr_core.infer.tensorrt.engine_key import EngineSpec, build_recipe
from distilvpr_core.infer.tensorrt.calibration import CalibrationSource
from distilvpr_core.foundation.contract import PreprocessContract

CONTRACT = PreprocessContract(input_size=(8, 8), descriptor_dim=4)


def spec(precision: str) -> EngineSpec:
    return EngineSpec("00" * 32, precision, (8, 8), (1, 1, 8), "cc" * 32 if precision == "int8" else "")


class Uploads:
    """Stands in for the calibrator's device buffer: counts copies and frees; can fail on copy ``fail_at``."""

    def __init__(self, fail_at: int | None = None, error: BaseException | None = None) -> None:
        self.copies, self.freed, self.allocated, self.fail_at = 0, 0, 0, fail_at
        self.error = error or RuntimeError("cudaMemcpy failed: illegal address")

    def __call__(self, nbytes: int):
        self.allocated += 1

        def upload(host: np.ndarray) -> int:
            assert host.dtype == np.float32 and host.nbytes == nbytes
            self.copies += 1
            if self.copies == self.fail_at:
                raise self.error
            return 0xD0000

        def free() -> None:
            self.freed += 1
        return upload, free


def images(d: Path, n: int, corrupt: int | None = None) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        if i == corrupt:
            (d / f"{i:03d}.png").write_bytes(b"not a png")
        else:
            Image.fromarray(rng.integers(0, 256, (12, 12, 3), np.uint8)).save(d / f"{i:03d}.png")
    return d


@pytest.mark.parametrize("version", ["11.0.0.114", "11.4.0.106", "8.6.1", "9.3.0"])
def test_other_major_versions_are_refused_with_the_install_command(version, monkeypatch):
    fake = ftrt.make_module(version)
    with pytest.raises(UserError, match=rf"TensorRT {version} found.*supports TensorRT 10\.x only.*"
                                        r"pip install \"tensorrt-cu12>=10\.3,<11\"") as exc:
        trt_build.check_tensorrt(fake)
    if version.startswith("11"):
        assert "strongly typed" in str(exc.value)
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    with pytest.raises(UserError, match="supports TensorRT 10.x only"):
        trt_build.import_tensorrt()


def test_tensorrt_10_passes_and_a_stripped_10_names_what_is_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", ftrt.make_module("10.3.0"))
    assert trt_build.import_tensorrt().__version__ == "10.3.0"
    lean = ftrt.make_module("10.8.0.43")
    del lean.IInt8EntropyCalibrator2
    with pytest.raises(UserError, match=r"lacks \['IInt8EntropyCalibrator2'\]"):
        trt_build.check_tensorrt(lean)


def test_fp32_clears_tf32_and_fp16_pins_gem_to_fp32(tmp_path):
    trt = ftrt.make_module()
    trt_build.build_engine(tmp_path / "m.onnx", spec("fp32"), CONTRACT, trt=trt)
    cfg, net = ftrt.Builder.last.config, ftrt.Builder.last.network
    assert ftrt.BuilderFlag.TF32 not in cfg.flags and ftrt.BuilderFlag.FP16 not in cfg.flags
    assert all(layer.precision is None for layer in net.layers)
    assert cfg.pool[ftrt.MemoryPoolType.WORKSPACE] == 1024 << 20
    assert cfg.profiles[0].shapes["image"] == ((1, 3, 8, 8), (1, 3, 8, 8), (8, 3, 8, 8))

    trt_build.build_engine(tmp_path / "m.onnx", spec("fp16"), CONTRACT, trt=trt)
    cfg, net = ftrt.Builder.last.config, ftrt.Builder.last.network
    assert {ftrt.BuilderFlag.FP16, ftrt.BuilderFlag.PREFER_PRECISION_CONSTRAINTS} <= cfg.flags
    pinned = [layer.name for layer in net.layers if layer.precision == ftrt.DataType.FLOAT]
    # Every float layer after the projection conv, the broadcasts TensorRT adds for GeM's p included
    # (they carry no /pool/ name); constants and shape/integer layers are left alone.
    assert pinned == ["/pool/Clip", "/pool/ReduceMax", "/pool/Div", "ONNXTRT_Broadcast_64", "/pool/Pow",
                      "/pool/ReduceMean", "/pool/Reciprocal", "/pool/Mul", "ONNXTRT_Broadcast_67",
                      "/pool/Pow_1", "/pool/Flatten", "/pool/Mul_1"]
    assert all(layer.output_types == {0: ftrt.DataType.FLOAT} for layer in net.layers if layer.name in pinned)
    untouched = [layer for layer in net.layers if layer.name not in pinned]
    assert all(layer.precision is None and layer.output_types == {} for layer in untouched)
    assert {layer.name for layer in untouched} >= {"/proj/Conv", "pool.p", "/pool/Constant",
                                                   "ONNXTRT_ShapeTensorFromDims_70", "ONNXTRT_gather_71"}


def test_rejected_optimisation_or_calibration_profile_is_an_error(tmp_path, monkeypatch):
    trt = ftrt.make_module()
    monkeypatch.setattr(ftrt.Config, "accept_profile", False)  # add_optimization_profile -> -1
    with pytest.raises(UserError, match=r"rejected the optimisation profile batch \(1, 1, 8\)"):
        trt_build.build_engine(tmp_path / "m.onnx", spec("fp16"), CONTRACT, trt=trt)
    monkeypatch.setattr(ftrt.Config, "accept_profile", True)
    monkeypatch.setattr(ftrt.Config, "accept_calib_profile", False)  # set_calibration_profile -> False
    up = Uploads()
    with pytest.raises(UserError, match=r"rejected the INT8 calibration profile \[8, 3, 8, 8\]"):
        trt_build.build_engine(tmp_path / "m.onnx", spec("int8"), CONTRACT, trt=trt, uploader=up,
                               calib=CalibrationSource(images(tmp_path / "imgs", 8)),
                               calib_cache=tmp_path / "t.calib")
    assert up.freed == up.allocated == 0  # refused before the buffer was taken


def test_one_logger_per_process(tmp_path, monkeypatch):
    monkeypatch.setattr(trt_build, "_LOGGER", None)
    trt = ftrt.make_module()
    before = ftrt.Logger.made
    for _ in range(3):
        trt_build.build_engine(tmp_path / "m.onnx", spec("fp32"), CONTRACT, trt=trt)
    assert ftrt.Logger.made - before == 1


def test_timing_cache_round_trip(tmp_path):
    tc = tmp_path / "timing.cache"
    trt = ftrt.make_module()
    assert trt_build.build_engine(tmp_path / "m.onnx", spec("fp16"), CONTRACT, timing_cache=tc,
                                  trt=trt) == b"ENGINE-BYTES"
    assert tc.read_bytes() == b"TIMING:"
    trt_build.build_engine(tmp_path / "m.onnx", spec("fp16"), CONTRACT, timing_cache=tc, trt=trt)
    assert ftrt.Builder.last.config.timing_cache.data == b"TIMING:"  # the saved one was loaded


def test_foreign_or_rejected_timing_cache_never_costs_the_engine(tmp_path, monkeypatch, caplog):
    tc = tmp_path / "timing.cache"
    tc.write_bytes(b"FOREIGN cache from another GPU")
    trt = ftrt.make_module()
    assert trt_build.build_engine(tmp_path / "m.onnx", spec("fp16"), CONTRACT, timing_cache=tc,
                                  trt=trt) == b"ENGINE-BYTES"
    assert ftrt.Builder.last.config.timing_cache.data == b""  # replaced by a fresh one
    assert "unusable" in caplog.text and tc.read_bytes() == b"TIMING:"
    # set_timing_cache says False, and get_timing_cache then has nothing: the engine still comes back.
    monkeypatch.setattr(ftrt.Config, "accept_cache", False)
    monkeypatch.setattr(ftrt.Config, "return_no_cache", True)
    tc.write_bytes(b"old")
    assert trt_build.build_engine(tmp_path / "m.onnx", spec("fp16"), CONTRACT, timing_cache=tc,
                                  trt=trt) == b"ENGINE-BYTES"
    assert tc.read_bytes() == b"old" and "no timing cache" in caplog.text


def test_int8_calibrates_full_batches_writes_table_and_frees_buffer(tmp_path):
    calib = CalibrationSource(images(tmp_path / "imgs", 20), limit=20)
    up, table = Uploads(), tmp_path / "t.calib"
    trt_build.build_engine(tmp_path / "m.onnx", spec("int8"), CONTRACT, recipe=build_recipe("int8", calib_batch=8),
                           calib=calib, calib_cache=table, trt=ftrt.make_module(), uploader=up)
    b = ftrt.Builder.last
    assert b.calibrated_batches == 2 and up.copies == 2 and up.freed == up.allocated == 1  # 20: 2 batches of 8
    assert {ftrt.BuilderFlag.INT8, ftrt.BuilderFlag.FP16} <= b.config.flags
    assert b.config.calibration_profile.shapes["image"][0] == (8, 3, 8, 8)
    assert table.read_bytes() == b"CALIB-TABLE"


def test_unreadable_calibration_image_fails_the_build_not_silently(tmp_path):
    calib = CalibrationSource(images(tmp_path / "imgs", 24, corrupt=12), limit=24)
    up, table = Uploads(), tmp_path / "t.calib"
    with pytest.raises(UserError, match="012.png: unreadable calibration image"):
        trt_build.build_engine(tmp_path / "m.onnx", spec("int8"), CONTRACT, calib=calib, calib_cache=table,
                               trt=ftrt.make_module(), uploader=up)
    assert not table.exists() and up.freed == 1  # no table from the partial calibration


def test_device_copy_error_is_reraised_after_the_build(tmp_path):
    calib = CalibrationSource(images(tmp_path / "imgs", 24), limit=24)
    with pytest.raises(UserError, match=r"INT8 calibration failed after 1 batches: RuntimeError: cudaMemcpy"):
        trt_build.build_engine(tmp_path / "m.onnx", spec("int8"), CONTRACT, calib=calib,
                               calib_cache=tmp_path / "t.calib", trt=ftrt.make_module(), uploader=Uploads(2))
    assert not (tmp_path / "t.calib").exists()


def test_fewer_images_than_one_batch_is_refused(tmp_path):
    calib = CalibrationSource(images(tmp_path / "imgs", 5))  # limit 128, but only 5 images exist
    with pytest.raises(UserError, match="no full batch of 8 images"):
        trt_build.build_engine(tmp_path / "m.onnx", spec("int8"), CONTRACT, calib=calib,
                               calib_cache=tmp_path / "t.calib", trt=ftrt.make_module(), uploader=Uploads())


def test_exported_student_ends_with_its_gem_after_the_last_conv(tmp_path):
    """What the fp32 pinning relies on: in the exported student, every node after the last Conv is
    GeM's, and GeM's p (an initializer) is used there only."""
    import onnx

    from distilvpr_core.export.random_student import export_random_student
    _pt, path = export_random_student(tmp_path, (64, 48), dim=16)
    nodes = list(onnx.load(str(path)).graph.node)
    last_conv = max(i for i, n in enumerate(nodes) if n.op_type == "Conv")
    assert nodes[last_conv].name == "/proj/Conv"
    tail = nodes[last_conv + 1:]
    assert tail and all(n.name.startswith("/pool/") for n in tail)
    users_of_p = [n for n in nodes if "pool.p" in n.input]
    assert users_of_p and all(n in tail for n in users_of_p)


def test_calibrator_buffer_freed_when_creating_the_calibrator_fails(tmp_path, monkeypatch):
    def broken_init(self) -> None:
        raise RuntimeError("IInt8EntropyCalibrator2.__init__ failed")

    monkeypatch.setattr(ftrt.IInt8EntropyCalibrator2, "__init__", broken_init)
    up = Uploads()
    with pytest.raises(RuntimeError, match="__init__ failed"):
        trt_build.build_engine(tmp_path / "m.onnx", spec("int8"), CONTRACT, trt=ftrt.make_module(), uploader=up,
                               calib=CalibrationSource(images(tmp_path / "imgs", 8)),
                               calib_cache=tmp_path / "t.calib")
    assert up.allocated == 1 and up.freed == 1


def test_ctrl_c_during_calibration_stays_a_keyboard_interrupt(tmp_path):
    up = Uploads(fail_at=2, error=KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        trt_build.build_engine(tmp_path / "m.onnx", spec("int8"), CONTRACT, trt=ftrt.make_module(), uploader=up,
                               calib=CalibrationSource(images(tmp_path / "imgs", 24), limit=24),
                               calib_cache=tmp_path / "t.calib")
    assert up.freed == 1 and not (tmp_path / "t.calib").exists()


def test_default_calibration_table_is_keyed_on_model_and_calibration_content(tmp_path):
    """Without ``calib_cache`` the table goes beside the ONNX under a content key: a retrained model at
    the same path, or another calibration set, is calibrated afresh, never given the old scales."""
    onnx_path, trt = tmp_path / "m.onnx", ftrt.make_module()
    calib = CalibrationSource(images(tmp_path / "imgs", 8), limit=8)

    def build(onnx_sha: str, calib_digest: str) -> int:
        s = EngineSpec(onnx_sha, "int8", (8, 8), (1, 1, 8), calib_digest)
        trt_build.build_engine(onnx_path, s, CONTRACT, calib=calib, trt=trt, uploader=Uploads())
        return ftrt.Builder.last.calibrated_batches

    assert build("00" * 32, "cc" * 32) == 1
    assert build("00" * 32, "cc" * 32) == 0  # same model, same images: the table is reused
    assert build("11" * 32, "cc" * 32) == 1  # retrained, same path: calibrated again
    assert build("11" * 32, "dd" * 32) == 1  # other calibration set: calibrated again
    tables = sorted(p.name for p in tmp_path.glob("*.calib"))
    assert len(tables) == 3 and all(t.startswith("m-") for t in tables)
    assert not (tmp_path / "m.onnx.calib").exists()
