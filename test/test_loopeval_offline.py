"""Offline evaluation (no ROS) of a real PriorMap with a real ONNX Runtime Embedder."""
from __future__ import annotations

import json

import numpy as np
import pytest

from distilvpr_core.foundation.errors import UserError
from distilvpr_core.infer import load_embedder
from distilvpr_core.mapdb import PriorMap
from distilvpr_ros.replay.replay_eval import run
from test_replay_helpers import eval_args, model_map_fixture, query_frames, write_bag  # noqa: F401 (fixture)


def test_offline_recall_matches_brute_force_search(tmp_path, model_map):
    model, prior_map = model_map
    bag = write_bag(tmp_path / "bag", n=32)
    out = tmp_path / "rep"
    assert run(eval_args("--bag", str(bag), "--map", str(prior_map), "--model", str(model),
                         "--out", str(out), "--offline")) == 0
    res = json.loads((out / "metrics.json").read_text())
    assert res["complete"] and res["metrics"]["counts"]["queries"] == 32
    # Geometry by hand: map covers arc 0..118 m, queries at s = 1 + 5 i, 2.5 m to the side;
    # within 25 m of some keyframe <=> s <= ~142.9 m <=> i <= 28.
    assert res["metrics"]["counts"]["revisits"] == 29
    # Independent reference: numpy cosine argmax over the stored map descriptors.
    emb = load_embedder(model, backend="onnxruntime", intra_op_threads=1)
    m = PriorMap.load(prior_map)
    stamps, xyz, images = query_frames(32)
    sims = emb.embed(images) @ m.descriptors.T
    top1 = np.asarray(m.poses)[sims.argmax(axis=1), :3]
    hit = np.linalg.norm(top1 - xyz, axis=1) <= 25.0
    assert res["metrics"]["recall_at_n"]["1"] == pytest.approx(hit[:29].sum() / 29)
    assert res["metrics"]["recall_at_n"]["1"] > 0.5          # the toy town is recognisable
    assert res["metrics"]["latency_s"]["count"] == 32


def test_offline_needs_map_and_model(tmp_path):
    bag = write_bag(tmp_path / "bag", n=2)
    with pytest.raises(UserError, match="--map and --model"):
        run(eval_args("--bag", str(bag), "--out", str(tmp_path / "r"), "--offline"))


def test_offline_without_ground_truth_writes_partial_report(tmp_path, model_map):
    model, prior_map = model_map
    bag = write_bag(tmp_path / "bag", n=4, with_pose=False)
    with pytest.raises(UserError, match=r"'/ground_truth/pose' is not in the bag.*partial report"):
        run(eval_args("--bag", str(bag), "--map", str(prior_map), "--model", str(model),
                      "--out", str(tmp_path / "r"), "--offline"))
    res = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert not res["complete"] and "no ground truth" in res["missing"][0]
    assert res["metrics"]["latency_s"]["count"] == 4 and res["metrics"]["recall_at_n"]["1"] is None


@pytest.mark.slow
def test_dataset_traversal_and_its_bag_give_the_same_recall(tmp_path, tmp_path_factory, model_map):
    from distilvpr_core.data import native
    from distilvpr_core.sim import tiny_dataset
    from distilvpr_ros.synthetic_assets import build_map

    model, _ = model_map
    root = tiny_dataset(tmp_path_factory.getbasetemp() / "synth")
    trav = native.open_dataset(root).traversal("train_noon")
    images = np.stack([trav.load_image(i) for i in range(len(trav.stamps_ns))])
    build_map(tmp_path / "map", model, images, trav.poses, trav.stamps_ns, "train_noon")
    common = ("--map", str(tmp_path / "map"), "--model", str(model), "--offline", "--radius-m", "10")
    assert run(eval_args("--dataset", str(root), "--traversal", "test_noon", "--out",
                         str(tmp_path / "d"), *common)) == 0
    assert run(eval_args("--bag", str(root / "bags" / "test_noon"), "--out", str(tmp_path / "b"),
                         *common)) == 0
    d = json.loads((tmp_path / "d" / "metrics.json").read_text())["metrics"]
    b = json.loads((tmp_path / "b" / "metrics.json").read_text())["metrics"]
    assert d["counts"]["queries"] == b["counts"]["queries"] == 24
    assert d["recall_at_n"] == b["recall_at_n"] and d["pr_auc"] == pytest.approx(b["pr_auc"])
    with pytest.raises(UserError, match="needs --traversal"):
        run(eval_args("--dataset", str(root), "--out", str(tmp_path / "x"), *common))
