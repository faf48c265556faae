"""Datasets, augmentations, the P-pairs batch sampler and the Boreas reader
(the public layouts in depth: test_data_benchmarks.py)."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from distilvpr_core.foundation.config import ConfigError, load_config
from distilvpr_core.data.datasets import (AugmentConfig, DataConfig, FrameIndex, PairBatchSampler, PlaceDataset,
                                          neighbours_within, select)
from distilvpr_core.data.traversals import open_traversals
from distilvpr_core.foundation.errors import UserError
from distilvpr_core.foundation.preprocess import preprocess

torch.set_num_threads(1)


class Run:
    """A minimal in-memory traversal (positions only) for sampler tests."""
    has_lidar = True

    def __init__(self, name, positions):
        self.name, self.role, self.positions = name, "train", np.asarray(positions, float)

    def __len__(self):
        return len(self.positions)


def _line(n, step, offset=0.0):
    return np.c_[np.arange(n) * step + offset, np.zeros(n)]


def test_neighbours_within_matches_brute_force():
    pos = np.random.default_rng(0).uniform(0, 100, (300, 2))
    got = neighbours_within(pos, 12.0)
    d = np.linalg.norm(pos[:, None] - pos[None], axis=-1)
    for i in range(len(pos)):
        want = np.flatnonzero((d[i] <= 12.0) & (np.arange(len(pos)) != i))
        assert got[i].tolist() == want.tolist()


def test_pair_sampler_batches_are_anchor_positive_pairs():
    # Two runs over the same 20 places 30 m apart, plus a lone frame 1 km away.
    frames = FrameIndex([Run("a", _line(20, 30.0)), Run("b", _line(20, 30.0, 2.0)),
                         Run("c", [[1000.0, 0.0]])])
    sampler = PairBatchSampler(frames, pairs_per_batch=4, pos_radius_m=10.0, seed=1)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 40 // 4
    seen = set()
    for batch in batches:
        assert len(batch) == 8
        for a, p in zip(batch[::2], batch[1::2]):
            assert np.linalg.norm(frames.positions[a] - frames.positions[p]) <= 10.0
            assert frames.traversal_ids[a] != frames.traversal_ids[p]  # across conditions
            seen.add(a)
    assert 40 not in seen and len(seen) == 40  # every anchor once, the lone frame never
    assert list(sampler) == batches            # same seed + epoch: same batches
    sampler.set_epoch(1)
    assert list(sampler) != batches
    r0 = PairBatchSampler(frames, 4, 10.0, seed=1, rank=0, world_size=2)
    r1 = PairBatchSampler(frames, 4, 10.0, seed=1, rank=1, world_size=2)
    a0 = {a for b in r0 for a in b[::2]}
    a1 = {a for b in r1 for a in b[::2]}
    assert len(r0) == len(r1) == 5 and not a0 & a1


def test_pair_sampler_too_few_positives_is_a_user_error():
    frames = FrameIndex([Run("a", _line(5, 100.0))])
    with pytest.raises(UserError, match="pairs_per_batch"):
        PairBatchSampler(frames, 4)


def _boreas_train(root):
    """The training traversals of a tiny Boreas benchmark folder (public layout)."""
    from benchmark_fixtures import make_boreas
    broot, images = make_boreas(root)
    return [t for t in open_traversals(DataConfig(format="boreas", root=str(broot), image_root=str(images)))
            if t.role == "train"]


def test_boreas_reader(tmp_path):
    from benchmark_fixtures import BOREAS_SEQS, TEST_FROM
    runs = _boreas_train(tmp_path)
    assert [(r.name, len(r)) for r in runs] == [(f"{s}:train", TEST_FROM) for s in BOREAS_SEQS]
    img = runs[0].load_image(1)
    assert img.shape == (30, 40, 3) and img.dtype == np.uint8
    pts = runs[1].load_lidar(2)
    assert pts.shape == (4096, 4) and pts.dtype == np.float32 and (pts[:, 3] == 1).all()


def test_frame_stride_keeps_every_kth_frame(tmp_path):
    from benchmark_fixtures import make_boreas
    root, images = make_boreas(tmp_path)
    cfg = dict(format="boreas", root=str(root), image_root=str(images))
    full = open_traversals(DataConfig(**cfg))[0]
    thin = open_traversals(DataConfig(**cfg, frame_stride=2))[0]
    assert (thin.name, thin.role, thin.has_lidar, len(thin)) == (full.name, "train", True, 5)
    np.testing.assert_array_equal(thin.positions, full.positions[::2])
    assert thin.positions.dtype == np.float64
    np.testing.assert_array_equal(thin.load_image(2), full.load_image(4))
    np.testing.assert_array_equal(thin.load_lidar(1), full.load_lidar(2))
    with pytest.raises(ConfigError, match="frame_stride"):
        load_config(DataConfig, data={"frame_stride": 0})


def test_cached_images_are_the_same_frames_decoded_once(tmp_path):
    from benchmark_fixtures import make_boreas
    root, images = make_boreas(tmp_path)
    cfg = dict(format="boreas", root=str(root), image_root=str(images), frame_stride=2)
    plain = open_traversals(DataConfig(**cfg))
    cached = open_traversals(DataConfig(**cfg, cache_images=True))
    for a, b in zip(plain, cached):
        assert (b.name, b.role, b.has_lidar, len(b)) == (a.name, a.role, a.has_lidar, len(a))
        np.testing.assert_array_equal(b.positions, a.positions)
        for i in range(len(a)):
            np.testing.assert_array_equal(b.load_image(i), a.load_image(i))
        np.testing.assert_array_equal(b.load_lidar(1), a.load_lidar(1))
    # Nothing downstream may change a cached frame in place: it would leak into the next epoch.
    img = cached[0].load_image(0)
    with pytest.raises(ValueError, match="read-only"):
        img[0, 0, 0] = 1
    # Augmented training items through DataLoader workers are identical with and without the
    # cache, and the cached ones come from memory: the image files are gone by then.
    contract = DataConfig(input_size=(24, 16)).contract()

    def batches(travs):
        ds = PlaceDataset(FrameIndex(travs), contract, AugmentConfig(), seed=3)
        return [b["image"] for b in torch.utils.data.DataLoader(ds, batch_size=4, num_workers=2)]
    want = batches(plain)
    shutil.rmtree(images)
    with pytest.raises(UserError, match="cannot read image"):
        plain[0].load_image(0)
    got = batches(cached)
    assert len(got) == len(want)
    for a, b in zip(want, got):
        torch.testing.assert_close(b, a, rtol=0, atol=0)


def test_an_image_cache_that_would_not_fit_in_memory_is_refused(tmp_path):
    from benchmark_fixtures import make_boreas
    from distilvpr_core.data.traversals import available_memory_bytes, check_image_cache_fits
    root, images = make_boreas(tmp_path)
    travs = open_traversals(DataConfig(format="boreas", root=str(root), image_root=str(images)))
    need = sum(len(t) * t.load_image(0).nbytes for t in travs)
    check_image_cache_fits(travs, 2 * need)      # exactly half: fits
    check_image_cache_fits(travs, None)          # unknown (no sysconf): not refused
    with pytest.raises(UserError, match=r"data.cache_images: decoding all \d+ frames .* set "
                                        r"data.cache_images: false"):
        check_image_cache_fits(travs, 2 * need - 2)
    assert available_memory_bytes() is None or available_memory_bytes() > 0


def test_boreas_errors_name_the_file(tmp_path):
    with pytest.raises(UserError, match="boreas_lidar2image_ndx.pickle: not found"):
        open_traversals(DataConfig(format="boreas", root=str(tmp_path)))
    with pytest.raises(UserError, match="directory not found"):
        open_traversals(DataConfig(format="boreas", root=str(tmp_path / "missing")))


def test_place_dataset_uses_the_deployed_preprocessing(tmp_path):
    runs = _boreas_train(tmp_path)[:1]
    cfg = DataConfig(format="boreas", root=str(tmp_path), input_size=(32, 24))
    frames = FrameIndex(runs)
    plain = PlaceDataset(frames, cfg.contract())
    item = plain[2]
    want = preprocess(runs[0].load_image(2), cfg.contract())[0]
    np.testing.assert_array_equal(item["image"].numpy(), want)
    assert item["index"] == 2 and "lidar" not in item
    aug = PlaceDataset(frames, cfg.contract(), AugmentConfig(erase_prob=1.0), lambda p: p[:10].copy(), seed=3)
    a, b = aug[1], aug[1]
    torch.testing.assert_close(a["image"], b["image"])        # deterministic per (seed, epoch, k)
    assert not torch.equal(a["image"], plain[1]["image"])     # but augmented
    assert (a["image"] == 0).all(dim=0).any()                 # an erased rectangle
    aug.set_epoch(1)
    assert not torch.equal(aug[1]["image"], a["image"])
    assert a["lidar"].shape == (10, 4)


def test_lidar_on_camera_only_traversal_is_a_user_error(tmp_path):
    cam = Run("cam", _line(3, 1.0))
    cam.has_lidar = False
    with pytest.raises(UserError, match="camera-only"):
        PlaceDataset(FrameIndex([cam]), DataConfig().contract(), lidar_prepare=lambda p: p)
    with pytest.raises(UserError, match="no traversal with role 'val'"):
        select([cam], "val")


def _oxford_export(root):
    from distilvpr_core.data import oxford_format as ox
    runs = []
    for k, (role, run) in enumerate([("train", "2020-01-01-00-00-00"), ("val", "2020-01-02-00-00-00"),
                                     ("test", "2020-01-03-00-00-00"), ("test", "2020-01-04-00-00-00")]):
        ts = np.arange(3, dtype=np.int64) * 1000 + 10**6 * (k + 1)
        img_ts = ts + 7
        for t, it in zip(ts, img_ts):
            ox.write_submap(root, ox.submap_relpath(run, int(t)),
                            np.random.default_rng(int(t)).uniform(-1, 1, (ox.POINTS, 3)))
            (root / "images4lidar" / run).mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.full((20, 30, 3), k * 40, np.uint8)).save(root / "images4lidar" / run / f"{it}.png")
        runs.append({"run": run, "name": f"r{k}", "role": role, "timestamps_us": ts,
                     "positions": np.c_[np.arange(3) * 20.0 + 1000, np.full(3, 50.0)],
                     "image_timestamps_us": img_ts})
    ox.write_export_index(root, runs)
    return root


def test_oxford_export_is_read_through_the_restricted_pickles(tmp_path):
    _oxford_export(tmp_path)
    runs = open_traversals(DataConfig(format="oxford", root=str(tmp_path)))
    assert [(r.name, r.role, len(r)) for r in runs] == [
        ("2020-01-01-00-00-00:train", "train", 3), ("2020-01-02-00-00-00:val", "val", 3),
        ("2020-01-03-00-00-00:test", "test", 3), ("2020-01-04-00-00-00:test", "test", 3)]
    np.testing.assert_allclose(runs[2].positions[:, 0], [1000, 1020, 1040])
    assert runs[3].load_image(1)[0, 0, 0] == 120          # the image paired through lidar2image_ndx
    pts = runs[0].load_lidar(2)
    assert pts.shape == (4096, 4) and pts.dtype == np.float32 and np.abs(pts[:, :3]).max() <= 1
    with pytest.raises(UserError, match="lidar2image_ndx.pickle: not found"):
        open_traversals(DataConfig(format="oxford", root=str(tmp_path / "images4lidar")))


def test_teacher_dataset_pickles_for_dataloader_workers(tmp_path):
    import pickle
    from distilvpr_core.models import BevConfig, TeacherConfig
    from distilvpr_core.train.pipeline import _lidar_prepare
    ds = PlaceDataset(FrameIndex(_boreas_train(tmp_path)[:1]), DataConfig(input_size=(32, 24)).contract(),
                      AugmentConfig(), _lidar_prepare(TeacherConfig(bev=BevConfig(range_m=1.0, cells=16))))
    clone = pickle.loads(pickle.dumps(ds))  # spawn-started workers receive the dataset this way
    torch.testing.assert_close(clone[0]["lidar"], ds[0]["lidar"])
    assert clone[0]["lidar"].shape == (6, 16, 16)
