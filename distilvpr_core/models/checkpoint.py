"""Model checkpoints: a plain dict saved with torch.save, read with weights_only=True.

Format (docs/contracts.md)::

    {"format": "distilvpr-checkpoint", "version": 2, "kind": "student" | "teacher",
     "model": <model config dict>, "state_dict": {...},
     "preprocess": <PreprocessContract.to_dict()>, "epoch": int, "metrics": {...}}

The preprocessing contract (input size, resize policy, interpolation,
normalisation) is stored once, in ``preprocess``; evaluation and export both
take it from there.  Version 1 files (``input_size`` [W, H] and an optional
``preprocess``) are read and upgraded in memory.  Only tensors, numbers,
strings, lists and dicts are stored, so loading never unpickles code.
Writes are atomic (serialised to memory, then renamed).
"""
from __future__ import annotations

import dataclasses
import io
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from torch import nn

from ..foundation.atomic import write_bytes_atomic
from ..foundation.config import ConfigError, load_config, to_dict
from ..foundation.errors import UserError
from ..foundation.contract import PreprocessContract
from .config import StudentConfig, TeacherConfig
from .student import Student
from .teacher import Teacher

FORMAT = "distilvpr-checkpoint"
VERSION = 2
_READABLE = (1, 2)
_CONFIGS = {"student": StudentConfig, "teacher": TeacherConfig}


def save_checkpoint(path: str | Path, model: nn.Module, kind: str, model_cfg: Any,
                    input_size: Sequence[int], epoch: int = 0,
                    metrics: Mapping[str, Any] | None = None,
                    preprocess: Mapping[str, Any] | None = None) -> Path:
    """Atomically write ``model``'s weights and config to ``path``.

    ``model_cfg`` is a StudentConfig/TeacherConfig (or its dict); ``input_size``
    is the model input [W, H] in pixels; ``metrics`` plain numbers/strings;
    ``preprocess`` the training preprocessing contract (``contract.to_dict()``),
    so evaluation and export use exactly the resize policy the model was
    trained with.  Without it the default contract at ``input_size`` is
    stored; with it, its input size must equal ``input_size``.
    """
    if kind not in _CONFIGS:
        raise ValueError(f"kind must be one of {sorted(_CONFIGS)}, got {kind!r}")
    cfg_dict = dict(model_cfg) if isinstance(model_cfg, Mapping) else to_dict(model_cfg)
    module = model.module if hasattr(model, "module") else model  # unwrap DDP
    size = (int(input_size[0]), int(input_size[1]))
    contract = PreprocessContract.from_dict(preprocess, source=str(path)) if preprocess is not None \
        else PreprocessContract(input_size=size, source=str(path))
    if contract.input_size != size:
        raise ValueError(f"input_size {list(size)} differs from the contract's {list(contract.input_size)}")
    dim = getattr(module, "dim", None)
    if isinstance(dim, int) and dim > 0 and dim != contract.descriptor_dim:
        contract = dataclasses.replace(contract, descriptor_dim=dim)
    state = {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}
    payload = {"format": FORMAT, "version": VERSION, "kind": kind, "model": cfg_dict,
               "state_dict": state, "preprocess": contract.to_dict(),
               "epoch": int(epoch), "metrics": dict(metrics or {})}
    buf = io.BytesIO()
    torch.save(payload, buf)
    return write_bytes_atomic(path, buf.getvalue())


def read_checkpoint(path: str | Path, kind: str | None = None) -> dict[str, Any]:
    """The checkpoint dict at ``path``, checked; UserError names what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: checkpoint file not found")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for a corrupt/foreign file
        raise UserError(f"{path}: not a readable distilvpr checkpoint ({exc})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise UserError(f"{path}: not a distilvpr checkpoint (missing format={FORMAT!r})")
    if ckpt.get("version") not in _READABLE:
        raise UserError(f"{path}: checkpoint version {ckpt.get('version')!r}, this code reads "
                        f"versions {list(_READABLE)}")
    if kind is not None and ckpt.get("kind") != kind:
        raise UserError(f"{path}: is a {ckpt.get('kind')!r} checkpoint, expected a {kind!r} one")
    if ckpt["version"] == 1:  # upgrade: the contract becomes the one place for the input size
        size = ckpt.pop("input_size", None)
        if "preprocess" not in ckpt:
            if not (isinstance(size, (list, tuple)) and len(size) == 2):
                raise UserError(f"{path}: version-1 checkpoint without a valid 'input_size' [W, H] "
                                f"(got {size!r}); re-save it with the training code")
            ckpt["preprocess"] = PreprocessContract(input_size=(int(size[0]), int(size[1]))).to_dict()
        ckpt["version"] = VERSION
    checkpoint_contract(ckpt, path)  # a bad contract is reported here, not at first use
    return ckpt


def checkpoint_contract(ckpt: Mapping[str, Any], path: str | Path) -> PreprocessContract:
    """The preprocessing contract a checkpoint (from :func:`read_checkpoint`) was trained with."""
    if "preprocess" not in ckpt:
        raise UserError(f"{path}: checkpoint has no 'preprocess' contract; re-save it with the training code")
    return PreprocessContract.from_dict(ckpt["preprocess"], source=f"{path}: preprocess")


def _model_config(ckpt: Mapping[str, Any], path: Path) -> StudentConfig | TeacherConfig:
    # Weights come from the state dict: never download or read backbone weights again.
    data = dict(ckpt["model"], pretrained="none")
    try:
        return load_config(_CONFIGS[ckpt["kind"]], data=data)
    except ConfigError as exc:
        raise UserError(f"{path}: bad model config in checkpoint: {exc}") from None


def _load(path: str | Path, kind: str) -> tuple[nn.Module, dict[str, Any], dict[str, Any]]:
    path = Path(path)
    ckpt = read_checkpoint(path, kind)
    cfg = _model_config(ckpt, path)
    model: nn.Module = Student(cfg) if kind == "student" else Teacher(cfg)
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as exc:
        raise UserError(f"{path}: weights do not match the stored {kind} config ({exc})") from None
    return model.eval(), dict(ckpt["model"]), ckpt


def load_student(path: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """(student in eval mode on CPU, model config dict) from a student checkpoint."""
    model, cfg, _ = _load(path, "student")
    return model, cfg


def load_teacher(path: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """(teacher in eval mode on CPU, model config dict) from a teacher checkpoint."""
    model, cfg, _ = _load(path, "teacher")
    return model, cfg
