"""The ``eval`` subcommand on a real checkpoint and a tiny native dataset."""
from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import torch

from distilvpr_core.evaluation import cli as eval_cmd
from distilvpr_core.data import native
from distilvpr_core.foundation.errors import UserError
from distilvpr_core.foundation.contract import PreprocessContract
from distilvpr_core.foundation.preprocess import preprocess
from distilvpr_core.models import (BevConfig, StudentConfig, TeacherConfig, build_student, build_teacher,
                                   save_checkpoint)
from distilvpr_core.evaluation.recall import evaluate_runs
from test_train_pipeline import make_tiny_native

torch.set_num_threads(1)


def _args(*argv):
    parser = argparse.ArgumentParser()
    eval_cmd.add_arguments(parser)
    return parser.parse_args(list(argv))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_tiny_native(tmp_path_factory.mktemp("evaldata"), places=8)


def test_eval_student_matches_protocol_computed_by_hand(data, tmp_path, capsys, repo_root, monkeypatch):
    monkeypatch.chdir(repo_root)
    torch.manual_seed(0)
    cfg = StudentConfig(dim=32)
    model = build_student(cfg).eval()
    ckpt = save_checkpoint(tmp_path / "s.pt", model, "student", cfg, (64, 48))
    out = tmp_path / "r.json"
    # The training config is accepted as is (its other sections are ignored).
    assert eval_cmd.run(_args("--checkpoint", str(ckpt), "--output", str(out), "--config",
                              "config/distil_synth.yaml",
                              "--set", f"data.root={data}", "--set", "eval.top_k=5")) == 0
    got = json.loads(out.read_text())
    assert got["traversals"] == ["t1", "t2"] and got["branch"] == "student" and got["pairs"] == 2
    assert "R@1 " in capsys.readouterr().out
    # The same numbers through an independent path: raw reader + deployed preprocessing.
    ds = native.open_dataset(data)
    contract = PreprocessContract(input_size=(64, 48))
    descs, pos = [], []
    for name in ("t1", "t2"):
        trav = ds.traversal(name)
        x = preprocess([trav.load_image(i) for i in range(len(trav))], contract)
        with torch.no_grad():
            descs.append(model(torch.from_numpy(x)).numpy())
        pos.append(trav.poses[:, :2])
    want = evaluate_runs(descs, pos, top_k=5)
    assert got["R@1"] == pytest.approx(want.r1, abs=1e-4)
    assert got["R@1%"] == pytest.approx(want.recall_1pct, abs=1e-4)
    by_pair = got["R@1 by pair"]
    assert list(by_pair) == ["t1->t2", "t2->t1"]
    assert [by_pair[k] for k in by_pair] == pytest.approx([r for _, _, r in want.pair_r1], abs=1e-4)


def test_eval_teacher_branches_and_errors(data, tmp_path):
    cfg = TeacherConfig(image_dim=16, lidar_dim=8, bev=BevConfig(cells=16))
    ckpt = save_checkpoint(tmp_path / "t.pt", build_teacher(cfg), "teacher", cfg, (64, 48))
    for branch in ("auto", "teacher_image"):
        out = tmp_path / f"{branch}.json"
        assert eval_cmd.run(_args("--checkpoint", str(ckpt), "--branch", branch, "--output", str(out),
                                  "--set", f"data.root={data}")) == 0
        assert json.loads(out.read_text())["pairs"] == 2
    with pytest.raises(UserError, match="does not fit a teacher checkpoint"):
        eval_cmd.run(_args("--checkpoint", str(ckpt), "--branch", "student", "--set", f"data.root={data}"))
    with pytest.raises(UserError, match=">= 2 traversals with role 'val'"):
        eval_cmd.run(_args("--checkpoint", str(ckpt), "--role", "val", "--set", f"data.root={data}"))
    with pytest.raises(UserError, match="checkpoint file not found"):
        eval_cmd.run(_args("--checkpoint", str(tmp_path / "none.pt"), "--set", f"data.root={data}"))
    assert np.isfinite(json.loads((tmp_path / "auto.json").read_text())["R@1"])
