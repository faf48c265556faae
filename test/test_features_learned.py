"""The learned local descriptor: ONNX export vs torch, the extractor's contract, its errors,
the map carrying the model, a tiny training run, and the correspondences it trains on."""
from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from distilvpr_core.features import matching, registry  # noqa: E402
from distilvpr_core.features.learned import preprocess, runtime  # noqa: E402
from distilvpr_core.features.learned.model import LocalFeatureNet, sample  # noqa: E402
from distilvpr_core.foundation.errors import UserError  # noqa: E402
from distilvpr_core.localtrain.export import export_local_onnx  # noqa: E402

from onnx_tamper import tamper_first_weight  # noqa: E402
from two_plane_scene import H, K, W, render  # noqa: E402


@pytest.fixture(scope="module")
def onnx_path(tmp_path_factory):
    torch.manual_seed(0)
    net = LocalFeatureNet(runtime.DESC_DIM, width=8).eval()
    path = tmp_path_factory.mktemp("learned") / "local.onnx"
    res = export_local_onnx(net, path)
    assert res.max_abs_diff < 1e-4
    return path, net


def test_onnx_runtime_gives_the_torch_maps_on_a_real_image(onnx_path):
    path, net = onnx_path
    rgb = render(0)
    grey, desc, score = runtime.load(str(path)).dense(rgb)
    h, w = (rgb.shape[0] // 4) * 4, (rgb.shape[1] // 4) * 4
    with torch.no_grad():
        ref_d, ref_s = net(torch.from_numpy(preprocess.network_input(grey[:h, :w])))
    assert desc.shape == (runtime.DESC_DIM, h // 4, w // 4) and score.shape == (h // 4, w // 4)
    np.testing.assert_allclose(desc, ref_d[0].numpy(), atol=1e-4)
    np.testing.assert_allclose(score, ref_s[0, 0].numpy(), atol=1e-4)


def test_numpy_and_torch_bilinear_sampling_agree():
    rng = np.random.default_rng(0)
    dense = rng.normal(size=(5, 7, 9)).astype(np.float32)
    pts = np.c_[rng.uniform(-3, 40, 50), rng.uniform(-3, 30, 50)].astype(np.float32)
    got = preprocess.sample_map(dense, pts, 4)
    ref = sample(torch.from_numpy(dense), torch.from_numpy(pts), 4).numpy()
    np.testing.assert_allclose(got, ref, atol=1e-5)
    # A cell centre gives that cell's value exactly: cell (i=2, j=3) is pixel (13.5, 9.5).
    np.testing.assert_allclose(preprocess.sample_map(dense, np.array([[13.5, 9.5]]), 4)[0], dense[:, 2, 3],
                               atol=1e-6)


def test_extract_returns_features_of_the_registry_shape(onnx_path):
    ex = registry.bound("learned", onnx_path[0])
    f = ex(render(0), 40)
    assert f.kind == "learned" and 10 <= len(f) <= 40
    assert f.keypoints.dtype == np.float32 and f.keypoints.shape == (len(f), 2)
    assert f.descriptors.dtype == np.uint8 and f.descriptors.shape == (len(f), registry.get("learned").desc_dim)
    assert (f.keypoints[:, 0] >= 0).all() and (f.keypoints[:, 0] <= W - 1).all()
    assert (f.keypoints[:, 1] >= 0).all() and (f.keypoints[:, 1] <= H - 1).all()
    norms = np.linalg.norm(runtime.as_float(f.descriptors), axis=1)
    np.testing.assert_allclose(norms, 1.0, atol=0.03)
    # Same image: every feature matches itself.
    pairs = matching.match(f, f)
    assert len(pairs) >= 0.9 * len(f) and (pairs[:, 0] == pairs[:, 1]).all()
    blank = ex(np.zeros((H, W, 3), np.uint8), 40)
    assert len(blank) == 0 and blank.descriptors.shape == (0, runtime.DESC_DIM)


def test_quantisation_round_trip_is_within_one_step():
    d = np.random.default_rng(1).normal(size=(20, 128)).astype(np.float32)
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    assert np.abs(runtime.as_float(runtime.quantise(d)) - d).max() <= 0.5 / runtime.QUANT + 1e-6


def test_missing_foreign_and_tampered_models_are_clear_errors(onnx_path, tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        runtime.LearnedExtractor(tmp_path / "nope.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    with pytest.raises(UserError, match="not an ONNX model"):
        runtime.LearnedExtractor(tmp_path / "junk.onnx")
    import onnx
    proto = onnx.load(str(onnx_path[0]))
    del proto.metadata_props[:]
    onnx.save(proto, str(tmp_path / "plain.onnx"))
    with pytest.raises(UserError, match="not a local-feature model"):
        runtime.LearnedExtractor(tmp_path / "plain.onnx")
    tamper_first_weight(onnx_path[0], tmp_path / "tampered.onnx")
    with pytest.raises(UserError, match="do not match the digest"):
        runtime.LearnedExtractor(tmp_path / "tampered.onnx")
    with pytest.raises(UserError, match="--local-model"):
        registry.bound("learned", None)
    with pytest.raises(UserError, match="ONNX model"):
        registry.extract("learned", render(0), 10)


def test_the_map_carries_the_model_and_refuses_a_learned_map_without_it(onnx_path, tmp_path):
    from distilvpr_core.features.types import Intrinsics
    from distilvpr_core.mapdb import PriorMap
    from distilvpr_core.mapdb.features import MODEL_FILE, FeatureStore
    from distilvpr_core.localize.geometry import GeometricVerifier
    cam = Intrinsics(K[0, 0], K[1, 1], K[0, 2], K[1, 2], W, H)
    ex = registry.bound("learned", onnx_path[0])
    m = PriorMap.create(4, "f" * 64, {"input_size": [W, H]})
    poses = np.zeros((2, 7))
    poses[:, 6] = 1.0
    m.add(np.eye(4, dtype=np.float32)[:2], np.arange(2) * 10**9, poses, "t", np.arange(2))
    with pytest.raises(UserError, match="needs its model"):
        FeatureStore(cam, 50, "learned")
    store = FeatureStore(cam, 50, "learned", model_path=onnx_path[0])
    for i in range(2):
        store.append(ex(render(i), 50))
    m.attach_features(store)
    m.save(tmp_path / "map")
    assert (tmp_path / "map" / MODEL_FILE).read_bytes() == onnx_path[0].read_bytes()
    back = PriorMap.load(tmp_path / "map")
    assert back.features.kind == "learned" and back.features.model_path == tmp_path / "map" / MODEL_FILE
    q = GeometricVerifier(back).extract(render(0), 50)
    np.testing.assert_array_equal(q.descriptors, back.features.get(0).descriptors)
    schema = json.loads((tmp_path / "map" / "schema.json").read_text())
    del schema["features"]["files"]["model"]
    with pytest.raises(UserError, match="no \"model\" file"):
        FeatureStore.load(tmp_path / "map", schema["features"], 2, schema["files"])


@pytest.fixture(scope="module")
def tiny_town():
    from distilvpr_core.foundation.config import load_config
    from distilvpr_core.localtrain.pairs import TownRenderer
    from distilvpr_core.sim.config import SynthConfig
    return TownRenderer(load_config(SynthConfig, "config/synth_tiny.yaml"))


def test_two_looks_of_one_pose_are_pixel_aligned(tiny_town):
    from distilvpr_core.localtrain.pairs import correspond
    T = tiny_town.base_poses()[5]
    a = tiny_town.render(0, T, np.random.default_rng(0))   # noon
    b = tiny_town.render(4, T, np.random.default_rng(1))   # night, rain: other geometry and look
    assert not np.array_equal(a.rgb, b.rgb)
    v, u = np.mgrid[0:a.depth.shape[0]:3, 0:a.depth.shape[1]:3]
    pts = np.c_[u.ravel(), v.ravel()]
    uv, ok = correspond(a, b, tiny_town.K, pts)
    assert ok.mean() > 0.3
    np.testing.assert_allclose(uv[ok], pts[ok], atol=1e-3)


def test_a_moved_camera_sees_the_same_3d_point_at_the_corresponding_pixel(tiny_town):
    from distilvpr_core.localtrain.pairs import correspond, perturb
    from distilvpr_core.sim.camera import rotate
    rng = np.random.default_rng(3)
    T = tiny_town.base_poses()[8]
    a = tiny_town.render(0, T, rng)
    b = tiny_town.render(1, perturb(T, rng, 3.0, 1.0, 8.0), rng)
    assert not np.allclose(a.T_map_cam, b.T_map_cam)
    v, u = np.mgrid[0:a.depth.shape[0]:4, 0:a.depth.shape[1]:4]
    pts = np.c_[u.ravel(), v.ravel()]
    uv, ok = correspond(a, b, tiny_town.K, pts)
    assert ok.sum() > 100 and (np.abs(uv[ok] - pts[ok]) > 1).any()   # real parallax
    Kinv = np.linalg.inv(tiny_town.K)

    def hit(view, px):
        ray = np.c_[px, np.ones(len(px))] @ Kinv.T
        ray /= np.linalg.norm(ray, axis=1, keepdims=True)
        d = rotate(ray.astype(np.float32), view.T_map_cam[:3, :3])
        scene = tiny_town._scene(0 if view is a else 1)[0]
        _, dist = scene.cast(view.T_map_cam[:3, 3], d)
        return view.T_map_cam[:3, 3] + d * dist[:, None]
    # Independent of correspond's math: cast B's own ray through the pixel it found.
    xa, xb = hit(a, pts[ok].astype(np.float64)), hit(b, uv[ok].astype(np.float64))
    err = np.linalg.norm(xa - xb, axis=1)
    assert np.median(err) < 0.05 and np.mean(err < 0.1 * np.linalg.norm(xa - b.T_map_cam[:3, 3], axis=1)) > 0.95


def test_a_tiny_training_run_writes_checkpoints_and_a_loadable_onnx(tmp_path):
    from distilvpr_core.foundation.config import load_config
    from distilvpr_core.localtrain.config import LocalTrainConfig
    from distilvpr_core.localtrain.trainer import train_local
    cfg = load_config(LocalTrainConfig, data={
        "synth_config": "config/synth_tiny.yaml", "seeds": [7], "places": 2, "val_places": 1, "steps": 3,
        "batch_pairs": 2, "crop": [48, 64], "points": 16, "width": 8, "val_every": 2})
    rec = train_local(cfg, tmp_path / "run", progress=False)
    for name in ("checkpoint_best.pt", "checkpoint_last.pt", "local_features.onnx", "train_log.json"):
        assert (tmp_path / "run" / name).is_file(), name
    assert [h["step"] for h in rec["history"]] == [2, 3] and rec["val_pairs"] > 0
    f = runtime.LearnedExtractor(tmp_path / "run" / "local_features.onnx").extract(render(1), 20)
    assert len(f) > 0 and f.descriptors.shape[1] == runtime.DESC_DIM


def test_train_config_refuses_a_crop_off_the_stride():
    from distilvpr_core.foundation.config import load_config
    from distilvpr_core.localtrain.config import LocalTrainConfig
    with pytest.raises(UserError, match="multiple of 4"):
        load_config(LocalTrainConfig, data={"crop": [50, 64]})
