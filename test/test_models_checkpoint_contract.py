"""Checkpoints carry the preprocessing contract once, and `distilvpr eval` uses it."""
from __future__ import annotations

import argparse
import json

import pytest
import torch

from distilvpr_core.evaluation import cli as eval_cmd
from distilvpr_core.data.datasets import DataConfig, select
from distilvpr_core.data.traversals import open_traversals
from distilvpr_core.foundation.errors import UserError
from distilvpr_core.evaluation.vpr import EvalConfig, evaluate_model
from distilvpr_core.foundation.contract import PreprocessContract
from distilvpr_core.models import StudentConfig, build_student, load_student, read_checkpoint, save_checkpoint
from distilvpr_core.models.checkpoint import checkpoint_contract
from test_train_pipeline import make_tiny_native

torch.set_num_threads(1)


def test_contract_is_stored_once_and_v1_files_are_upgraded(tmp_path):
    model = build_student(StudentConfig(dim=16))
    stretch = PreprocessContract(input_size=(40, 40), resize="stretch").to_dict()
    path = save_checkpoint(tmp_path / "s.pt", model, "student", StudentConfig(dim=16), (40, 40), preprocess=stretch)
    raw = torch.load(path, weights_only=True)
    assert "input_size" not in raw and raw["version"] == 2
    c = checkpoint_contract(read_checkpoint(path), path)
    assert (c.input_size, c.resize, c.descriptor_dim) == ((40, 40), "stretch", 16)
    with pytest.raises(ValueError, match="differs from the contract"):
        save_checkpoint(tmp_path / "x.pt", model, "student", StudentConfig(dim=16), (32, 32), preprocess=stretch)
    v1 = dict(raw, version=1, input_size=[48, 32])
    del v1["preprocess"]
    torch.save(v1, tmp_path / "v1.pt")
    c1 = checkpoint_contract(read_checkpoint(tmp_path / "v1.pt"), "v1")
    assert (c1.input_size, c1.resize) == ((48, 32), "center_crop")
    load_student(tmp_path / "v1.pt")
    torch.save(dict(v1, input_size=None), tmp_path / "bad.pt")
    with pytest.raises(UserError, match="bad.pt: version-1 checkpoint without a valid 'input_size'"):
        read_checkpoint(tmp_path / "bad.pt")


def test_eval_uses_the_checkpoints_resize_policy_not_the_data_config(tmp_path, capsys):
    data = make_tiny_native(tmp_path / "d", places=6)          # 64x48 frames
    torch.manual_seed(0)
    model = build_student(StudentConfig(dim=16)).eval()
    stretch = PreprocessContract(input_size=(32, 32), resize="stretch")
    ckpt = save_checkpoint(tmp_path / "s.pt", model, "student", StudentConfig(dim=16), (32, 32),
                           preprocess=stretch.to_dict())
    parser = argparse.ArgumentParser()
    eval_cmd.add_arguments(parser)
    out = tmp_path / "r.json"
    args = parser.parse_args(["--checkpoint", str(ckpt), "--output", str(out), "--set", f"data.root={data}",
                              "--set", "data.resize=center_crop", "--set", "data.input_size=[64, 48]"])
    assert eval_cmd.run(args) == 0
    assert "using the checkpoint's preprocessing [32, 32] stretch" in capsys.readouterr().out
    got = json.loads(out.read_text())
    tests = select(open_traversals(DataConfig(root=str(data))), "test")
    want = evaluate_model(model, "student", tests, DataConfig(root=str(data)), EvalConfig(),
                          torch.device("cpu"), contract=stretch)
    assert got["R@1"] == pytest.approx(want.r1, abs=1e-9)
    assert got["R@1%"] == pytest.approx(want.recall_1pct, abs=1e-9)
