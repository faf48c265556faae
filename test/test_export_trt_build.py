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

    def __init__(self, fail_at: int | None = None) -> None:
        self.copies, self.freed, self.fail_at = 0, 0, fail_at

    def __call__(self, nbytes: int):
        def upload(host: np.ndarray) -> int:
            assert host.dtype == np.float32 and host.nbytes == nbytes
            self.copies += 1
            if self.copies == self.fail_at:
                raise RuntimeError("cudaMemcpy failed: illegal address")
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
    assert pinned == [n for n in ftrt.Network.LAYERS if n.startswith("/pool/")] and len(pinned) == 7
    assert all(layer.output_types == {0: ftrt.DataType.FLOAT} for layer in net.layers if layer.name in pinned)
    assert net.layers[1].precision is None  # the projection conv stays free to run in fp16


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
    assert b.calibrated_batches == 2 and up.copies == 2 and up.freed == 1  # 20 images: 2 full batches of 8
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


def test_exported_student_pooling_nodes_carry_the_pinned_prefix(tmp_path):
    """TensorRT names layers after ONNX nodes: the GeM nodes must start with POOL_LAYER_PREFIX."""
    import onnx

    from distilvpr_core.export.random_student import export_random_student
    _pt, path = export_random_student(tmp_path, (64, 48), dim=16)
    names = [n.name for n in onnx.load(str(path)).graph.node]
    pool = [n for n in names if n.startswith(trt_build.POOL_LAYER_PREFIX)]
    assert {"Pow", "ReduceMean", "ReduceMax"} <= {n.split("/")[-1].split("_")[0] for n in pool}
