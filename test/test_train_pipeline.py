"""The whole distil pipeline on a tiny native dataset: teacher -> cache -> student -> eval,
resume, and the errors a user can cause."""
from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from distilvpr_core.foundation.config import load_config
from distilvpr_core.data import native
from distilvpr_core.foundation.errors import UserError

torch.set_num_threads(1)


def make_tiny_native(root: Path, places: int = 12, spacing_m: float = 30.0,
                     roles=(("a", "train"), ("b", "train"), ("v", "val"), ("t1", "test"), ("t2", "test")),
                     size=(64, 48)) -> Path:
    """A small native dataset written with the real writer: each place has its own
    image pattern and LiDAR layout; traversals differ by lighting, noise and a
    small position offset, so place recognition is learnable but not trivial."""
    w, h = size
    for t_idx, (name, role) in enumerate(roles):
        rng = np.random.default_rng(100 + t_idx)
        trav = root / "traversals" / name
        poses = np.zeros((places, 7))
        poses[:, 0] = np.arange(places) * spacing_m + rng.normal(0, 1.0, places)
        poses[:, 6] = 1.0
        for k in range(places):
            prng = np.random.default_rng(k)  # the place's appearance
            img = np.full((h, w, 3), prng.integers(40, 200, 3), np.uint8)
            for _ in range(4):
                x0, y0 = prng.integers(0, w - 8), prng.integers(0, h - 8)
                img[y0:y0 + prng.integers(4, h // 2), x0:x0 + prng.integers(4, w // 2)] = prng.integers(0, 255, 3)
            img = np.clip(img * rng.uniform(0.7, 1.3) + rng.normal(0, 8, img.shape), 0, 255).astype(np.uint8)
            buf = io.BytesIO()
            Image.fromarray(img).save(buf, format="PNG")
            centers = prng.uniform(-30, 30, (6, 2))
            pts = np.concatenate([np.c_[c + rng.normal(0, 1.0, (40, 2)), rng.uniform(0, 5, 40),
                                        np.full(40, 0.5)] for c in centers]).astype(np.float32)
            native.write_frame(trav, k, buf.getvalue(), pts)
        native.write_traversal(trav, name, role, {"time": "noon"}, poses,
                               np.arange(places, dtype=np.int64) * 10**9 + 1, poses.copy())
    native.write_dataset_json(root, {
        "seed": 0, "camera": {"width": w, "height": h}, "lidar": {"beams": 4},
        "traversals": [{"name": n, "role": r, "num_frames": places, "conditions": {}} for n, r in roles]})
    return root


def tiny_config(data_root: Path, run_root: Path, **extra: str) -> list[str]:
    """--set overrides that make the pipeline run in seconds on one CPU core."""
    sets = {"data.root": str(data_root), "data.input_size": "[64, 48]", "run.root": str(run_root),
            "run.device": "cpu", "run.threads": "1", "teacher.bev.cells": "16",
            "train_teacher.epochs": "1", "train_student.epochs": "1",
            "train_teacher.pairs_per_batch": "4", "train_student.pairs_per_batch": "4",
            "eval.batch_size": "16"}
    sets.update(extra)
    return [f"{k}={v}" for k, v in sets.items()]


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory) -> Path:
    return make_tiny_native(tmp_path_factory.mktemp("tiny"))


def _cfg(overrides):
    from distilvpr_core.train.pipeline import DistilRunConfig
    return load_config(DistilRunConfig, "config/distil_synth.yaml", overrides)


def test_full_pipeline_writes_everything_and_resumes(tiny_root, tmp_path, repo_root, monkeypatch):
    from distilvpr_core.models import load_student
    from distilvpr_core.train.pipeline import run_pipeline
    monkeypatch.chdir(repo_root)
    run = run_pipeline(_cfg(tiny_config(tiny_root, tmp_path)), ["test"])
    for name in ("config.yaml", "metrics.json", "teacher_best.pt", "teacher_cache.pt", "student_best.pt",
                 "teacher_metrics.json", "student_metrics.json", "eval.json", "teacher.done",
                 "student.done"):
        assert (run / name).is_file(), name
    assert any((run / "tb").iterdir())
    hist = json.loads((run / "student_metrics.json").read_text())
    assert len(hist) == 1 and np.isfinite(hist[0]["loss"]) and "val_R@1" in hist[0]
    assert "distill" in hist[0]  # the distillation term was really computed
    assert set(json.loads((run / "metrics.json").read_text())) == {"teacher", "student"}
    cache = torch.load(run / "teacher_cache.pt", weights_only=True)
    assert cache["embeddings"].shape == (24, 384)  # 2 train traversals x 12 frames, 256 + 128
    res = json.loads((run / "eval.json").read_text())
    assert res["test_traversals"] == ["t1", "t2"]
    for key in ("student", "teacher", "teacher_image"):
        assert res[key]["pairs"] == 2 and 0 <= res[key]["R@1"] <= 100
    model, mcfg = load_student(run / "student_best.pt")
    assert mcfg["dim"] == 384 and model(torch.zeros(1, 3, 48, 64)).shape == (1, 384)
    # Resume: one more student epoch continues from the saved state, teacher skipped.
    run2 = run_pipeline(_cfg(tiny_config(tiny_root, tmp_path, **{
        "run.resume": str(run), "train_student.epochs": "2", "run.stages": "[student]"})), ["test"])
    assert run2 == run
    # The student stage was marked done, so it is skipped; remove the marker to extend it.
    (run / "student.done").unlink()
    run_pipeline(_cfg(tiny_config(tiny_root, tmp_path, **{
        "run.resume": str(run), "train_student.epochs": "2", "run.stages": "[student]"})), ["test"])
    hist = json.loads((run / "student_metrics.json").read_text())
    assert [h["epoch"] for h in hist] == [0, 1]


def test_the_trainer_passes_its_step_to_the_distillation(tiny_root, tmp_path, repo_root, monkeypatch):
    """distill.cross_start_step beyond the run: the student saw the self-agent terms only."""
    from distilvpr_core.train.pipeline import run_pipeline
    monkeypatch.chdir(repo_root)
    run = run_pipeline(_cfg(tiny_config(tiny_root, tmp_path, **{
        "distill.cross_start_step": "1000", "run.stages": "[teacher, cache, student]"})), ["test"])
    row = json.loads((run / "student_metrics.json").read_text())[0]
    assert {"self_euclidean", "self_sphere", "self_poincare"} <= set(row)
    assert not [k for k in row if k.startswith("cross_")]


def test_same_seed_same_thread_count_gives_identical_models(tiny_root, tmp_path, repo_root, monkeypatch):
    """What README calls deterministic, checked on every test run: the same seed, machine and
    thread count give bit-identical weights and evaluation; another seed does not."""
    from distilvpr_core.train.pipeline import run_pipeline
    monkeypatch.chdir(repo_root)
    runs = {name: run_pipeline(_cfg(tiny_config(tiny_root, tmp_path / name, **{"run.seed": str(seed)})), ["test"])
            for name, seed in (("a", 3), ("b", 3), ("c", 4))}
    weights = {n: torch.load(r / "student_best.pt", weights_only=False)["state_dict"] for n, r in runs.items()}
    evals = {n: json.loads((r / "eval.json").read_text()) for n, r in runs.items()}
    for key in weights["a"]:
        assert torch.equal(weights["a"][key], weights["b"][key]), key
    assert any(not torch.equal(weights["a"][k], weights["c"][k]) for k in weights["a"])
    for model in ("student", "teacher", "teacher_image"):
        assert evals["a"][model] == evals["b"][model], model


def test_dim_mismatch_with_teacher_is_a_user_error(tiny_root, tmp_path, repo_root, monkeypatch):
    from distilvpr_core.train.pipeline import run_pipeline
    monkeypatch.chdir(repo_root)
    run = run_pipeline(_cfg(tiny_config(tiny_root, tmp_path, **{
        "run.stages": "[teacher, cache]", "train_teacher.max_batches": "1",
        "teacher.image_dim": "32", "teacher.lidar_dim": "16"})), ["test"])
    with pytest.raises(UserError, match="D=48.*student.dim is 384"):
        run_pipeline(_cfg(tiny_config(tiny_root, tmp_path, **{
            "run.resume": str(run), "run.stages": "[student]", "distill.method": "mse"})), ["test"])


def test_missing_dataset_and_camera_only_errors(tmp_path, repo_root, monkeypatch):
    from distilvpr_core.train.pipeline import check_config, run_pipeline
    monkeypatch.chdir(repo_root)
    with pytest.raises(UserError, match="no dataset.json"):
        run_pipeline(_cfg(tiny_config(tmp_path / "nowhere", tmp_path)), ["test"])

    class CameraOnly:
        name, role, has_lidar = "cam", "train", False
    cfg = _cfg(tiny_config(tmp_path, tmp_path))
    with pytest.raises(UserError, match="camera-only"):
        check_config(cfg, [CameraOnly()])


def test_nan_loss_stops_names_batch_and_saves_diagnostic(tiny_root, tmp_path, repo_root, monkeypatch):
    from distilvpr_core.train.pipeline import NonFiniteLoss, run_pipeline
    monkeypatch.chdir(repo_root)
    # An absurd learning rate makes the weights (and so the loss) overflow in a few steps.
    with pytest.raises(NonFiniteLoss, match=r"batch \d+ \(frames \[") as info:
        run_pipeline(_cfg(tiny_config(tiny_root, tmp_path, **{
            "run.stages": "[teacher]", "train_teacher.lr": "1.0e+30", "train_teacher.epochs": "3",
            "data.num_workers": "0"})), ["test"])
    diag = list(tmp_path.glob("*/nan_teacher_epoch*_batch*.pt"))
    assert len(diag) == 1 and str(diag[0]) in str(info.value)
    saved = torch.load(diag[0], weights_only=True)
    assert saved["frame_indices"].numel() == 8


@pytest.mark.slow
def test_torchrun_two_processes_share_the_epoch(tiny_root, tmp_path, repo_root):
    import os
    import subprocess
    import sys
    script = tmp_path / "ddp_run.py"
    script.write_text("import argparse, sys\nfrom distilvpr_core.train import cli as train\n"
                      "p = argparse.ArgumentParser(); train.add_arguments(p)\n"
                      "sys.exit(train.run(p.parse_args(sys.argv[1:])))\n")
    sets = tiny_config(tiny_root, tmp_path / "runs", **{"run.stages": "[teacher, cache, student]"})
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(script)] + [a for s in sets for a in ("--set", s)]
    env = dict(os.environ, PYTHONPATH=str(repo_root), OMP_NUM_THREADS="1")
    # Own session, so a hang is cleaned up with every worker torchrun started.
    proc = subprocess.Popen(cmd, cwd=repo_root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        _, err = proc.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        proc.communicate()
        raise
    assert proc.returncode == 0, err[-3000:]
    (run,) = (tmp_path / "runs").iterdir()
    single = len(PairBatchSamplerFor(tiny_root))
    hist = json.loads((run / "student_metrics.json").read_text())
    assert hist[0]["batches"] == single // 2  # each rank did half of the batches
    assert (run / "student_best.pt").is_file()


def PairBatchSamplerFor(root):  # noqa: N802 - the single-process sampler of the tiny set
    from distilvpr_core.data.datasets import FrameIndex, PairBatchSampler, select, DataConfig
    from distilvpr_core.data.traversals import open_traversals
    frames = FrameIndex(select(open_traversals(DataConfig(root=str(root))), "train"))
    return PairBatchSampler(frames, 4, 10.0)


@pytest.mark.gpu
def test_pipeline_on_cuda_with_amp(tiny_root, tmp_path, repo_root, monkeypatch):
    from distilvpr_core.train.pipeline import run_pipeline
    monkeypatch.chdir(repo_root)
    run = run_pipeline(_cfg(tiny_config(tiny_root, tmp_path, **{"run.device": "cuda", "run.amp": "true"})),
                       ["test"])
    res = json.loads((run / "eval.json").read_text())
    assert res["student"]["pairs"] == 2
    assert np.isfinite(json.loads((run / "student_metrics.json").read_text())[0]["loss"])
