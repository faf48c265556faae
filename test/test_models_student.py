"""Student, teacher, GeM, BEV grid and checkpoints: shapes, maths, round trips, errors."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from distilvpr_core.foundation.config import ConfigError, load_config
from distilvpr_core.foundation.errors import UserError
from distilvpr_core.models import (BevConfig, GeM, StudentConfig, TeacherConfig, build_student,
                                   build_teacher, load_student, load_teacher, save_checkpoint)
from distilvpr_core.models.bev import points_to_bev

torch.set_num_threads(1)


def test_gem_matches_formula_and_max_limit():
    x = torch.rand(2, 5, 3, 4) + 0.1
    gem = GeM(p=3.0)
    expected = (x ** 3).mean(dim=(2, 3)) ** (1 / 3)
    torch.testing.assert_close(gem(x), expected)
    assert gem.p.requires_grad
    with torch.no_grad():
        gem.p.fill_(60.0)  # large p tends to max pooling
    torch.testing.assert_close(gem(x), x.amax(dim=(2, 3)), rtol=0.05, atol=0)


@pytest.mark.parametrize("backbone", ["resnet18", "resnet34", "mobilenet_v3_large"])
def test_student_shape_and_dim(backbone):
    torch.manual_seed(0)
    model = build_student(StudentConfig(backbone=backbone, dim=64)).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 48, 64))
    assert out.shape == (2, 64) and out.dtype == torch.float32
    assert torch.isfinite(out).all()


def test_teacher_concatenates_branches():
    cfg = TeacherConfig(image_dim=32, lidar_dim=16, bev=BevConfig(cells=16))
    model = build_teacher(cfg).eval()
    img, bev = torch.randn(2, 3, 48, 64), torch.rand(2, cfg.bev.channels, 16, 16)
    with torch.no_grad():
        out = model(img, bev)
        assert out.shape == (2, 48) and cfg.dim == 48
        torch.testing.assert_close(out[:, :32], model.image(img))
        torch.testing.assert_close(out[:, 32:], model.lidar(bev))


def test_unknown_lidar_encoder_lists_valid_names():
    with pytest.raises(ConfigError, match="valid: \\['bev'\\]"):
        load_config(TeacherConfig, data={"lidar_encoder": "minkloc3d"})


def test_bev_grid_puts_points_in_the_right_cells():
    cfg = BevConfig(range_m=4.0, cells=8, z_min=0.0, z_max=4.0, height_bins=2)
    pts = np.array([[3.5, 0.5, 0.5, 1.0],    # forward, just left: row 7, col 4, low slice
                    [-3.5, -3.5, 3.0, 0.2],  # back right: row 0, col 0, high slice
                    [50.0, 0.0, 1.0, 1.0],   # outside the grid: dropped
                    [0.0, 0.0, 9.0, 1.0]],   # above z_max: dropped
                   dtype=np.float32)
    bev = points_to_bev(pts, cfg)
    assert bev.shape == (4, 8, 8) and bev.dtype == np.float32
    occupied = np.argwhere(bev[:2] > 0)
    assert sorted(map(tuple, occupied)) == [(0, 7, 4), (1, 0, 0)]
    assert bev[2, 7, 4] == pytest.approx(0.5 / 4.0) and bev[2, 0, 0] == pytest.approx(3.0 / 4.0)
    assert bev[3, 0, 0] == pytest.approx(0.2)
    assert points_to_bev(np.zeros((0, 4), np.float32), cfg).sum() == 0


def _bev_per_point(points, cfg):
    """The grid by its definition, one point at a time with ufunc.at (slow, obviously right)."""
    g, hb = cfg.cells, cfg.height_bins
    cell = 2.0 * cfg.range_m / g
    ix = np.floor((points[:, 0] + cfg.range_m) / cell).astype(int)
    iy = np.floor((points[:, 1] + cfg.range_m) / cell).astype(int)
    z = points[:, 2]
    keep = (ix >= 0) & (ix < g) & (iy >= 0) & (iy < g) & (z >= cfg.z_min) & (z < cfg.z_max)
    ix, iy, z, inten = ix[keep], iy[keep], z[keep], points[keep, 3]
    zn = (z - cfg.z_min) / (cfg.z_max - cfg.z_min)
    iz = np.minimum((zn * hb).astype(int), hb - 1)
    counts, zmax = np.zeros((hb, g, g)), np.zeros((g, g))
    isum, n = np.zeros((g, g)), np.zeros((g, g))
    np.add.at(counts, (iz, ix, iy), 1)
    np.maximum.at(zmax, (ix, iy), zn)
    np.add.at(isum, (ix, iy), np.clip(inten, 0, 1))
    np.add.at(n, (ix, iy), 1)
    occ = (np.log1p(counts) / np.log1p(64.0)).clip(0, 1)
    return np.concatenate([occ, zmax[None], (isum / np.maximum(n, 1))[None]])


def test_bev_grid_matches_its_per_point_definition_on_a_full_scan():
    rng = np.random.default_rng(3)
    cfg = BevConfig(range_m=40.0, cells=64, z_min=-2.5, z_max=6.0, height_bins=4)
    # 30k points like one 32-beam scan, some beyond the grid, intensities partly outside [0, 1].
    pts = np.column_stack([rng.normal(0, 25, (30000, 2)), rng.uniform(-4, 8, 30000),
                           rng.uniform(-0.2, 1.2, 30000)]).astype(np.float32)
    pts[:500, :2] = 1.0  # many points in one cell (the log scale's clip)
    got = points_to_bev(pts, cfg)
    assert got.dtype == np.float32 and got.shape == (6, 64, 64)
    np.testing.assert_allclose(got, _bev_per_point(pts, cfg), rtol=0, atol=2e-6)


def test_student_checkpoint_round_trip(tmp_path):
    torch.manual_seed(1)
    cfg = StudentConfig(dim=32)
    model = build_student(cfg).eval()
    path = save_checkpoint(tmp_path / "s.pt", model, "student", cfg, input_size=(64, 48),
                           epoch=3, metrics={"val_r1": 0.5})
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == "distilvpr-checkpoint" and raw["version"] == 2
    assert raw["preprocess"]["input_size"] == [64, 48] and "input_size" not in raw  # stored once
    assert raw["epoch"] == 3 and raw["kind"] == "student" and raw["preprocess"]["descriptor_dim"] == 32
    loaded, model_cfg = load_student(path)
    assert not loaded.training and model_cfg["dim"] == 32
    x = torch.randn(1, 3, 48, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x))


def test_checkpoint_errors_name_the_problem(tmp_path):
    with pytest.raises(UserError, match="not found"):
        load_student(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="junk.pt"):
        load_student(tmp_path / "junk.pt")
    cfg = TeacherConfig(image_dim=16, lidar_dim=16, bev=BevConfig(cells=16))
    save_checkpoint(tmp_path / "t.pt", build_teacher(cfg), "teacher", cfg, (64, 48))
    with pytest.raises(UserError, match="'teacher' checkpoint, expected a 'student'"):
        load_student(tmp_path / "t.pt")
    teacher, tcfg = load_teacher(tmp_path / "t.pt")
    assert tcfg["lidar_dim"] == 16


def test_pretrained_path_loads_and_bad_file_is_rejected(tmp_path):
    from torchvision.models import resnet18
    torch.manual_seed(2)
    ref = resnet18(weights=None)
    torch.save(ref.state_dict(), tmp_path / "r18.pth")
    model = build_student(StudentConfig(pretrained=str(tmp_path / "r18.pth")))
    torch.testing.assert_close(model.backbone[0].weight, ref.conv1.weight)
    torch.save({"foo": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(UserError, match="not a torchvision resnet18"):
        build_student(StudentConfig(pretrained=str(tmp_path / "other.pth")))
    with pytest.raises(UserError, match="file not found"):
        build_student(StudentConfig(pretrained=str(tmp_path / "nope.pth")))


def test_student_exports_to_onnx_and_matches_onnxruntime(tmp_path):
    """The project's exporter (not torch.onnx directly): contract in the metadata, ORT == torch."""
    ort = pytest.importorskip("onnxruntime")
    from distilvpr_core.export.onnx_export import export_student_onnx
    from distilvpr_core.foundation.contract import PreprocessContract
    torch.manual_seed(3)
    model = build_student(StudentConfig(dim=32)).eval()
    contract = PreprocessContract(input_size=(64, 48))
    path = tmp_path / "s.onnx"
    export_student_onnx(model, contract, "f" * 64, path)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    meta = sess.get_modelmeta().custom_metadata_map
    assert any("64" in v and "48" in v for v in meta.values()), meta   # the preprocessing contract
    x = torch.randn(3, 3, 48, 64)                                        # a batch the export never saw
    got = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
    with torch.no_grad():
        np.testing.assert_allclose(got, model(x).numpy(), rtol=1e-4, atol=1e-5)


def test_checkpoint_carries_the_training_preprocessing(tmp_path):
    """Export must deploy the resize policy the student was trained with."""
    from distilvpr_core.models.student_io import load_student_checkpoint
    from distilvpr_core.foundation.contract import PreprocessContract
    from distilvpr_core.models import build_student, save_checkpoint
    from distilvpr_core.models.config import StudentConfig

    cfg = StudentConfig(dim=16)
    trained = PreprocessContract(input_size=(64, 48), resize="stretch")
    path = save_checkpoint(tmp_path / "s.pt", build_student(cfg), "student", cfg, (64, 48),
                           preprocess=trained.to_dict())
    loaded = load_student_checkpoint(path)
    assert loaded.contract.resize == "stretch" and loaded.contract.input_size == (64, 48)
    assert loaded.contract.descriptor_dim == 16
