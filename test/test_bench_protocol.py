"""The benchmark protocol: geographic split (split.json), P/D/S evaluation, and
the training fixes the benchmark relies on (float64 place masks, a Poincaré
term that works on real embedding norms, collapse detection)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from distilvpr_core.foundation.config import ConfigError, load_config
from distilvpr_core.data.datasets import DataConfig, select
from distilvpr_core.data.traversals import open_traversals
from distilvpr_core.data.geosplit import exclude_near_test_regions, near, read_split
from distilvpr_core.foundation.errors import UserError
from distilvpr_core.evaluation.protocols import evaluate_protocols, mapping_traversal, protocol_runs
from distilvpr_core.sim.config import SynthConfig

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def split_town(tmp_path_factory, repo_root):
    from distilvpr_core.sim.pipeline import generate
    cfg = load_config(SynthConfig, repo_root / "config/synth_split_tiny.yaml", [])
    return generate(cfg, tmp_path_factory.mktemp("split") / "town", workers=1, progress=False)


def _open(root, stride=1):
    travs = open_traversals(DataConfig(root=str(root), frame_stride=stride))
    split = read_split(root, travs, stride)
    return travs, split


@pytest.mark.parametrize("stride", [1, 2])
def test_no_training_or_validation_frame_near_a_test_region(split_town, stride):
    travs, split = _open(split_town, stride)
    assert split is not None and split.buffer_m == 50.0
    kept = exclude_near_test_regions(travs, split)
    region_xy = np.concatenate([t.positions[split.region_masks[t.name]] for t in travs])
    assert len(region_xy) > 0
    for t in kept:
        if t.role in ("train", "val"):
            d = np.sqrt(((t.positions[:, None] - region_xy[None]) ** 2).sum(-1)).min()
            assert d > 50.0, (t.name, d)
            assert len(t) > 0
        else:
            assert split.region_masks[t.name].any(), t.name    # every test drive enters the region
    doc = json.loads((split_town / "split.json").read_text())
    assert doc["regions"][0]["fraction"] == [0.4, 0.6]
    assert set(doc["excluded_at_load"]) == {"train_noon", "train_night", "val_dawn"}


def test_protocol_runs_use_region_frames_for_p_and_the_mapping_run_for_d_and_s(split_town):
    travs, split = _open(split_town)
    travs = exclude_near_test_regions(travs, split)
    tests = select(travs, "test")
    db = mapping_traversal(select(travs, "train"))
    assert db.name == "train_noon"
    runs = protocol_runs(tests, db, split)
    p_runs, p_pairs = runs["unseen_places"]
    assert [r.name for r in p_runs] == ["test_noon", "test_night"] and p_pairs == [(0, 1), (1, 0)]
    assert all(split.region_masks[r.name][r.indices].all() for r in p_runs)
    d_runs, d_pairs = runs["deployment"]
    assert d_runs[0] is db and d_pairs == [(1, 0), (2, 0)]
    assert not any(split.region_masks[r.name][r.indices].any() for r in d_runs[1:])
    s_runs, s_pairs = runs["unseen_condition"]
    assert [r.name for r in s_runs[1:]] == ["test_fog_winter"] and s_pairs == [(1, 0)]
    with pytest.raises(UserError, match="eval.database: 'nope'"):
        mapping_traversal(select(travs, "train"), "nope")


def _fourier(pos: np.ndarray) -> np.ndarray:
    """Descriptors whose cosine similarity falls with distance (an oracle model)."""
    freqs = np.random.default_rng(0).normal(0, 1 / 15.0, (64, 2))
    ang = pos @ freqs.T
    return np.concatenate([np.cos(ang), np.sin(ang)], axis=1).astype(np.float32)


def test_oracle_descriptors_score_high_and_random_ones_near_chance(split_town):
    travs, split = _open(split_town)
    travs = exclude_near_test_regions(travs, split)
    tests, db = select(travs, "test"), mapping_traversal(select(travs, "train"))
    oracle = evaluate_protocols(lambda t: _fourier(t.positions), tests, db, split)
    assert set(oracle) == {"unseen_places", "deployment", "unseen_condition"}
    for proto, row in oracle.items():
        assert row["R@1"] >= 90.0, (proto, row["R@1"])
        assert 0 < row["chance R@1"] < 100
    assert oracle["deployment"]["chance R@1"] < 40     # the tiny region itself is only 72 m long
    assert set(oracle["deployment"]["R@1 by query condition"]) == {"noon/clear/summer", "night/clear/summer"}
    rng = np.random.default_rng(1)
    noise = evaluate_protocols(lambda t: rng.normal(size=(len(t), 16)).astype(np.float32), tests, db, split)
    assert noise["deployment"]["R@1"] < oracle["deployment"]["R@1"] - 30


def test_split_config_errors_name_what_to_change(repo_root):
    base = repo_root / "config/synth_split_tiny.yaml"
    with pytest.raises(ConfigError, match="test_fog_winter.*unseen in training|condition"):
        load_config(SynthConfig, base, ["traversals=[{name: train_noon, role: train}, "
                                        "{name: test_fog_winter, role: test}]"])
    with pytest.raises(ConfigError, match="split.test_regions\\[0\\]"):
        load_config(SynthConfig, base, ["split.test_regions=[[0.7, 0.2]]"])
    with pytest.raises(ConfigError, match="is not a test traversal"):
        load_config(SynthConfig, base, ["split.stress_traversals=[train_noon]"])


def test_split_errors_for_a_test_drive_outside_the_regions_and_an_unvisited_region(repo_root):
    from distilvpr_core.sim.plan import plan_traversals
    from distilvpr_core.sim.split import build_split
    from distilvpr_core.sim.world import build_world
    cfg = load_config(SynthConfig, repo_root / "config/synth_split_tiny.yaml", [])
    world = build_world(cfg.town, cfg.seed)
    cfg.traversals[3].frames = 10          # test_noon stops long before the region
    with pytest.raises(UserError, match="test_noon.*never enters a test region"):
        build_split(cfg, world.loop, plan_traversals(cfg, world))
    cfg = load_config(SynthConfig, repo_root / "config/synth_split_tiny.yaml",
                      ["split.test_regions=[[0.4, 0.6], [0.97, 0.99]]"])
    with pytest.raises(UserError, match="test_regions\\[1\\].*no test traversal drives through it"):
        build_split(cfg, world.loop, plan_traversals(cfg, world))


def test_place_masks_are_exact_on_utm_sized_coordinates():
    from distilvpr_core.train.pipeline import place_masks
    rng = np.random.default_rng(0)
    local = rng.uniform(0, 200, (32, 2))
    utm = torch.as_tensor(local + np.array([5.7e6, 6.1e5]), dtype=torch.float64)
    p_ref, n_ref = place_masks(torch.as_tensor(local), 10.0, 50.0)
    p, n = place_masks(utm, 10.0, 50.0)
    assert torch.equal(p, p_ref) and torch.equal(n, n_ref)
    assert p_ref.sum() > 32    # some off-diagonal positives exist, so the test can fail


def test_near_matches_brute_force():
    rng = np.random.default_rng(2)
    a, b = rng.uniform(0, 300, (50, 2)), rng.uniform(0, 300, (70, 2))
    d = np.sqrt(((a[:, None] - b[None]) ** 2).sum(-1)).min(1)
    assert np.array_equal(near(a, b, 40.0), d <= 40.0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_poincare_self_agent_term_works_on_real_embedding_norms(dtype):
    """Raw GeM descriptors have norms of tens: the term must still vary and carry gradient."""
    from distilvpr_core.distill.distilvpr import SELF_AGENT
    loss_fn = SELF_AGENT["poincare"](1.0, 0.1)
    g = torch.Generator().manual_seed(0)
    teacher = 20 * torch.randn(16, 384, generator=g, dtype=dtype) / 384 ** 0.5 * 4
    student = (5 * torch.randn(16, 384, generator=g, dtype=dtype)).requires_grad_()
    assert (0.1 ** 0.5) * student.norm(dim=1).min() > 4     # the regime where a plain clamp kills it
    loss = loss_fn(student, teacher)
    loss.backward()
    assert loss.item() > 1e-4
    assert torch.isfinite(student.grad).all() and student.grad.abs().max() > 1e-6


def test_artanh_gradient_passes_through_the_clamp():
    from distilvpr_core.distill.manifolds import _artanh
    x = torch.tensor([0.5, 1.0, 3.0], requires_grad=True)
    _artanh(x).sum().backward()
    assert torch.isfinite(x.grad).all() and (x.grad > 0).all()
    assert x.grad[0].item() == pytest.approx(1 / (1 - 0.25))


def test_collapse_is_detected_from_epoch_statistics():
    from distilvpr_core.train.loop import collapse_reason
    assert collapse_reason({"spread": 0.3, "triplet": 0.15, "triplet_nonzero": 0.8}, 0.2) is None
    assert "spread" in collapse_reason({"spread": 1e-5, "triplet": 0.2, "triplet_nonzero": 1.0}, 0.2)
    assert "pinned at the margin" in collapse_reason({"spread": 0.2, "triplet": 0.2, "triplet_nonzero": 1.0}, 0.2)
    assert collapse_reason({"spread": 0.2, "triplet": 0.2, "triplet_nonzero": 0.9}, 0.2) is None


def test_pipeline_on_a_split_town_scores_p_d_s_and_never_trains_on_test_regions(split_town, tmp_path,
                                                                                repo_root, monkeypatch, capsys):
    from distilvpr_core.distill.distilvpr import SELF_AGENT
    from distilvpr_core.train.pipeline import DistilRunConfig, run_pipeline
    monkeypatch.chdir(repo_root)
    sets = [f"data.root={split_town}", "data.input_size=[64, 48]", f"run.root={tmp_path}",
            "run.device=cpu", "run.threads=1", "teacher.bev.cells=16", "train_teacher.epochs=1",
            "train_student.epochs=1", "train_teacher.pairs_per_batch=4", "train_student.pairs_per_batch=4",
            "eval.batch_size=16", "data.cache_images=true"]
    run = run_pipeline(load_config(DistilRunConfig, "config/distil_synth.yaml", sets), ["test"])
    res = json.loads((run / "eval.json").read_text())
    # The log names the protocols by the letters the docs use.
    student_line = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("[eval] student")]
    assert len(student_line) == 1 and "by protocol R@1: P " in student_line[0] \
        and " D " in student_line[0] and " S " in student_line[0]
    for model in ("student", "teacher", "teacher_image"):
        assert set(res[model]["protocols"]) == {"unseen_places", "deployment", "unseen_condition"}
        assert res[model]["R@1"] == res[model]["protocols"]["unseen_places"]["R@1"]
    travs, split = _open(split_town)
    kept = exclude_near_test_regions(travs, split)
    n_train = sum(len(t) for t in kept if t.role == "train")
    cache = torch.load(run / "teacher_cache.pt", weights_only=True)["embeddings"]
    assert cache.shape[0] == n_train < sum(len(t) for t in travs if t.role == "train")
    # The hyperbolic self-agent term does work on a trained teacher's real embedding norms.
    term = SELF_AGENT["poincare"](1.0, 0.1)
    student = (cache[:8] + 0.5 * torch.randn(8, cache.shape[1])).requires_grad_()
    loss = term(student, cache[8:16])
    loss.backward()
    assert loss.item() > 0 and torch.isfinite(student.grad).all() and student.grad.abs().sum() > 0
    # The student's triplet loss enters with the reference's weight 0.5.
    hist = json.loads((run / "student_metrics.json").read_text())[0]
    assert hist["loss"] == pytest.approx(0.5 * hist["triplet"] + hist["distill"], rel=1e-6)
