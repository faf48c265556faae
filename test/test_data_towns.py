"""Several towns in one data set: namespaced places, roles per town, protocol T."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from distilvpr_core.data.datasets import DataConfig, FrameIndex, PairBatchSampler, neighbours_within, select
from distilvpr_core.data.towns import TOWN_OFFSET_M
from distilvpr_core.data.traversals import open_split_traversals, open_traversals
from distilvpr_core.evaluation.protocols import evaluate_protocols, town_protocol_runs
from distilvpr_core.foundation.config import load_config
from distilvpr_core.foundation.errors import UserError
from distilvpr_core.sim.config import SynthConfig
from distilvpr_core.sim.towns import generate_towns

torch.set_num_threads(1)
# Tiny towns of synth_tiny's generator: 5 drives of 6 frames 3 m apart, 64x48 images.
SMALL = ["route.frames=6", "camera.width=64", "camera.height=48", "lidar.azimuth_bins=64",
         "output.bags=false", "output.oxford=false", "output.difficulty_report=false"]


@pytest.fixture(scope="module")
def towns(tmp_path_factory, repo_root):
    cfg = load_config(SynthConfig, repo_root / "config/synth_tiny.yaml", SMALL)
    out = tmp_path_factory.mktemp("towns") / "towns"
    generate_towns(cfg, out, [1, 2, 3, 4], workers=1, progress=False)
    return out


def _data(root, **kw):
    return DataConfig(root=str(root), input_size=(64, 48), **kw)


def test_towns_are_namespaced_with_roles_and_never_share_a_place(towns):
    travs = open_traversals(_data(towns, val_towns=["town_3"], test_towns=["town_4"]))
    assert {t.town for t in travs} == {"town_1", "town_2", "town_3", "town_4"}
    assert all(t.name == f"{t.town}/{t.drive}" for t in travs)
    roles = {t.town: {u.role for u in travs if u.town == t.town} for t in travs}
    assert roles == {"town_1": {"train"}, "town_2": {"train"}, "town_3": {"val"}, "town_4": {"test"}}
    assert all(t.condition.count("/") == 2 for t in travs)
    # The same drive of two towns: the same local coordinates would overlap without the shift.
    a = next(t for t in travs if t.name == "town_1/train_noon")
    b = next(t for t in travs if t.name == "town_2/train_noon")
    assert np.allclose(b.positions[:, 0] - a.positions[:, 0], TOWN_OFFSET_M, atol=500)
    train = FrameIndex(select(travs, "train"))
    town_of = np.concatenate([np.full(len(t), t.town, object) for t in train.traversals])
    for k, nb in enumerate(neighbours_within(train.positions, 50.0)):
        assert (town_of[nb] == town_of[k]).all()
    sampler = PairBatchSampler(train, 4, pos_radius_m=10.0, seed=0)
    for batch in sampler:
        for x, y in zip(batch[::2], batch[1::2]):
            assert town_of[x] == town_of[y] and train.traversal_ids[x] != train.traversal_ids[y]


def test_town_config_errors_name_what_to_change(towns, tmp_path):
    with pytest.raises(UserError, match="data.test_towns: \\['town_9'\\] not among"):
        open_traversals(_data(towns, test_towns=["town_9"]))
    with pytest.raises(UserError, match="both name \\['town_3'\\]"):
        open_traversals(_data(towns, val_towns=["town_3"], test_towns=["town_3"]))
    with pytest.raises(UserError, match="neither a dataset"):
        open_traversals(_data(towns / "town_1", towns=[str(tmp_path)]))
    with pytest.raises(UserError, match="no towns are opened"):
        open_traversals(_data(towns / "town_1", test_towns=["town_4"]))
    # a dataset plus towns: the main dataset keeps its names and roles
    travs = open_traversals(_data(towns / "town_1", towns=[str(towns / "town_2")], test_towns=["town_2"]))
    main = [t for t in travs if not getattr(t, "town", "")]
    assert {t.role for t in main} == {"train", "val", "test"} and "train_noon" in {t.name for t in main}


def test_protocol_t_pairs_stay_in_a_town_and_skip_the_map_drive(towns):
    travs = open_traversals(_data(towns, test_towns=["town_3", "town_4"]))
    tests = select(travs, "test")
    runs_of = town_protocol_runs(tests, "train_noon")
    runs, pairs = runs_of["unseen_town"]
    assert pairs and all(runs[i].town == runs[j].town and i != j for i, j in pairs)
    assert not any(runs[k].drive == "train_noon" for p in pairs for k in p)
    assert len(pairs) == 2 * 4 * 3     # two towns, 4 drives besides the map, ordered pairs
    runs_m, m_pairs = runs_of["unseen_town_map"]
    assert len(m_pairs) == 2 * 4 and all(runs_m[j].drive == "train_noon" and runs_m[i].town == runs_m[j].town
                                         for i, j in m_pairs)
    with pytest.raises(UserError, match="needs >= 2 drives"):
        town_protocol_runs(tests[:2], "train_noon")


def test_protocol_t_oracle_scores_high_random_near_chance_by_condition(towns):
    travs, split = open_split_traversals(_data(towns, test_towns=["town_4"]))
    assert split is None
    tests = select(travs, "test")

    rng = np.random.default_rng(0)
    # frames 3 m apart: a 2 m radius leaves one true neighbour per query
    good = evaluate_protocols(lambda t: _position_code(t.positions), [], None, None, 5, 2.0,
                              town_tests=tests, town_map="train_noon")
    bad = evaluate_protocols(lambda t: rng.normal(size=(len(t), 16)).astype(np.float32), [], None, None, 5, 2.0,
                             town_tests=tests, town_map="train_noon")
    assert set(good) == {"unseen_town", "unseen_town_map"}
    for proto in good:
        assert good[proto]["R@1"] > 90.0
        assert bad[proto]["R@1"] < good[proto]["R@1"] - 30.0
        conds = good[proto]["R@1 by query condition"]
        assert conds and all(c.count("/") == 2 for c in conds)


def _position_code(pos):
    """A descriptor per frame that points the same way for frames at the same place."""
    ang = np.linspace(0, np.pi, 32)
    p = np.asarray(pos, np.float64).copy()
    p[:, 0] -= np.round(p[:, 0] / TOWN_OFFSET_M) * TOWN_OFFSET_M   # the town's own coordinates
    return np.concatenate([np.cos(p[:, :1] / 9.0 + ang), np.sin(p[:, 1:2] / 9.0 + ang)], 1).astype(np.float32)


def test_pipeline_trains_on_towns_and_scores_t(towns, tmp_path, repo_root, monkeypatch, capsys):
    from distilvpr_core.train.pipeline import DistilRunConfig, run_pipeline
    monkeypatch.chdir(repo_root)
    sets = [f"data.root={towns}", "data.input_size=[64, 48]", "data.val_towns=[town_3]",
            "data.test_towns=[town_4]", "eval.town_map=train_noon", f"run.root={tmp_path}",
            "run.device=cpu", "run.threads=1", "teacher.bev.cells=16", "train_teacher.epochs=1",
            "train_student.epochs=1", "train_teacher.pairs_per_batch=4", "train_student.pairs_per_batch=4",
            "eval.batch_size=16"]
    run = run_pipeline(load_config(DistilRunConfig, "config/distil_synth.yaml", sets), ["test"])
    res = json.loads((run / "eval.json").read_text())
    for model in ("student", "teacher", "teacher_image"):
        protos = res[model]["protocols"]
        assert set(protos) == {"unseen_town", "unseen_town_map"}
        assert res[model]["R@1"] == protos["unseen_town"]["R@1"]
        assert protos["unseen_town_map"]["R@1 by query condition"]
    cache = torch.load(run / "teacher_cache.pt", weights_only=True)["embeddings"]
    assert cache.shape[0] == 2 * 5 * 6     # towns 1 and 2 train: 5 drives x 6 frames each
    line = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("[eval] student")]
    assert " T " in line[0] and " TD " in line[0]


def test_pipeline_on_a_split_town_plus_towns_scores_p_d_s_and_t(towns, tmp_path_factory, tmp_path, repo_root,
                                                                monkeypatch):
    from distilvpr_core.sim.pipeline import generate
    from distilvpr_core.train.pipeline import DistilRunConfig, run_pipeline
    monkeypatch.chdir(repo_root)
    split_town = generate(load_config(SynthConfig, repo_root / "config/synth_split_tiny.yaml",
                                      ["camera.width=64", "camera.height=48", "lidar.azimuth_bins=64"]),
                          tmp_path_factory.mktemp("split") / "town", workers=1, progress=False)
    sets = [f"data.root={split_town}", f"data.towns=[{towns / 'town_1'}, {towns / 'town_4'}]",
            "data.test_towns=[town_4]", "eval.town_map=train_noon", "data.input_size=[64, 48]",
            f"run.root={tmp_path}", "run.device=cpu", "run.threads=1", "teacher.bev.cells=16",
            "train_teacher.epochs=1", "train_student.epochs=1", "train_teacher.pairs_per_batch=4",
            "train_student.pairs_per_batch=4", "eval.batch_size=16", "run.stages=[teacher, eval]"]
    run = run_pipeline(load_config(DistilRunConfig, "config/distil_synth.yaml", sets), ["test"])
    res = json.loads((run / "eval.json").read_text())["teacher"]
    assert set(res["protocols"]) == {"unseen_places", "deployment", "unseen_condition", "unseen_town",
                                     "unseen_town_map"}
    assert res["R@1"] == res["protocols"]["unseen_places"]["R@1"]
    # D maps with the main dataset's first training drive, never a town's
    assert all(k.endswith("->train_noon") for k in res["protocols"]["deployment"]["R@1 by pair"])
    assert all(k.split("->")[0].startswith("town_4/") for k in res["protocols"]["unseen_town"]["R@1 by pair"])
