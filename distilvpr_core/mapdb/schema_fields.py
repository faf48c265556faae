"""Strict field checks of ``schema.json`` (used by :mod:`.schema`).

Each raises UserError naming the file and the key path (``files.ids.npy.bytes``)
of the first value that is missing, unknown or of the wrong type.
"""
from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

from ..foundation.errors import UserError


@dataclasses.dataclass(frozen=True)
class FileEntry:
    """Size (bytes) and sha256 hex digest of one file of a map directory."""

    sha256: str
    bytes: int

_SHA256 = re.compile(r"[0-9a-f]{64}")


def _keys(obj: Any, where: str, prefix: str, required: tuple[str, ...],
          allowed: set[str] | None = None) -> dict[str, Any]:
    """``obj`` as a dict holding every ``required`` key and nothing beyond ``allowed``."""
    if not isinstance(obj, dict):
        raise UserError(f"{where}: {prefix.rstrip('.') or 'schema'} must be a JSON object, "
                        f"got {obj!r:.80}; the map is damaged, rebuild it")
    allowed = set(required) if allowed is None else allowed
    for key in required:
        if key not in obj:
            raise UserError(f"{where}: missing key {prefix}{key}; schema.json is damaged "
                            "(or not written by distilvpr), rebuild the map")
    for key in obj:
        if key not in allowed:
            raise UserError(f"{where}: unknown key {prefix}{key!s:.80}; schema.json is damaged "
                            f"(or not written by distilvpr); known keys: {sorted(allowed)}")
    return obj


def _int(value: Any, where: str, key: str, lo: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < lo:
        raise UserError(f"{where}: {key} must be an integer >= {lo}, got {value!r:.80}")
    return value


def _str(value: Any, where: str, key: str) -> str:
    if not isinstance(value, str):
        raise UserError(f"{where}: {key} must be a string, got {value!r:.80}")
    return value


def _obj(value: Any, where: str, key: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise UserError(f"{where}: {key} must be a JSON object, got {value!r:.80}")
    return dict(value)


def _preprocessing(value: Any, where: str) -> dict[str, Any]:
    """The map's preprocessing contract; a full contract (it has ``format``)
    is validated key by key by PreprocessContract itself."""
    out = _obj(value, where, "preprocessing")
    if "format" in out:
        from ..foundation.contract import PreprocessContract
        PreprocessContract.from_dict(out, source=f"{where}: preprocessing")
    return out


def _files(value: Any, where: str) -> dict[str, Any]:
    out = {}
    for name, entry in _obj(value, where, "files").items():
        if not name or name != Path(name).name or name.startswith("."):
            raise UserError(f"{where}: files lists {name!r:.80}, which is not a plain file name "
                            "in the map directory; schema.json is damaged, rebuild the map")
        e = _keys(entry, where, f"files.{name}.", ("sha256", "bytes"))
        if not isinstance(e["sha256"], str) or not _SHA256.fullmatch(e["sha256"]):
            raise UserError(f"{where}: files.{name}.sha256 must be 64 lowercase hex digits, "
                            f"got {e['sha256']!r:.80}; schema.json is damaged")
        out[name] = FileEntry(sha256=e["sha256"], bytes=_int(e["bytes"], where, f"files.{name}.bytes"))
    return out
