"""The student's own layer-3 cells as local features ("patch"): the export (ONNX vs torch),
the wrong-file refusals, the keypoint coordinates (cell centres and sub-cell keypoints), and
a map of the tiny town built and verified with them."""
from __future__ import annotations

import argparse

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from distilvpr_core.features import matching, registry  # noqa: E402
from distilvpr_core.features.patch import runtime  # noqa: E402
from distilvpr_core.features.patch.export import PatchNet, SubCellConfig, export_patch_onnx, fit_pca  # noqa: E402
from distilvpr_core.features.patch.coarse_to_fine import FineMap, refine_points  # noqa: E402
from distilvpr_core.features.patch.subcell import SubCell  # noqa: E402
from distilvpr_core.foundation.errors import UserError  # noqa: E402

from onnx_tamper import tamper_first_weight, with_metadata  # noqa: E402
from two_plane_scene import H, W, render  # noqa: E402


@pytest.fixture(scope="module")
def student(tmp_path_factory):
    """A random-init student (real trunk, the training checkpoint format), trained size 128x96."""
    from distilvpr_core.models import StudentConfig, build_student, save_checkpoint
    from distilvpr_core.models.student_io import load_student_checkpoint
    torch.manual_seed(0)
    cfg = StudentConfig(dim=64)
    path = save_checkpoint(tmp_path_factory.mktemp("student") / "student.pt", build_student(cfg), "student",
                           cfg, [128, 96])
    return load_student_checkpoint(path)


CENTRES = SubCellConfig(source="off")
IMAGE = SubCellConfig(source="image", radius=12, beta=100.0)


def _export(student, out, size=(W, H), pool=1, calib=3, subcell=SubCellConfig()):
    return export_patch_onnx(student, out, size, pool, (render(s) for s in range(calib)), subcell)


def _harris_softargmax_reference(x: np.ndarray, radius: int, beta: float) -> np.ndarray:
    """The sub-cell offsets float64 [2, h, w] of a normalised input float32 [3, H, W], the
    slow obvious way: Harris response per pixel, then per cell a loop over its window."""
    g = x.astype(np.float64).mean(0)
    gx, gy = np.zeros_like(g), np.zeros_like(g)
    gx[:, 1:-1] = (g[:, 2:] - g[:, :-2]) / 2
    gy[1:-1] = (g[2:] - g[:-2]) / 2
    hh, ww = g.shape

    def box(a):  # 3x3 mean over the pixels inside the image
        out = np.zeros_like(a)
        for i in range(hh):
            for j in range(ww):
                out[i, j] = a[max(i - 1, 0):i + 2, max(j - 1, 0):j + 2].mean()
        return out
    a, b, c = box(gx * gx), box(gy * gy), box(gx * gy)
    r = np.maximum(a * b - c * c - 0.05 * (a + b) ** 2, 0)
    h, w = -(-hh // 16), -(-ww // 16)
    out = np.zeros((2, h, w))
    for i in range(h):
        for j in range(w):
            ys, xs = np.mgrid[16 * i - radius:16 * i + radius + 1, 16 * j - radius:16 * j + radius + 1]
            ok = (ys >= 0) & (ys < hh) & (xs >= 0) & (xs < ww)
            v = r[ys[ok], xs[ok]]
            z = beta * v / max(v.max(), 1e-12)
            wgt = np.exp(z - z.max())
            wgt /= wgt.sum()
            out[:, i, j] = (wgt * (xs[ok] - 16 * j)).sum(), (wgt * (ys[ok] - 16 * i)).sum()
    return out


@pytest.fixture(scope="module")
def onnx_path(student, tmp_path_factory):
    res = _export(student, tmp_path_factory.mktemp("patch") / "patch.onnx", subcell=IMAGE)
    assert res.pca_vectors == 3 * (W // 16) * (H // 16) and 0 < res.pca_explained <= 1
    return res.path


def test_onnx_runtime_gives_the_torch_maps_and_the_pca_is_a_real_projection(student, onnx_path):
    ex = runtime.load(str(onnx_path))
    assert (ex.input_size, ex.stride, ex.pool, ex.desc_dim) == ((W, H), 16, 1, 128)
    assert ex.subcell == {"source": "image", "stride": "1", "radius": "12", "beta": "100.0"}
    rgb = render(5)
    desc, score, offsets = ex.dense(rgb)
    from distilvpr_core.foundation.preprocess import preprocess
    x = torch.from_numpy(preprocess(rgb, ex.contract))
    assert x.shape == (1, 3, H, W)
    with torch.no_grad():
        cells, ref_score = PatchNet(student.model.input_norm, student.model.backbone, 1).cells(x)
        # The layer-3 map itself: the student's trunk, nothing else.
        trunk = student.model.backbone(student.model.input_norm(x))
    np.testing.assert_allclose(score, ref_score[0, 0].numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(score, torch.linalg.vector_norm(trunk[0], dim=0).numpy(), rtol=1e-4, atol=1e-4)
    assert desc.shape == (128, H // 16, W // 16)
    np.testing.assert_allclose(np.linalg.norm(desc, axis=0), 1.0, atol=1e-4)
    # The descriptors are the cells projected on the PCA of the calibration images' cells.
    net = PatchNet(student.model.input_norm, student.model.backbone, 1)
    with torch.no_grad():
        calib = np.concatenate([net.cells(torch.from_numpy(preprocess(render(s), ex.contract)))[0][0]
                                .flatten(1).T.numpy() for s in range(3)])
    mean, comp, _ = fit_pca(calib, 128)
    ref = (cells[0].flatten(1).T.numpy() - mean) @ comp.T
    ref /= np.linalg.norm(ref, axis=1, keepdims=True)
    np.testing.assert_allclose(desc.reshape(128, -1).T, ref, atol=1e-3)
    # The sub-cell offsets: Harris + windowed soft-argmax of the normalised input, by loops.
    with torch.no_grad():
        xn = student.model.input_norm(x)[0].numpy()
    want = _harris_softargmax_reference(xn, 12, 100.0)
    assert offsets.shape == (2, H // 16, W // 16) and np.abs(offsets).max() <= 12 + 1e-4
    np.testing.assert_allclose(offsets, want, atol=2e-3)
    assert np.abs(offsets).max() > 1.0  # they do move off the centres on this texture


def test_a_larger_input_gives_more_patches_and_the_pool_window_is_centred(student, tmp_path):
    res = _export(student, tmp_path / "big.onnx", (2 * W, 2 * H), pool=3, subcell=IMAGE)
    ex = runtime.load(str(res.path))
    desc, score, offsets = ex.dense(render(0))
    assert desc.shape == (128, 2 * H // 16, 2 * W // 16) and ex.pool == 3
    assert offsets.shape == (2, 2 * H // 16, 2 * W // 16)
    # Any size: ceil(n / 16) cells per side.
    assert runtime.load(str(_export(student, tmp_path / "odd.onnx", (W + 8, 120), subcell=IMAGE).path)).dense(
        render(0))[0].shape == (128, 8, W // 16 + 1)
    with pytest.raises(UserError, match="32..4096 pixels"):
        _export(student, tmp_path / "small.onnx", (W, 16))
    with pytest.raises(UserError, match="pool 2"):
        _export(student, tmp_path / "even.onnx", (W, H), pool=2)


def test_cell_centres_are_the_trunks_receptive_field_centres(student):
    """The gradient of one cell w.r.t. the input is centred on the pixel cell_centres names
    (stride j, stride i), not on the cell's box centre (stride j + 7.5)."""
    x = torch.zeros(1, 3, H, W, requires_grad=True)
    net = student.model.backbone
    net.eval()
    out = net(student.model.input_norm(x + torch.from_numpy(render(0).transpose(2, 0, 1)[None] / 255.0).float()))
    i, j = 7, 10
    out[0, :, i, j].abs().sum().backward()
    g = x.grad[0].abs().sum(0).numpy()
    yy, xx = np.mgrid[:H, :W]
    centroid = np.array([(g * xx).sum(), (g * yy).sum()]) / g.sum()
    cc = runtime.cell_centres(H // 16, W // 16, 16, (W, H), (W, H))[i * (W // 16) + j]
    np.testing.assert_allclose(cc, [16 * j, 16 * i])
    assert np.abs(centroid - cc).max() < 3.0, (centroid, cc)
    # Stretched input: the same cell maps through the scale (edges aligned).
    np.testing.assert_allclose(runtime.cell_centres(1, 2, 16, (32, 16), (64, 32))[1], [32.5, 0.5])


@pytest.mark.parametrize("scale", [1, 2])
def test_a_shifted_image_moves_the_matched_patches_by_the_shift(student, tmp_path, scale):
    """The frame shifted by 32 px (two cells at scale 1; one cell when the input is half the
    frame): the mutual nearest neighbours of the interior patches are the cells the shift
    maps onto, and their keypoints differ by exactly the shift in the frame's pixels."""
    res = _export(student, tmp_path / f"s{scale}.onnx", (W // scale, H // scale), calib=4, subcell=CENTRES)
    ex = registry.bound("patch", res.path)
    base = render(1)
    dx, dy = 32, 16 * scale
    shifted = np.zeros_like(base)
    shifted[dy:, dx:] = base[:-dy, :-dx]
    a, b = ex(base, 1000), ex(shifted, 1000)
    assert len(a) == -(-W // 16 // scale) * -(-H // 16 // scale)
    pairs = matching.match(a, b)
    moved = b.keypoints[pairs[:, 1]] - a.keypoints[pairs[:, 0]]
    # Interior cells (away from the zero padding and the shifted-in black band).
    inside = (a.keypoints[pairs[:, 0], 0] > 64) & (a.keypoints[pairs[:, 0], 0] < W - 96) \
        & (a.keypoints[pairs[:, 0], 1] > 64) & (a.keypoints[pairs[:, 0], 1] < H - 96)
    assert inside.sum() >= 4
    np.testing.assert_allclose(moved[inside], np.tile([dx, dy], (int(inside.sum()), 1)), atol=1e-3)


def _cell_moves(path, base, dx, dy):
    """float32 [n, 2]: how far each interior cell's keypoint (frame pixels, as extract() places
    it) moves when ``base`` is shifted by (dx, dy) pixels, less than a cell."""
    ex = runtime.load(str(path))
    shifted = np.zeros_like(base)
    shifted[dy:, dx:] = base[:H - dy, :W - dx]
    ka, kb = (runtime.cell_keypoints(ex.dense(img)[2], ex.stride, ex.input_size, (W, H)).reshape(H // 16, W // 16, 2)
              for img in (base, shifted))
    return (kb - ka)[3:-3, 3:-3].reshape(-1, 2)      # away from the black band the shift brings in


@pytest.mark.parametrize("dx, dy", [(5, 0), (0, 4)])
def test_sub_cell_keypoints_follow_a_shift_smaller_than_a_cell(student, tmp_path, dx, dy):
    """A frame shifted by less than a cell: cell-centre keypoints do not move at all (so PnP
    returns the keyframe's pose), sub-cell keypoints move with the content, most by exactly
    the shift (a Harris corner is a pixel); some jump to another corner of their window."""
    base = render(1)
    centres = _cell_moves(_export(student, tmp_path / "c.onnx", calib=4, subcell=CENTRES).path, base, dx, dy)
    assert np.all(centres == 0)
    moved = _cell_moves(_export(student, tmp_path / "s.onnx", calib=4, subcell=IMAGE).path, base, dx, dy)
    err = np.linalg.norm(moved - [dx, dy], axis=1)
    assert np.mean(err < 0.5) >= 0.5, (np.median(moved, axis=0), np.mean(err < 0.5))
    np.testing.assert_allclose(np.median(moved, axis=0), [dx, dy], atol=0.25)


MATCH4 = SubCellConfig(source="match4", radius=4, beta=0.0)


def test_coarse_to_fine_fine_map_is_the_cells_a_trous_and_onnx_gives_torch(student, tmp_path):
    """match4: the ONNX file's fine map equals torch's, and every 4th fine sample is a cell's
    descriptor (the trunk run a trous computes the same cells)."""
    ex = runtime.load(str(_export(student, tmp_path / "m4.onnx", calib=4, subcell=MATCH4).path))
    assert ex.coarse_to_fine and ex.subcell == {"source": "match4", "stride": "4", "radius": "4", "beta": "0.0"}
    desc, score, fine = ex.dense(render(3))
    assert fine.shape == (128, H // 4, W // 4)
    np.testing.assert_allclose(fine[:, ::4, ::4], desc, atol=1e-4)
    np.testing.assert_allclose(np.linalg.norm(fine, axis=0), 1.0, atol=1e-4)
    from distilvpr_core.foundation.preprocess import preprocess
    net = PatchNet(student.model.input_norm, student.model.backbone, 1, subcell=MATCH4)
    with torch.no_grad():
        trunk, fine_trunk = net.trunk(torch.from_numpy(preprocess(render(3), ex.contract)))
        # The stride-16 map of the unmodified trunk is the fine map's every 4th sample.
        plain = student.model.backbone(student.model.input_norm(torch.from_numpy(preprocess(render(3), ex.contract))))
    np.testing.assert_allclose(trunk.numpy(), plain.numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(score, torch.linalg.vector_norm(plain[0], dim=0).numpy(), rtol=1e-4, atol=1e-4)
    assert fine_trunk.shape[2:] == (H // 4, W // 4)
    # The features are the cells at their centres and carry the fine map for refinement.
    f = ex.extract(render(3), 1000)
    assert isinstance(f.dense, FineMap) and f.dense.desc.shape == fine.shape
    np.testing.assert_allclose(np.sort(f.keypoints[:, 0]), np.sort(runtime.cell_centres(H // 16, W // 16, 16, (W, H),
                                                                                       (W, H))[:, 0]))
    with pytest.raises(UserError, match="needs --pool 1"):
        _export(student, tmp_path / "p3.onnx", calib=4, pool=3, subcell=MATCH4)


@pytest.mark.parametrize("dx, dy", [(5, 0), (2, 3)])
def test_coarse_to_fine_finds_a_shift_smaller_than_a_cell(student, tmp_path, dx, dy):
    """The keyframe's cell descriptors looked for in the fine map of the frame shifted by
    less than a cell: the refined query points move by the shift (within a pixel), where
    the cell centres (the unrefined keypoints) do not move at all."""
    ex = runtime.load(str(_export(student, tmp_path / "m4.onnx", calib=4, subcell=MATCH4).path))
    base = render(1)
    shifted = np.zeros_like(base)
    shifted[dy:, dx:] = base[:H - dy, :W - dx]
    key_desc = ex.dense(base)[0].reshape(128, -1).T
    q = ex.extract(shifted, 1000)
    centres = runtime.cell_centres(H // 16, W // 16, 16, (W, H), (W, H))
    moved = (refine_points(q.dense, centres, key_desc) - centres).reshape(H // 16, W // 16, 2)[3:-3, 3:-3]
    err = np.linalg.norm(moved.reshape(-1, 2) - [dx, dy], axis=1)
    assert np.mean(err < 1.0) >= 0.8, (np.median(moved.reshape(-1, 2), axis=0), np.mean(err < 1.0))
    # The engine's entry (matching.query_points) gives the same for matched pairs.
    key = matching.Features(centres, runtime.quantise(key_desc), "patch")
    pairs = matching.match(q, key)
    pts = matching.query_points(q, key, pairs)
    same = refine_points(q.dense, q.keypoints[pairs[:, 0]], runtime.as_float(key.descriptors[pairs[:, 1]]))
    np.testing.assert_allclose(pts, same)
    assert not np.allclose(pts, q.keypoints[pairs[:, 0]])


def test_refine_points_soft_argmax_and_parabola_on_a_known_map():
    """A fine map of random unit vectors: the keyframe descriptor equal to the vector at a
    known fine pixel is found there (soft-argmax, large beta: exactly; parabola: the best
    pixel plus less than half a sample), and pixels beyond the map never win."""
    rng = np.random.default_rng(0)
    d = rng.normal(size=(16, 12, 20)).astype(np.float32)
    d /= np.linalg.norm(d, axis=0)
    kp = np.array([[16.0, 16.0], [0.0, 0.0]])        # frame = input (stretch 1), cells (1, 1) and (0, 0)
    key = np.stack([d[:, 5, 3], d[:, 1, 2]])        # fine pixels (u, v) = (3, 5) and (2, 1), stride 4
    soft = refine_points(FineMap(d, 4, (80, 48), (80, 48), 4, 1000.0), kp, key)
    np.testing.assert_allclose(soft, [[12, 20], [8, 4]], atol=1e-3)
    para = refine_points(FineMap(d, 4, (80, 48), (80, 48), 4, 0.0), kp, key)
    assert np.abs(para - [[12, 20], [8, 4]]).max() <= 2.0
    # Stretched input (frame twice the input): the same points in frame pixels.
    np.testing.assert_allclose(refine_points(FineMap(d, 4, (80, 48), (160, 96), 4, 1000.0),
                                             (kp + 0.5) * 2 - 0.5, key), (soft + 0.5) * 2 - 0.5, atol=1e-3)
    assert refine_points(FineMap(d, 4, (80, 48), (80, 48), 4, 0.0), np.zeros((0, 2)), key[:0]).shape == (0, 2)


def test_subcell_softargmax_finds_a_peak_and_ignores_the_padding():
    """One response peak per cell window: the offset is the peak's position (large beta),
    the window centre for beta 0, and fine pixels beyond the map never pull a border cell."""
    r = torch.zeros(1, 1, 32, 48)
    r[0, 0, 3, 5] = 1.0          # cell (0, 0): centre (0, 0) -> offset (5, 3)
    r[0, 0, 14, 30] = 2.0        # cell (1, 2): centre (32, 16) -> offset (-2, -2)
    off = SubCell(1, 8, 100.0)(r)[0].numpy()
    assert off.shape == (2, 2, 3)
    np.testing.assert_allclose(off[:, 0, 0], [5, 3], atol=1e-3)
    np.testing.assert_allclose(off[:, 1, 2], [-2, -2], atol=1e-3)
    # A flat window: the centroid of the pixels inside the image (padding has no weight).
    flat = SubCell(1, 8, 100.0)(torch.ones(1, 1, 32, 48))[0].numpy()
    np.testing.assert_allclose(flat[:, 1, 1], [0, 0], atol=1e-4)
    np.testing.assert_allclose(flat[:, 0, 0], [4, 4], atol=1e-4)    # pixels 0..8 of -8..8
    np.testing.assert_allclose(SubCell(1, 8, 0.0)(r)[0].numpy()[:, 1, 1], [0, 0], atol=1e-4)
    # Stride 4 (layer 1): fine pixel u sits on input pixel 4 u.
    r4 = torch.zeros(1, 1, 8, 8)
    r4[0, 0, 5, 3] = 1.0         # input (12, 20) -> cell (1, 1) centred (16, 16): (-4, 4)
    np.testing.assert_allclose(SubCell(4, 2, 100.0)(r4)[0].numpy()[:, 1, 1], [-4, 4], atol=1e-3)


def test_bad_subcell_settings_are_refused(student, tmp_path):
    for cfg, msg in ((SubCellConfig(source="layer9"), "source 'layer9'"),
                     (SubCellConfig(radius=0), "radius 0 must be 1..8"),
                     (SubCellConfig(source="image", radius=33), "radius 33 must be 1..32"),
                     (SubCellConfig(source="layer1", radius=9), "radius 9 must be 1..8"),
                     (SubCellConfig(beta=-1.0), "beta -1.0")):
        with pytest.raises(UserError, match=msg):
            _export(student, tmp_path / "bad.onnx", calib=4, subcell=cfg)
    assert not (tmp_path / "bad.onnx").exists()


def test_extract_returns_features_of_the_registry_shape(onnx_path):
    ex = registry.bound("patch", onnx_path)
    f = ex(render(0), 40)
    assert f.kind == "patch" and len(f) == 40
    assert f.keypoints.dtype == np.float32 and f.descriptors.dtype == np.uint8
    assert f.descriptors.shape == (40, registry.get("patch").desc_dim)
    assert (f.keypoints >= 0).all() and (f.keypoints[:, 0] <= W - 1).all() and (f.keypoints[:, 1] <= H - 1).all()
    np.testing.assert_allclose(np.linalg.norm(runtime.as_float(f.descriptors), axis=1), 1.0, atol=0.03)
    # Highest score first: the 40 kept are the 40 strongest cells.
    _, score, _ = runtime.load(str(onnx_path)).dense(render(0))
    assert np.isclose(np.sort(score.ravel())[-40], score.ravel()[np.argsort(-score.ravel())[39]])
    pairs = matching.match(f, f)
    assert len(pairs) == len(f) and (pairs[:, 0] == pairs[:, 1]).all()


def test_wrong_files_are_refused_saying_what_to_pass(onnx_path, student, tmp_path):
    with pytest.raises(UserError, match="does not exist.*export-patch"):
        runtime.PatchExtractor(tmp_path / "nope.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    with pytest.raises(UserError, match="not an ONNX model.*export-patch"):
        runtime.PatchExtractor(tmp_path / "junk.onnx")
    # The place-recognition student itself (distilvpr export).
    from distilvpr_core.export.onnx_export import export_student_onnx
    export_student_onnx(student.model, student.contract, student.fingerprint, tmp_path / "student.onnx")
    with pytest.raises(UserError, match="place-recognition student.*export-patch"):
        runtime.PatchExtractor(tmp_path / "student.onnx")
    # The learned local descriptor (distilvpr train-local) -- and the other way round.
    from distilvpr_core.features.learned.model import LocalFeatureNet
    from distilvpr_core.features.learned.runtime import LearnedExtractor
    from distilvpr_core.localtrain.export import export_local_onnx
    export_local_onnx(LocalFeatureNet(width=8), tmp_path / "local.onnx")
    with pytest.raises(UserError, match="learned local descriptor.*--features learned"):
        runtime.PatchExtractor(tmp_path / "local.onnx")
    with pytest.raises(UserError, match="not a local-feature model"):
        LearnedExtractor(onnx_path)
    # A file of the previous format (cell-centre keypoints): re-export, and rebuild the map.
    with_metadata(onnx_path, tmp_path / "v1.onnx", "format_version", "1")
    with pytest.raises(UserError, match="version '1' .*cell centres.*reads '2'.*export-patch.*rebuild any map"):
        runtime.PatchExtractor(tmp_path / "v1.onnx")
    # Metadata that names an output the graph lacks (edited after export: the digest covers the graph only).
    with_metadata(onnx_path, tmp_path / "edited.onnx", "subcell_source", "match4")
    with pytest.raises(UserError, match="no 'fine' output.*export-patch"):
        runtime.PatchExtractor(tmp_path / "edited.onnx")
    tamper_first_weight(onnx_path, tmp_path / "tampered.onnx")
    with pytest.raises(UserError, match="do not match the digest"):
        runtime.PatchExtractor(tmp_path / "tampered.onnx")
    with pytest.raises(UserError, match="--local-model"):
        registry.bound("patch", None)
    with pytest.raises(UserError, match="export-patch"):
        registry.extract("patch", render(0), 10)


def test_export_cli_writes_the_model_and_refuses_an_existing_file(student, tmp_path):
    from PIL import Image
    from distilvpr_core.export import patch_cli
    calib = tmp_path / "calib"
    calib.mkdir()
    for s in range(4):
        Image.fromarray(render(s)).save(calib / f"{s}.png")
    parser = argparse.ArgumentParser()
    patch_cli.add_arguments(parser)
    argv = ["--checkpoint", str(student.path), "--out", str(tmp_path / "p.onnx"), "--calib", str(calib),
            "--input-size", "160x128"]
    assert patch_cli.run(parser.parse_args(argv)) == 0
    assert runtime.load(str(tmp_path / "p.onnx")).input_size == (160, 128)
    assert runtime.load(str(tmp_path / "p.onnx")).subcell == {"source": "match4", "stride": "4", "radius": "4",
                                                              "beta": "30.0"}
    assert patch_cli.run(parser.parse_args(argv[:3] + [str(tmp_path / "q.onnx")] + argv[4:] + [
        "--subcell-source", "layer2", "--subcell-radius", "2", "--subcell-beta", "20"])) == 0
    assert runtime.load(str(tmp_path / "q.onnx")).subcell == {"source": "layer2", "stride": "8", "radius": "2",
                                                              "beta": "20.0"}
    with pytest.raises(UserError, match="radius 5 must be 1..4"):
        patch_cli.run(parser.parse_args(argv[:3] + [str(tmp_path / "r.onnx")] + argv[4:] + [
            "--subcell-source", "layer2", "--subcell-radius", "5"]))
    with pytest.raises(UserError, match="--overwrite"):
        patch_cli.run(parser.parse_args(argv))
    with pytest.raises(SystemExit):
        parser.parse_args(argv[:-1] + ["160by128"])


@pytest.mark.parametrize("subcell", [IMAGE, SubCellConfig()], ids=["image", "match4_default"])
def test_tiny_town_map_with_patch_features_verifies_a_revisit(synth_tiny, student, tmp_path, subcell):
    """map build --features patch on the tiny town: the map carries the model and verify
    passes; the engine's verifier extracts the map's kind with it and gives a metric
    pose for a keyframe's own frame (coarse-to-fine: refined on the query's fine map)."""
    from distilvpr_core.export.onnx_export import export_student_onnx
    from distilvpr_core.data import native
    from distilvpr_core.localize.geometry import GeometricVerifier
    from distilvpr_core.localize.settings import settings_from_file
    from distilvpr_core.mapdb import PriorMap
    from distilvpr_core.mapdb import cli as map_cli
    from distilvpr_core.mapdb.features import MODEL_FILE
    from distilvpr_core.infer.tensorrt.calibration import CalibrationSource, iter_images
    ds = native.open_dataset(synth_tiny)
    trav = ds.traversals[0]
    img = ds.traversal(trav).load_image(0)
    size = (img.shape[1] // 16 * 16, img.shape[0] // 16 * 16)
    model = export_patch_onnx(student, tmp_path / "patch.onnx", size, 1,
                              iter_images(CalibrationSource(synth_tiny, trav, 8)), subcell).path
    student_onnx = tmp_path / "student.onnx"
    export_student_onnx(student.model, student.contract, student.fingerprint, student_onnx)
    parser = argparse.ArgumentParser()
    map_cli.add_arguments(parser)
    base = ["build", "--model", str(student_onnx), "--dataset", str(synth_tiny), "--traversal", "train_noon",
            "--quiet", "--features", "patch"]
    with pytest.raises(UserError, match="--features patch needs --local-model.*export-patch"):
        map_cli.run(parser.parse_args(base + ["--out", str(tmp_path / "m0")]))
    assert map_cli.run(parser.parse_args(base + ["--local-model", str(model), "--out",
                                                 str(tmp_path / "map")])) == 0
    assert map_cli.run(parser.parse_args(["verify", str(tmp_path / "map")])) == 0
    m = PriorMap.load(tmp_path / "map")
    assert m.features.kind == "patch" and m.features.has_points
    assert (tmp_path / "map" / MODEL_FILE).read_bytes() == model.read_bytes()
    assert m.features.counts.min() > 0
    # A keyframe's own image gives the stored patches through the map's model (the build
    # stores those with a 3D point first, so compare by keypoint).
    v = GeometricVerifier(m)
    t = ds.traversal("train_noon")
    kid = len(m) // 2
    q = v.extract(t.load_image(int(m.frame_index[kid])), 300)
    kf = m.features.get(kid)
    # (Two cells may place their keypoints on the same corner: compare keypoint + descriptor rows.)
    rows = {tuple(k) + tuple(d) for k, d in zip(q.keypoints.tolist(), q.descriptors.tolist())}
    assert all(tuple(k) + tuple(d) in rows for k, d in zip(kf.keypoints.tolist(), kf.descriptors.tolist()))
    settings = settings_from_file("config/localize.yaml", {})
    checks, qf = v.check(t.load_image(int(m.frame_index[kid])), np.array([kid, (kid + 3) % len(m)]), settings)
    assert checks.pose is not None and (qf.dense is not None) == subcell.coarse_to_fine
    np.testing.assert_allclose(checks.pose[:3], m.poses[kid][:3], atol=0.5)
