"""Typed config: typos, wrong types and ranges fail naming the file and key."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Optional

import pytest

from distilvpr_core.foundation.config import ConfigError, dump_yaml, load_config, spec, to_dict
from distilvpr_core.train.rundir import create_run_dir


@dataclass
class OptimConfig:
    lr: float = field(default=1e-3, metadata=spec("learning rate", gt=0))
    milestones: list[int] = field(default_factory=lambda: [10, 20])


@dataclass
class TrainConfig:
    epochs: int = field(default=10, metadata=spec("passes over the data", ge=1))
    backbone: str = field(default="resnet18", metadata=spec("image backbone", choices=["resnet18", "resnet34"]))
    device: Literal["cpu", "cuda"] = "cpu"
    pretrained: Optional[str] = None
    optim: OptimConfig = field(default_factory=OptimConfig)


@dataclass
class Root:
    train: TrainConfig = field(default_factory=TrainConfig)
    seed: int = 0


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cfg.yaml"
    path.write_text(text)
    return path


def test_loads_nested_values_and_defaults(tmp_path: Path) -> None:
    path = write(tmp_path, "train:\n  epochs: 3\n  optim:\n    lr: 0.01\nseed: 7\n")
    cfg = load_config(Root, path)
    assert cfg.train.epochs == 3 and cfg.train.optim.lr == 0.01 and cfg.seed == 7
    assert cfg.train.optim.milestones == [10, 20] and cfg.train.backbone == "resnet18"
    assert "epochs: 3" in dump_yaml(cfg)


def test_typo_key_names_file_and_key_path(tmp_path: Path) -> None:
    path = write(tmp_path, "train:\n  epoch: 3\n")
    with pytest.raises(ConfigError) as err:
        load_config(Root, path)
    msg = str(err.value)
    assert str(path) in msg and "train.epoch" in msg and "epochs" in msg  # lists valid keys


@pytest.mark.parametrize("text, key, expected", [
    ("train:\n  epochs: three\n", "train.epochs", "integer"),
    ("train:\n  epochs: 0\n", "train.epochs", ">= 1"),
    ("train:\n  epochs: true\n", "train.epochs", "integer"),
    ("train:\n  optim:\n    lr: -1\n", "train.optim.lr", "> 0"),
    ("train:\n  backbone: vgg\n", "train.backbone", "resnet34"),
    ("train:\n  device: tpu\n", "train.device", "cuda"),
    ("train:\n  optim:\n    milestones: [1, x]\n", "train.optim.milestones[1]", "integer"),
    ("train: 5\n", "train", "mapping"),
])
def test_wrong_type_or_range_is_named(tmp_path: Path, text: str, key: str, expected: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_config(Root, path)
    assert key in str(err.value) and expected in str(err.value) and str(path) in str(err.value)


def test_overrides_are_typed_and_checked(tmp_path: Path) -> None:
    path = write(tmp_path, "train:\n  epochs: 3\n")
    cfg = load_config(Root, path, overrides=["train.epochs=5", "train.pretrained=/x.pt"])
    assert cfg.train.epochs == 5 and cfg.train.pretrained == "/x.pt"
    with pytest.raises(ConfigError, match="train.epochs"):
        load_config(Root, path, overrides=["train.epochs=-2"])
    with pytest.raises(ConfigError, match="KEY.PATH=VALUE"):
        load_config(Root, path, overrides=["train.epochs"])
    with pytest.raises(ConfigError, match="train.epocs"):
        load_config(Root, path, overrides=["train.epocs=2"])


def test_missing_or_broken_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(Root, tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(Root, write(tmp_path, "train: [\n"))


def test_run_dir_records_config_argv_versions_commit(tmp_path: Path) -> None:
    cfg = load_config(Root, data={"seed": 3})
    run = create_run_dir(tmp_path, "unit", cfg, argv=["distilvpr", "distil", "--set", "seed=3"])
    assert load_config(Root, run / "config.yaml") == cfg
    assert (run / "argv.txt").read_text().split() == ["distilvpr", "distil", "--set", "seed=3"]
    assert '"numpy"' in (run / "versions.json").read_text()
    assert (run / "git.txt").read_text().strip()
    assert to_dict(cfg)["train"]["optim"]["milestones"] == [10, 20]
