"""TensorRT engine cache: one engine per (model, TensorRT, GPU, precision, shapes, calibration).

Isaac ROS keys its engine on the file path and rebuilds on every launch by
default; here the key is everything that makes an engine valid::

    sha256(onnx bytes) + TensorRT version + GPU name + compute capability
    + precision + input H x W + batch (min, opt, max) + calibration digest (int8)

Each engine ``<stem>-<precision>-<digest[:20]>.engine`` has a sidecar
``.json`` holding the full key, the engine's sha256 and the model's metadata.
Lookup serves an engine only if the sidecar's key equals the requested one and
the engine bytes hash to the recorded sha256: a stale, foreign or corrupt
file is rebuilt, never served.  The engine is written first and the sidecar
last, both atomically, so the sidecar is the commit marker.  An unwritable
cache directory is an error at construction, not a silent rebuild every run.

Pure Python: the facts about TensorRT and the GPU are passed in (``GpuFacts``),
so all of this is tested without TensorRT; ``trt_build.current_facts()``
queries the real ones.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

from ..atomic import write_bytes_atomic, write_text_atomic
from ..errors import UserError

ENGINE_FORMAT = "distilvpr-trt-engine/1"
PRECISIONS = ("fp32", "fp16", "int8")


@dataclass(frozen=True)
class GpuFacts:
    """The build machine: TensorRT version, GPU name, compute capability (major, minor)."""
    trt_version: str
    gpu_name: str
    compute_capability: tuple[int, int]

    def describe(self) -> str:
        cc = ".".join(map(str, self.compute_capability))
        return f"TensorRT {self.trt_version} on {self.gpu_name!r} (compute {cc})"


@dataclass(frozen=True)
class EngineSpec:
    """What is asked for: model bytes, precision, input H x W, batch (min, opt, max), int8 calibration."""
    onnx_sha256: str
    precision: str
    input_hw: tuple[int, int]
    batch: tuple[int, int, int] = (1, 1, 8)
    calib_digest: str = ""

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise UserError(f"precision: must be one of {list(PRECISIONS)}, got {self.precision!r}")
        lo, opt, hi = self.batch
        if not 1 <= lo <= opt <= hi:
            raise UserError(f"batch (min, opt, max) must satisfy 1 <= min <= opt <= max, got {self.batch}")
        if self.precision == "int8" and not self.calib_digest:
            raise UserError("precision int8 needs calibration data (--calib DIR or a dataset traversal)")
        if self.precision != "int8" and self.calib_digest:
            object.__setattr__(self, "calib_digest", "")  # calibration cannot change an fp engine


@dataclass(frozen=True)
class EngineKey:
    spec: EngineSpec
    facts: GpuFacts

    def to_dict(self) -> dict[str, Any]:
        d = {**asdict(self.spec), **asdict(self.facts)}
        return json.loads(json.dumps(d))  # tuples -> lists, as read back from JSON

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def check_engine_facts(meta: dict[str, Any], facts: GpuFacts, engine_path: Path) -> None:
    """UserError naming both sides if an engine's sidecar says it was built elsewhere."""
    built = GpuFacts(str(meta.get("trt_version")), str(meta.get("gpu_name")),
                     tuple(meta.get("compute_capability") or ()))  # type: ignore[arg-type]
    if built != facts:
        raise UserError(f"{engine_path}: engine was built for {built.describe()}, this machine has "
                        f"{facts.describe()}; engines are not portable -- rebuild it from the ONNX "
                        "model with 'distilvpr build-engine'")


def read_sidecar(engine_path: Path) -> dict[str, Any]:
    """The sidecar JSON of ``engine_path``; UserError if absent or unreadable."""
    meta_path = engine_path.with_suffix(".json")
    try:
        meta = json.loads(meta_path.read_text())
    except FileNotFoundError:
        raise UserError(f"{engine_path}: no sidecar {meta_path.name}; an engine without it cannot be "
                        "checked against this GPU/TensorRT -- rebuild it with 'distilvpr build-engine'") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"{meta_path}: unreadable engine sidecar ({exc}); rebuild the engine") from None
    if not isinstance(meta, dict) or meta.get("format") != ENGINE_FORMAT:
        raise UserError(f"{meta_path}: not a {ENGINE_FORMAT} sidecar; rebuild the engine")
    return meta


class EngineCache:
    """A directory of engines + sidecars; see the module docstring."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser()
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            # Probe with a real write: os.access lies on read-only mounts and for root.
            fd, probe = tempfile.mkstemp(prefix=".write-probe-", dir=self.root)
            os.close(fd)
            os.unlink(probe)
        except OSError as exc:
            raise UserError(f"{self.root}: engine cache directory is not writable ({exc.strerror}); "
                            "pass a writable cache directory (cache_dir / --cache-dir)") from None

    def paths(self, key: EngineKey, stem: str = "model") -> tuple[Path, Path]:
        """(engine file, sidecar) for ``key``."""
        name = f"{stem}-{key.spec.precision}-{key.digest()[:20]}"
        return self.root / f"{name}.engine", self.root / f"{name}.json"

    def lookup(self, key: EngineKey, stem: str = "model") -> tuple[Path | None, str]:
        """(engine path, "hit") if a valid engine for ``key`` exists, else (None, why not)."""
        engine, meta_path = self.paths(key, stem)
        if not engine.is_file() or not meta_path.is_file():
            return None, "not built yet"
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, json.JSONDecodeError):
            return None, f"sidecar {meta_path.name} unreadable"
        if meta.get("format") != ENGINE_FORMAT or meta.get("key") != key.to_dict():
            return None, f"sidecar {meta_path.name} has another key (stale)"
        if engine.stat().st_size != meta.get("engine_size") or sha256_file(engine) != meta.get("engine_sha256"):
            return None, f"{engine.name} does not match its recorded sha256 (corrupt or replaced)"
        return engine, "hit"

    def store(self, key: EngineKey, engine_bytes: bytes, stem: str = "model",
              extra: dict[str, Any] | None = None) -> Path:
        """Write engine then sidecar atomically; UserError naming the file if the write fails."""
        engine, meta_path = self.paths(key, stem)
        meta = {"format": ENGINE_FORMAT, "key": key.to_dict(), "key_digest": key.digest(),
                "engine_sha256": hashlib.sha256(engine_bytes).hexdigest(),
                "engine_size": len(engine_bytes), **(extra or {})}
        # Facts at top level too, so check_engine_facts works on a copied engine.
        meta.update({k: meta["key"][k] for k in ("trt_version", "gpu_name", "compute_capability")})
        try:
            write_bytes_atomic(engine, engine_bytes)
            write_text_atomic(meta_path, json.dumps(meta, indent=2, sort_keys=True) + "\n")
        except OSError as exc:
            raise UserError(f"{engine}: cannot write the engine to the cache ({exc.strerror}); "
                            "free space or pass another cache directory") from None
        return engine

    def get_or_build(self, key: EngineKey, build: Callable[[], bytes], stem: str = "model",
                     extra: dict[str, Any] | None = None) -> tuple[Path, bool, str]:
        """(engine path, built now?, reason): reuse a valid engine, else ``build()`` and store it."""
        path, why = self.lookup(key, stem)
        if path is not None:
            return path, False, why
        return self.store(key, build(), stem, extra), True, why
