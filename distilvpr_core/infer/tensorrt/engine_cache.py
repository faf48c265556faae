"""TensorRT engine cache: one engine per (model, TensorRT, GPU, precision, shapes, calibration, recipe).

Isaac ROS keys its engine on the file path and rebuilds on every launch by
default; here the key is everything that makes an engine valid::

    sha256(onnx bytes) + TensorRT version + GPU name + compute capability
    + SM count + total memory (Orin modules of different size share name and CC)
    + precision + input H x W + batch (min, opt, max) + calibration digest (int8)
    + build recipe (recipe version, workspace, TF32, fp32 pooling, calibration batch)

Each engine ``<stem>-<precision>-<digest[:20]>.engine`` has a sidecar
``.json`` holding the full key, the engine's sha256 and the model's metadata.
Lookup serves an engine only if the sidecar's key equals the requested one and
the engine bytes hash to the recorded sha256: a stale, foreign or corrupt
file is rebuilt, never served.  The engine is written first and the sidecar
last, both atomically, so the sidecar is the commit marker.  An unwritable
cache directory is an error at construction, not a silent rebuild every run.
Builders of one key serialise on a per-key ``flock`` (``locks/<name>.lock``)
and look up again once they hold it, so two nodes (or a node and
``build-engine``) never build the same engine twice or interleave renames.
``prune`` deletes entries no request can reach any more (older recipe, other
TensorRT/GPU, a replaced ONNX at the recorded path).

Pure Python: the facts about TensorRT and the GPU are passed in (``GpuFacts``),
so all of this is tested without TensorRT; ``trt_build.current_facts()``
queries the real ones.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Iterator

from ...foundation.atomic import write_bytes_atomic, write_text_atomic
from ...foundation.errors import UserError
from .engine_key import RECIPE_VERSION, EngineKey, GpuFacts

ENGINE_FORMAT = "distilvpr-trt-engine/1"
ORPHAN_AGE_S = 3600.0  # an engine without sidecar this old is no build in flight


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of the file at ``path``, read in ``chunk``-byte blocks (1 MiB by default)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def check_engine_facts(meta: dict[str, Any], facts: GpuFacts, engine_path: Path) -> None:
    """UserError naming both sides if an engine's sidecar says it was built elsewhere."""
    built = GpuFacts(str(meta.get("trt_version")), str(meta.get("gpu_name")),
                     tuple(meta.get("compute_capability") or ()),  # type: ignore[arg-type]
                     int(meta.get("sm_count") or 0), int(meta.get("total_memory_mib") or 0))
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

    def lookup(self, key: EngineKey, stem: str = "model", reject: str | None = None) -> tuple[Path | None, str]:
        """(engine path, "hit") if a valid engine for ``key`` exists, else (None, why not).

        ``reject``: sha256 of engine bytes known to be unusable here (TensorRT
        could not deserialise them); an entry holding exactly those is a miss.
        """
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
        if reject is not None and meta.get("engine_sha256") == reject:
            return None, f"{engine.name} does not deserialise with this TensorRT (replaced by a rebuild)"
        return engine, "hit"

    def store(self, key: EngineKey, engine_bytes: bytes, stem: str = "model",
              extra: dict[str, Any] | None = None) -> Path:
        """Write engine then sidecar atomically; UserError naming the file if the write fails."""
        engine, meta_path = self.paths(key, stem)
        meta = {"format": ENGINE_FORMAT, "key": key.to_dict(), "key_digest": key.digest(),
                "engine_sha256": hashlib.sha256(engine_bytes).hexdigest(),
                "engine_size": len(engine_bytes), **(extra or {})}
        # Facts at top level too, so check_engine_facts works on a copied engine.
        meta.update({k: meta["key"][k] for k in ("trt_version", "gpu_name", "compute_capability",
                                                  "sm_count", "total_memory_mib")})
        try:
            write_bytes_atomic(engine, engine_bytes)
            write_text_atomic(meta_path, json.dumps(meta, indent=2, sort_keys=True) + "\n")
        except OSError as exc:
            raise UserError(f"{engine}: cannot write the engine to the cache ({exc.strerror}); "
                            "free space or pass another cache directory") from None
        return engine

    @contextlib.contextmanager
    def lock(self, name: str, blocking: bool = True) -> Iterator[bool]:
        """Exclusive cross-process lock for cache entry ``name``; yields whether it is held.

        ``flock`` on ``locks/<name>.lock``: released by the kernel when the
        holder dies, so a killed build never wedges the cache.  Lock files are
        kept (deleting them would race with a waiter).
        """
        d = self.root / "locks"
        d.mkdir(exist_ok=True)
        fd = os.open(d / f"{name}.lock", os.O_RDWR | os.O_CREAT, 0o666)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
            except BlockingIOError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def get_or_build(self, key: EngineKey, build: Callable[[], bytes], stem: str = "model",
                     extra: dict[str, Any] | None = None, reject: str | None = None) -> tuple[Path, bool, str]:
        """(engine path, built now?, reason): reuse a valid engine, else ``build()`` and store it.

        The build runs under the key's lock; whoever waited for it looks up
        again and reuses what the other process built.  ``reject`` (see
        ``lookup``) rebuilds an entry whose engine does not deserialise; the
        new engine replaces it atomically, and a process that finds it already
        replaced by another one's rebuild reuses that.
        """
        path, why = self.lookup(key, stem, reject)
        if path is not None:
            return path, False, why
        with self.lock(self.paths(key, stem)[0].stem):
            path, _ = self.lookup(key, stem, reject)
            if path is not None:
                return path, False, "hit (built by another process while this one waited)"
            return self.store(key, build(), stem, extra), True, why

    def prune(self, facts: GpuFacts, models: dict[str, str] | None = None) -> list[Path]:
        """Delete entries no request on this machine can reach any more; returns the deleted files.

        Unreachable: a sidecar of another format or recipe version; one built
        by another TensorRT version on this very GPU (``facts``: this machine;
        engines of other GPUs stay, a cache directory may be shared); or one whose recorded ONNX
        path is in ``models`` (resolved path -> current sha256) with another
        sha256 (the model was replaced in place).  Also engines without a
        sidecar older than an hour (a live build writes its sidecar within
        seconds of the engine) and calibration tables without an engine.
        Entries locked by a build in flight are left alone.
        """
        models = models or {}
        gone: list[Path] = []
        now = time.time()

        def remove(name: str) -> None:
            with self.lock(name, blocking=False) as held:
                if not held:
                    return
                for suffix in (".engine", ".json", ".calib"):
                    p = self.root / f"{name}{suffix}"
                    with contextlib.suppress(FileNotFoundError):
                        p.unlink()
                        gone.append(p)

        for meta_path in sorted(self.root.glob("*.json")):
            try:
                meta = json.loads(meta_path.read_text())
                key = meta["key"]
                built = GpuFacts(key["trt_version"], key["gpu_name"], tuple(key["compute_capability"]),
                                 key.get("sm_count", 0), key.get("total_memory_mib", 0))
                stale = (meta.get("format") != ENGINE_FORMAT
                         or (key.get("recipe") or {}).get("version") != RECIPE_VERSION
                         or (built != facts and replace(built, trt_version=facts.trt_version) == facts)
                         or models.get(str(meta.get("onnx")), key["onnx_sha256"]) != key["onnx_sha256"])
            except (OSError, ValueError, KeyError, TypeError):
                stale = True
            if stale:
                remove(meta_path.stem)
        for engine in sorted(self.root.glob("*.engine")):
            if not engine.with_suffix(".json").exists():
                with contextlib.suppress(FileNotFoundError):
                    if now - engine.stat().st_mtime > ORPHAN_AGE_S:
                        remove(engine.stem)
        for table in sorted(self.root.glob("*.calib")):
            if not table.with_suffix(".engine").exists():
                with contextlib.suppress(FileNotFoundError):
                    if now - table.stat().st_mtime > ORPHAN_AGE_S:
                        remove(table.stem)
        return gone
