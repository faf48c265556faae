"""What a deployable model file carries besides its weights (ONNX ``metadata_props``).

Keys (all string values):

    distilvpr.format       "distilvpr-student-onnx/1"
    distilvpr.preprocess   PreprocessContract JSON (contract.to_json())
    distilvpr.fingerprint  sha256 hex of the student state_dict (export/fingerprint.py)
    distilvpr.precision    "fp32" | "int8" (ONNX Runtime QDQ) -- same weights, other numerics
    distilvpr.weights_sha256  sha256 of the file itself with its metadata left out: the
                           graph and its weights (initializers), see :func:`weights_digest`

The fingerprint names the student (a map records it); ``weights_sha256`` is
recomputed from the file at every load and must match, so weights that carry
metadata copied from another model are refused (:func:`read_model_info`),
as are weights holding NaN/inf.  Reading needs only the ``onnx`` package: no torch.
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
WEIGHTS_KEY = "distilvpr.weights_sha256"
_WEIGHTS_TAG = b"distilvpr-onnx-weights-v1\n"
FORMAT_VALUE = "distilvpr-student-onnx/1"
PRECISIONS = ("fp32", "int8")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class ModelInfo:
    """The parsed metadata of one exported model."""
    contract: PreprocessContract
    fingerprint: str
    precision: str
    #: :func:`weights_digest` of the file ("" only for an object never written to a file).
    weights_sha256: str = ""

    def to_props(self) -> dict[str, str]:
        """The ``metadata_props`` entries to store."""
        props = {FORMAT_KEY: FORMAT_VALUE, CONTRACT_KEY: self.contract.to_json(),
                 FINGERPRINT_KEY: self.fingerprint, PRECISION_KEY: self.precision}
        if self.weights_sha256:
            props[WEIGHTS_KEY] = self.weights_sha256
        return props


def parse_props(props: Mapping[str, str], source: str) -> ModelInfo:
    """``metadata_props`` (key -> str) -> ModelInfo; UserError naming ``source`` if absent/bad."""
    if props.get(FORMAT_KEY) is None:
        raise UserError(f"{source}: no distilvpr metadata (key {FORMAT_KEY!r} missing); this ONNX "
                        "file was not written by 'distilvpr export' -- re-export it from the checkpoint "
                        "with 'distilvpr export --checkpoint CKPT --out MODEL.onnx'")
    if props[FORMAT_KEY] != FORMAT_VALUE:
        raise UserError(f"{source}: metadata format {props[FORMAT_KEY]!r}, this code reads "
                        f"{FORMAT_VALUE!r}; re-export the model with this version")
    for key in (CONTRACT_KEY, FINGERPRINT_KEY, PRECISION_KEY, WEIGHTS_KEY):
        if key not in props:
            raise UserError(f"{source}: metadata key {key!r} missing; re-export the model with "
                            "'distilvpr export' (files exported before it was added lack it)")
    contract = PreprocessContract.from_json(props[CONTRACT_KEY], source=f"{source}: {CONTRACT_KEY}")
    fp = props[FINGERPRINT_KEY]
    if not _HEX64.match(fp):
        raise UserError(f"{source}: {FINGERPRINT_KEY} must be 64 lowercase hex digits, got {fp!r}")
    if props[PRECISION_KEY] not in PRECISIONS:
        raise UserError(f"{source}: {PRECISION_KEY} must be one of {list(PRECISIONS)}, "
                        f"got {props[PRECISION_KEY]!r}")
    if not _HEX64.match(props[WEIGHTS_KEY]):
        raise UserError(f"{source}: {WEIGHTS_KEY} must be 64 lowercase hex digits, "
                        f"got {props[WEIGHTS_KEY][:80]!r}")
    return ModelInfo(contract, fp, props[PRECISION_KEY], props[WEIGHTS_KEY])


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


def weights_digest(model) -> str:  # model: onnx.ModelProto
    """sha256 hex of ``model`` serialised (deterministically) without its metadata and
    doc string: every initializer, constant and node of the graph, so other weights
    or another graph under the same metadata give another digest."""
    import hashlib

    bare = type(model)()
    bare.CopyFrom(model)
    del bare.metadata_props[:]
    bare.doc_string = ""
    return hashlib.sha256(_WEIGHTS_TAG + bare.SerializeToString(deterministic=True)).hexdigest()


def check_weights(model, info: ModelInfo, source: str) -> None:
    """UserError naming ``source`` unless the file's weights digest equals the metadata's
    (both named) and every floating-point initializer is finite."""
    import numpy as np
    from onnx import numpy_helper

    found = weights_digest(model)
    if found != info.weights_sha256:
        raise UserError(f"{source}: the weights do not match the metadata: they hash to {found}, "
                        f"the metadata records {WEIGHTS_KEY} {info.weights_sha256} (fingerprint "
                        f"{info.fingerprint}); the metadata was copied from another model or the file "
                        "was edited; re-export the model with 'distilvpr export'")
    for init in model.graph.initializer:
        arr = numpy_helper.to_array(init)
        if arr.dtype.kind == "f" and not np.isfinite(arr).all():
            raise UserError(f"{source}: weight {init.name!r} holds NaN or inf; the model is broken, "
                            "re-export it from a good checkpoint")


def read_model_info(path: str | Path) -> ModelInfo:
    """ModelInfo stored in the ONNX file at ``path``, its weights checked against it
    (:func:`check_weights`); UserError if corrupt, missing metadata or mismatched."""
    model = load_onnx_proto(path)
    info = parse_props({p.key: p.value for p in model.metadata_props}, str(path))
    check_weights(model, info, str(path))
    return info


def seal_model(model, info: ModelInfo) -> None:
    """Set ``model``'s metadata to ``info`` with ``weights_sha256`` computed from it."""
    import dataclasses

    del model.metadata_props[:]
    sealed = dataclasses.replace(info, weights_sha256=weights_digest(model))
    for key, value in sealed.to_props().items():
        model.metadata_props.add(key=key, value=value)
