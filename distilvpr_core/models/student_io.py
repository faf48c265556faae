"""Load a student checkpoint together with its preprocessing contract and fingerprint.

The checkpoint format is the one in docs/contracts.md; the model itself comes
from ``models.checkpoint.load_student``.  The contract is the checkpoint's
``"preprocess"`` dict when training stored one, else the defaults with the
checkpoint's ``input_size`` [W, H] and the model's descriptor size.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import torch

from ..foundation.errors import UserError
from ..foundation.contract import PreprocessContract
from .fingerprint import module_fingerprint


@dataclass
class LoadedStudent:
    """A student in eval mode (fp32, CPU) with what deployment needs to know about it."""
    model: torch.nn.Module
    contract: PreprocessContract
    fingerprint: str
    path: Path


def contract_from_checkpoint(ckpt: dict, dim: int, source: str) -> PreprocessContract:
    """The preprocessing contract of a checkpoint dict (see module docstring)."""
    if "preprocess" in ckpt:
        contract = PreprocessContract.from_dict(ckpt["preprocess"], source=f"{source}: preprocess")
    else:
        size = ckpt.get("input_size")
        if not (isinstance(size, (list, tuple)) and len(size) == 2):
            raise UserError(f"{source}: checkpoint has no valid 'input_size' [W, H] (got {size!r}); "
                            "re-save it with the training code")
        contract = PreprocessContract(input_size=(int(size[0]), int(size[1])), descriptor_dim=dim,
                                      source=source)
    if contract.descriptor_dim != dim:
        contract = replace(contract, descriptor_dim=dim)
    return contract


def load_student_checkpoint(path: str | Path) -> LoadedStudent:
    """Student + contract + fingerprint of the checkpoint at ``path`` (UserError if unusable)."""
    from .checkpoint import load_student, read_checkpoint

    path = Path(path)
    model, _model_cfg = load_student(path)  # validates the file, raises UserError
    ckpt = read_checkpoint(path, "student")
    model = model.float().cpu().eval()
    dim = int(getattr(model, "dim", 0) or ckpt.get("model", {}).get("dim", 0))
    if dim <= 0:
        raise UserError(f"{path}: cannot tell the descriptor size (no model.dim)")
    return LoadedStudent(model, contract_from_checkpoint(ckpt, dim, str(path)),
                         module_fingerprint(model), path)
