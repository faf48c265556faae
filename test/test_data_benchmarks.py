"""Oxford RobotCar and Boreas in their public layouts: roles, query pickles,
image roots, the dataset check, and `distilvpr distil` + `distilvpr eval` end to end."""
from __future__ import annotations

import json
import pickle
import shutil

import numpy as np
import pytest
import torch

from benchmark_fixtures import (BOREAS_SEQS, EVAL_RUNS, NORTH0, OXFORD_RUNS, PLACES, TEST_FROM, make_boreas,
                                make_oxford, positions)
from distilvpr_core.app.cli import main
from distilvpr_core.data.datasets import DataConfig, FrameIndex, select
from distilvpr_core.data.traversals import open_traversals
from distilvpr_core.data.eval_sets import neighbour_list_disagreements
from distilvpr_core.foundation.errors import UserError

torch.set_num_threads(1)
LAYOUTS = {"oxford": (make_oxford, OXFORD_RUNS), "boreas": (make_boreas, BOREAS_SEQS)}


@pytest.fixture(scope="module")
def layouts(tmp_path_factory):
    base = tmp_path_factory.mktemp("bench")
    return {"oxford": make_oxford(base / "ox"), "boreas": make_boreas(base / "bo")}


def _cfg(fmt, root, image_root="", **kw):
    return DataConfig(format=fmt, root=str(root), image_root=str(image_root), **kw)


@pytest.mark.parametrize("fmt", ["oxford", "boreas"])
def test_roles_per_run_and_role_and_the_query_pickle(layouts, fmt):
    root, image_root = layouts[fmt]
    runs = LAYOUTS[fmt][1]
    travs = open_traversals(_cfg(fmt, root, image_root))
    got = [(t.name, t.role, len(t)) for t in travs]
    assert got == ([(f"{r}:train", "train", TEST_FROM) for r in runs]
                   + [(f"{r}:val", "val", PLACES - TEST_FROM) for r in runs]
                   + [(f"{runs[k]}:test", "test", PLACES) for k in EVAL_RUNS])
    # An evaluation run that also has training tuples: the two never share a traversal.
    train = select(travs, "train")
    test = select(travs, "test")
    train_scans = {rel for t in train for rel in t.relpaths}
    assert not train_scans & {rel for t in test for rel in t.relpaths if
                              t.positions[t.relpaths.index(rel), 0] > NORTH0 + 95}
    # Positions stay float64 at UTM scale: exact to the generator's values.
    for t in travs:
        assert t.positions.dtype == np.float64
    np.testing.assert_array_equal(test[0].positions, positions(EVAL_RUNS[0]))
    assert FrameIndex(train).positions.dtype == np.float64
    # The query pickle: its frames are the queries, its lists the true neighbours ...
    for n, t in enumerate(test):
        assert t.eval_set == n and t.query_indices.tolist() == list(range(TEST_FROM, PLACES))
        assert sorted(t.true_neighbours) == [m for m in range(len(test)) if m != n]
    # ... and they agree with the 25 m recomputation over the float64 positions.
    assert neighbour_list_disagreements(test, 25.0) == (0, 36)
    # The image of a scan is the nearest one in the lidar-to-image index.
    img = test[0].load_image(3)
    stem = int(test[0].relpaths[3].split('/')[-1].split('.')[0])
    assert img.shape == (30, 40, 3) and test[0].image_path(3).name == f"{stem + 12345}.png"
    pts = test[1].load_lidar(0)
    assert pts.shape == (4096, 4) and pts.dtype == np.float32


def test_float32_positions_would_be_wrong_at_utm_scale(layouts):
    """Why positions stay float64: at northing 5.7e6 m float32 steps are 0.5 m and
    the 10 m / 25 m decisions change; the float64 pipeline keeps them exact."""
    test = select(open_traversals(_cfg("oxford", *layouts["oxford"])), "test")
    pos = test[0].positions
    d64 = np.linalg.norm(pos[:, None] - test[1].positions[None], axis=2)
    d32 = np.linalg.norm(pos.astype(np.float32)[:, None] - test[1].positions.astype(np.float32)[None], axis=2)
    assert np.abs(d64 - d32).max() > 0.05       # float32 is visibly off ...
    local = np.linalg.norm((pos - pos[0])[:, None] - (test[1].positions - pos[0])[None], axis=2)
    np.testing.assert_allclose(d64, local, atol=1e-6)   # ... float64 is not


def test_frame_stride_keeps_protocol_runs_whole(layouts):
    travs = open_traversals(_cfg("oxford", *layouts["oxford"], frame_stride=3))
    assert [len(t) for t in travs if t.role == "train"] == [4] * 4
    assert [len(t) for t in travs if t.role == "test"] == [PLACES] * 3   # query indices index these


def test_cached_images_keep_the_protocol_runs_query_lists(layouts):
    plain = open_traversals(_cfg("oxford", *layouts["oxford"]))
    cached = open_traversals(_cfg("oxford", *layouts["oxford"], cache_images=True))
    for a, b in zip(plain, cached):
        if a.role == "test":
            assert b.eval_set == a.eval_set
            np.testing.assert_array_equal(b.query_indices, a.query_indices)
        np.testing.assert_array_equal(b.load_image(0), a.load_image(0))


def test_boreas_default_image_root_and_held_out_val_runs(layouts, tmp_path):
    root, _ = layouts["boreas"]
    copy = tmp_path / "b"
    shutil.copytree(root, copy)
    (copy / "boreas_test_queries_baseline.pickle").unlink()
    with pytest.raises(UserError, match="no traversal with role 'val'"):
        select(open_traversals(_cfg("boreas", copy)), "val")
    travs = open_traversals(_cfg("boreas", copy, val_runs=[BOREAS_SEQS[0]]))
    assert [t.name for t in travs if t.role == "val"] == [f"{BOREAS_SEQS[0]}:val"]
    assert f"{BOREAS_SEQS[0]}:train" not in [t.name for t in travs]
    with pytest.raises(UserError, match="data.val_runs: \\['nope'\\] not found"):
        open_traversals(_cfg("boreas", copy, val_runs=["nope"]))


def test_synthetic_oxford_export_still_reads_with_the_default_image_root(tmp_path, repo_root, monkeypatch):
    monkeypatch.chdir(repo_root)
    out = tmp_path / "town"
    assert main(["synth", "--config", "config/synth_tiny.yaml", "--out", str(out), "--set", "output.oxford=true",
                 "--set", "output.bags=false", "--set", "output.difficulty_report=false"]) == 0
    travs = open_traversals(_cfg("oxford", out / "oxford"))
    roles = {t.role for t in travs}
    assert roles == {"train", "val", "test"}
    t = select(travs, "test")[0]
    assert t.load_image(0).ndim == 3 and t.query_indices is not None
    assert neighbour_list_disagreements(select(travs, "test"))[0] == 0


# ----------------------------------------------------------------------------- bad input

def _copy(layouts, fmt, tmp_path):
    root, image_root = layouts[fmt]
    dst = tmp_path / fmt
    shutil.copytree(root.parent, dst)
    return dst / root.name, dst / image_root.relative_to(root.parent)


def test_image_root_missing_or_without_index(layouts, tmp_path):
    root, image_root = _copy(layouts, "oxford", tmp_path)
    with pytest.raises(UserError, match="data.image_root: .*nope: directory not found"):
        open_traversals(_cfg("oxford", root, tmp_path / "nope"))
    with pytest.raises(UserError, match="lidar2image_ndx.pickle: not found.*data.image_root"):
        open_traversals(_cfg("oxford", root))          # images are in a separate folder here
    shutil.rmtree(image_root / OXFORD_RUNS[2])
    with pytest.raises(UserError, match=f"run {OXFORD_RUNS[2]} has no images.*set data.image_root"):
        open_traversals(_cfg("oxford", root, image_root))


def test_lidar_timestamp_without_image(layouts, tmp_path):
    root, image_root = _copy(layouts, "oxford", tmp_path)
    path = image_root / "lidar2image_ndx.pickle"
    l2i = pickle.loads(path.read_bytes())
    ts = sorted(l2i)[5]
    del l2i[ts]
    path.write_bytes(pickle.dumps(l2i))
    with pytest.raises(UserError, match=f"lidar2image_ndx.pickle: no image for lidar timestamp {ts}"):
        open_traversals(_cfg("oxford", root, image_root))


@pytest.mark.parametrize("fmt", ["oxford", "boreas"])
def test_query_run_absent_from_the_database(layouts, tmp_path, fmt):
    root, image_root = _copy(layouts, fmt, tmp_path)
    prefix = "oxford" if fmt == "oxford" else "boreas"
    db = root / f"{prefix}_evaluation_database.pickle"
    sets = pickle.loads(db.read_bytes())
    db.write_bytes(pickle.dumps(sets[:2]))
    with pytest.raises(UserError, match="run\\(s\\) .* of the query pickle are absent from the database pickle"):
        open_traversals(_cfg(fmt, root, image_root))
    db.write_bytes(pickle.dumps([sets[0], sets[2], sets[1]]))
    with pytest.raises(UserError, match="run 1 query 0 .* is from run"):
        open_traversals(_cfg(fmt, root, image_root))
    db.unlink()
    with pytest.raises(UserError, match="evaluation_query.pickle: found without .*evaluation_database.pickle"):
        open_traversals(_cfg(fmt, root, image_root))


def test_clouds_of_the_wrong_shape(layouts, tmp_path):
    root, image_root = _copy(layouts, "oxford", tmp_path)
    t = select(open_traversals(_cfg("oxford", root, image_root)), "test")[0]
    (root / t.relpaths[2]).write_bytes(np.zeros(100, "<f8").tobytes())
    with pytest.raises(UserError, match=f"{t.relpaths[2]}: 100 float64 values, expected 12288"):
        t.load_lidar(2)
    broot, bimg = _copy(layouts, "boreas", tmp_path)
    b = select(open_traversals(_cfg("boreas", broot, bimg)), "test")[0]
    np.save(broot / b.relpaths[1], np.zeros((10, 7), np.float32))
    with pytest.raises(UserError, match="expected a numeric array \\[P, 3\\|4\\]"):
        b.load_lidar(1)
    assert main(["doctor", "--data", str(broot)]) == 0      # doctor samples frame 0 only
    np.save(broot / b.relpaths[0], np.zeros((10, 7), np.float32))
    assert main(["doctor", "--data", str(broot)]) == 1


# ----------------------------------------------------------------------------- end to end

def _tiny_sets(root, image_root, run_root):
    sets = {"data.root": root, "data.image_root": image_root, "data.input_size": "[32, 24]",
            "data.num_workers": "0", "run.root": run_root, "run.device": "cpu", "run.threads": "1",
            "teacher.pretrained": "none", "student.pretrained": "none", "teacher.bev.cells": "16",
            "student.dim": "32", "teacher.image_dim": "16", "teacher.lidar_dim": "16",
            "train_teacher.epochs": "1", "train_student.epochs": "1", "train_teacher.pairs_per_batch": "4",
            "train_student.pairs_per_batch": "4", "train_teacher.max_batches": "2",
            "train_student.max_batches": "2", "eval.batch_size": "16", "run.amp": "false"}
    return [a for k, v in sets.items() for a in ("--set", f"{k}={v}")]


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["oxford", "boreas"])
def test_distil_then_eval_end_to_end(layouts, fmt, tmp_path, repo_root, monkeypatch, capsys):
    from distilvpr_core.evaluation.vpr import EvalConfig, evaluate_model
    from distilvpr_core.models import load_student
    from distilvpr_core.models.checkpoint import checkpoint_contract, read_checkpoint
    from test_eval_reference import reference_recall
    monkeypatch.chdir(repo_root)
    root, image_root = layouts[fmt]
    config = f"config/distil_{fmt}.yaml"
    assert main(["distil", "--config", config, *_tiny_sets(root, image_root, tmp_path / "runs")]) == 0
    run = next((tmp_path / "runs").iterdir())
    cache = torch.load(run / "teacher_cache.pt", weights_only=True)
    assert cache["frames"] == 4 * TEST_FROM          # training tuples only: no evaluation frame
    ev = json.loads((run / "eval.json").read_text())
    assert ev["student"]["pairs"] == 6 and ev["student"]["queries"] == 36   # the query pickle's subset
    out = tmp_path / "eval.json"
    ckpt = run / "student_best.pt"
    assert main(["eval", "--checkpoint", str(ckpt), "--config", config, "--output", str(out),
                 "--set", f"data.root={root}", "--set", f"data.image_root={image_root}",
                 "--set", "data.num_workers=0"]) == 0
    assert "using the checkpoint's preprocessing [32, 24]" in capsys.readouterr().out
    got = json.loads(out.read_text())
    runs = LAYOUTS[fmt][1]
    assert got["traversals"] == [f"{runs[k]}:test" for k in EVAL_RUNS]
    assert got["R@1"] == pytest.approx(ev["student"]["R@1"], abs=1e-9)
    # Independently: descriptors of every database frame, then the reference protocol.
    travs = select(open_traversals(_cfg(fmt, root, image_root)), "test")
    model, _ = load_student(ckpt)
    contract = checkpoint_contract(read_checkpoint(ckpt), ckpt)
    from distilvpr_core.foundation.preprocess import preprocess
    descs = []
    with torch.no_grad():
        for t in travs:
            descs.append(model(torch.from_numpy(preprocess([t.load_image(i) for i in range(len(t))],
                                                            contract))).numpy())
    queries = [{k: {m: lst.tolist() for m, lst in ((m, t.true_neighbours[m][k]) for m in t.true_neighbours)}
                for k in range(len(t.query_indices))} for t in travs]
    want_r, want_1pct = reference_recall([d for d in descs], [d[t.query_indices] for d, t in zip(descs, travs)],
                                         queries)
    assert got["R@1"] == pytest.approx(want_r[0], abs=0.01)
    assert got["R@1%"] == pytest.approx(want_1pct, abs=0.01)
    res = evaluate_model(model, "student", travs, _cfg(fmt, root, image_root), EvalConfig(), torch.device("cpu"),
                         contract=contract)
    assert res.queries == 36


def test_neighbours_and_pairs_are_exact_at_utm_offsets():
    """The training sampler's positives at northing 5.7e6 m equal those at the origin."""
    from distilvpr_core.data.datasets import neighbours_within
    local = np.c_[np.arange(40) * 3.3, np.zeros(40)]
    for a, b in zip(neighbours_within(local + [5.7e6, 6.2e5], 10.0), neighbours_within(local, 10.0)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("fmt, lam, size", [("oxford", 10.0, (320, 240)), ("boreas", 1.0, (306, 256))])
def test_shipped_configs_hold_the_papers_recipe(repo_root, fmt, lam, size):
    from distilvpr_core.foundation.config import load_config
    from distilvpr_core.train.pipeline import DistilRunConfig
    cfg = load_config(DistilRunConfig, repo_root / f"config/distil_{fmt}.yaml")
    assert (cfg.data.format, tuple(cfg.data.input_size), cfg.distill.lambda_self) == (fmt, size, lam)
    assert (cfg.distill.cross_euclidean_weight, cfg.distill.cross_sphere_weight,
            cfg.distill.cross_poincare_weight, cfg.distill.curvature) == (0.1, 0.1, 0.1, 0.1)
    s = cfg.train_student
    assert (s.epochs, s.lr, s.weight_decay, s.milestones, s.gamma, s.pairs_per_batch) == (60, 1e-4, 1e-4, [40], 0.1, 64)
    assert (cfg.student.backbone, cfg.student.dim, cfg.task.margin, cfg.eval.radius_m) == ("resnet18", 384, 0.2, 25.0)
