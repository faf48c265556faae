"""What a deployable model file carries besides its weights (ONNX ``metadata_props``).

Keys (all string values):

    distilvpr.format       "distilvpr-student-onnx/1"
    distilvpr.preprocess   PreprocessContract JSON (contract.to_json())
    distilvpr.fingerprint  sha256 hex of the student state_dict (export/fingerprint.py)
    distilvpr.precision    "fp32" | "int8" (ONNX Runtime QDQ) -- same weights, other numerics

Reading needs only the ``onnx`` package or an ONNX Runtime session: no torch.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from ..foundation.errors import UserError
from ..foundation.contract import PreprocessContract

FORMAT_KEY = "distilvpr.format"
CONTRACT_KEY = "distilvpr.preprocess"
FINGERPRINT_KEY = "distilvpr.fingerprint"
PRECISION_KEY = "distilvpr.precision"
FORMAT_VALUE = "distilvpr-student-onnx/1"
PRECISIONS = ("fp32", "int8")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class ModelInfo:
    """The parsed metadata of one exported model."""
    contract: PreprocessContract
    fingerprint: str
    precision: str

    def to_props(self) -> dict[str, str]:
        """The ``metadata_props`` entries to store."""
        return {FORMAT_KEY: FORMAT_VALUE, CONTRACT_KEY: self.contract.to_json(),
                FINGERPRINT_KEY: self.fingerprint, PRECISION_KEY: self.precision}


def parse_props(props: Mapping[str, str], source: str) -> ModelInfo:
    """``metadata_props`` (key -> str) -> ModelInfo; UserError naming ``source`` if absent/bad."""
    if props.get(FORMAT_KEY) is None:
        raise UserError(f"{source}: no distilvpr metadata (key {FORMAT_KEY!r} missing); this ONNX "
                        "file was not written by 'distilvpr export' -- re-export it from the checkpoint "
                        "with 'distilvpr export --checkpoint CKPT --out MODEL.onnx'")
    if props[FORMAT_KEY] != FORMAT_VALUE:
        raise UserError(f"{source}: metadata format {props[FORMAT_KEY]!r}, this code reads "
                        f"{FORMAT_VALUE!r}; re-export the model with this version")
    for key in (CONTRACT_KEY, FINGERPRINT_KEY, PRECISION_KEY):
        if key not in props:
            raise UserError(f"{source}: metadata key {key!r} missing; re-export the model")
    contract = PreprocessContract.from_json(props[CONTRACT_KEY], source=f"{source}: {CONTRACT_KEY}")
    fp = props[FINGERPRINT_KEY]
    if not _HEX64.match(fp):
        raise UserError(f"{source}: {FINGERPRINT_KEY} must be 64 lowercase hex digits, got {fp!r}")
    if props[PRECISION_KEY] not in PRECISIONS:
        raise UserError(f"{source}: {PRECISION_KEY} must be one of {list(PRECISIONS)}, "
                        f"got {props[PRECISION_KEY]!r}")
    return ModelInfo(contract, fp, props[PRECISION_KEY])


def check_model_file(path: str | Path) -> Path:
    """Path of an existing, non-empty file or UserError naming it."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: model file not found")
    if path.stat().st_size == 0:
        raise UserError(f"{path}: model file is empty")
    return path


def load_onnx_proto(path: str | Path):  # -> onnx.ModelProto (onnx imported lazily)
    """Parse an ONNX file; a corrupt or truncated one raises UserError naming it."""
    import onnx
    from google.protobuf.message import DecodeError

    path = check_model_file(path)
    try:
        model = onnx.load(str(path), load_external_data=False)
    except (DecodeError, ValueError, RuntimeError, OSError) as exc:
        raise UserError(f"{path}: not a readable ONNX model (corrupt or truncated file?): {exc}") from None
    if not model.graph.node:
        raise UserError(f"{path}: ONNX model has an empty graph (corrupt or truncated file?)")
    return model


def read_model_info(path: str | Path) -> ModelInfo:
    """ModelInfo stored in the ONNX file at ``path`` (UserError if corrupt or missing metadata)."""
    model = load_onnx_proto(path)
    return parse_props({p.key: p.value for p in model.metadata_props}, str(path))
