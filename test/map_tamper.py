"""Helpers that edit a saved map the way an attacker with a text editor would:
change a file, then recompute its checksum and the schema digest, so that
only the semantic checks at load can catch the edit."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import numpy as np

from distilvpr_core.infer import PreprocessContract
from distilvpr_core.mapdb import PriorMap
from distilvpr_core.mapdb.schema import file_entry, seal
from distilvpr_core.mapdb.storage import save_npy

D = 8
FP = "a" * 64
CONTRACT = PreprocessContract(input_size=(64, 48), descriptor_dim=D).to_dict()


def build(path: Path, n: int = 6, index: str = "flat", features: bool = False,
          index_params: dict | None = None, seed: int = 0) -> Path:
    """A small valid map at ``path`` (flat unless ``index``), with ORB features if asked."""
    m = PriorMap.create(D, FP, CONTRACT, index=index, index_params=index_params)
    x = np.random.default_rng(seed).standard_normal((n, D)).astype(np.float32)
    poses = np.column_stack([np.arange(n * 3).reshape(n, 3), np.zeros((n, 3)), np.ones(n)])
    m.add(x, np.arange(n) * 10**9, poses, "trav", np.arange(n))
    if features:
        from distilvpr_core.features.types import Features, Intrinsics
        from distilvpr_core.mapdb.features import FeatureStore
        store = FeatureStore(Intrinsics(80.0, 80.0, 79.5, 59.5, 160, 120), 8)
        for i in range(n):
            kp = np.random.default_rng(i).uniform(0, 100, (6, 2)).astype(np.float32)
            store.append(Features(kp, np.zeros((6, 32), np.uint8)))
        m.attach_features(store)
    return m.save(path)


def schema(path: Path) -> dict:
    return json.loads((path / "schema.json").read_text())


def reseal_schema(path: Path, edit: Callable[[dict], Any] | None = None) -> None:
    """Apply ``edit`` to schema.json, recompute every file entry and the digest."""
    data = schema(path)
    if edit is not None:
        edit(data)
    for name in data["files"]:
        if (path / name).is_file() and not (path / name).is_symlink():
            e = file_entry(path / name)
            data["files"][name] = {"sha256": e.sha256, "bytes": e.bytes}
    (path / "schema.json").write_text(json.dumps(seal(data), indent=2))


def rewrite(path: Path, name: str, arr: np.ndarray) -> None:
    """Replace ``name`` with ``arr`` and reseal the map."""
    save_npy(path / name, arr)
    reseal_schema(path)


def write_raw(path: Path, name: str, raw: bytes) -> None:
    """Replace ``name`` with raw bytes (a truncated or garbage file) and reseal."""
    (path / name).write_bytes(raw)
    reseal_schema(path)
