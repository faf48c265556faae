"""Model fingerprint: sha256 over a student ``state_dict`` in a canonical order.

The same weights give the same fingerprint whether they sit in a checkpoint,
a live ``nn.Module`` or (copied into metadata at export) an ONNX file, so a
prior map can refuse descriptors from another model.  Canonical form (v1)::

    sha256( b"distilvpr-state-dict-v1\\n"
            + for each key in sorted(state_dict) (Python str order):
                  f"{key}\\t{dtype}\\t{shape}\\n" as UTF-8   e.g. "proj.bias\\ttorch.float32\\t[384]\\n"
                  + the tensor's raw bytes, C-contiguous, little-endian, on CPU )

Every entry counts, buffers included (BatchNorm running stats change the
output; ``num_batches_tracked`` is included too because it is part of the
state_dict the checkpoint stores).  Casting a model to fp16 for inference
changes its bytes, so fingerprint the fp32 state_dict before casting.
"""
from __future__ import annotations

import hashlib
import sys
from typing import Mapping

import torch

FINGERPRINT_TAG = b"distilvpr-state-dict-v1\n"


def state_dict_fingerprint(state_dict: Mapping[str, torch.Tensor]) -> str:
    """sha256 hex digest (64 chars) of ``state_dict`` in the canonical form above."""
    assert sys.byteorder == "little", "canonical form is little-endian; add a byteswap for this host"
    h = hashlib.sha256(FINGERPRINT_TAG)
    for key in sorted(state_dict):
        t = state_dict[key]
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"state_dict[{key!r}] is {type(t).__name__}, not a tensor")
        t = t.detach().to("cpu").contiguous()
        h.update(f"{key}\t{t.dtype}\t{list(t.shape)}\n".encode("utf-8"))
        # Viewing as bytes works for every dtype (bf16 has no numpy twin).
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def module_fingerprint(module: torch.nn.Module) -> str:
    """Fingerprint of ``module.state_dict()``."""
    return state_dict_fingerprint(module.state_dict())
