"""Many towns in one command: ``distilvpr synth --seeds 0-4 --out DIR``.

Each seed is one world of the same generator config (``SynthConfig.seed``
replaced), written to ``DIR/town_<seed>`` by :func:`pipeline.generate`; the
frames of a town are rendered by the worker processes in parallel, the towns
one after the other.  Resumable: a town whose directory holds a dataset.json is
finished and skipped (``generate`` renames a town into place only when it is
complete); an interrupted town leaves only a hidden ``.town_<seed>.*.partial``
directory, which the next run removes and renders again.  ``DIR/towns.json``
records, per town, the seconds it took to render and its size on disk.
"""
from __future__ import annotations

import dataclasses
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from ..data.towns import TOWN_PREFIX
from ..foundation.atomic import write_text_atomic
from ..foundation.errors import UserError
from .config import SynthConfig


def parse_seeds(tokens: Sequence[str]) -> list[int]:
    """``["0", "2-4"]`` -> ``[0, 2, 3, 4]``: seeds and inclusive ranges, in order, without repeats.

    UserError naming the bad token for anything else (negative, reversed range, not a number).
    """
    seeds: list[int] = []
    for tok in tokens:
        for part in str(tok).split(","):
            part = part.strip()
            if not part:
                continue
            lo, sep, hi = part.partition("-")
            try:
                a = int(lo)
                b = int(hi) if sep else a
            except ValueError:
                raise UserError(f"--seeds {part!r}: expected a seed (e.g. 3) or a range (e.g. 0-4)") from None
            if a < 0 or b < a:
                raise UserError(f"--seeds {part!r}: seeds are >= 0 and a range runs low-high (e.g. 0-4)")
            seeds += [s for s in range(a, b + 1) if s not in seeds]
    if not seeds:
        raise UserError("--seeds: give at least one seed or range, e.g. --seeds 0 1 2 or --seeds 0-4")
    return seeds


def town_dir(out: str | Path, seed: int) -> Path:
    """Where the town of ``seed`` goes: ``out/town_<seed>``."""
    return Path(out) / f"{TOWN_PREFIX}{seed}"


def is_finished(path: Path) -> bool:
    """True when ``path`` is a complete town (generate writes dataset.json inside the
    temporary directory and renames it into place last)."""
    return (path / "dataset.json").is_file()


def dir_bytes(path: Path) -> int:
    """Bytes of every regular file under ``path`` (apparent size)."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def generate_towns(cfg: SynthConfig, out: str | Path, seeds: Sequence[int], workers: int | None = None,
                   overwrite: bool = False, progress: bool = True) -> dict[str, Any]:
    """Render one town per seed into ``out/town_<seed>``; returns the towns.json record.

    Finished towns are skipped unless ``overwrite``.  The record holds, per town,
    ``render_s`` (wall seconds of this or the earlier run that rendered it),
    ``bytes`` on disk and ``frames``.
    """
    from tqdm import tqdm
    from .pipeline import generate
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out}: exists and is not a directory; choose another path")
    out.mkdir(parents=True, exist_ok=True)
    record_path = out / "towns.json"
    record: dict[str, Any] = json.loads(record_path.read_text()) if record_path.is_file() else {}
    towns = record.setdefault("towns", {})
    bar = tqdm(seeds, desc="towns", unit="town", disable=not progress, file=sys.stderr)
    for seed in bar:
        path = town_dir(out, seed)
        if is_finished(path) and not overwrite:
            bar.write(f"town_{seed}: finished earlier, skipped", file=sys.stderr)
            continue
        for stale in out.glob(f".{path.name}.*.partial"):  # left by a killed run
            shutil.rmtree(stale, ignore_errors=True)
        if path.exists() and not is_finished(path):
            shutil.rmtree(path)   # an empty or foreign directory where the town goes
        t0 = time.perf_counter()
        generate(dataclasses.replace(cfg, seed=seed), path, overwrite=overwrite, workers=workers,
                 progress=progress)
        meta = json.loads((path / "dataset.json").read_text())
        towns[str(seed)] = {"dir": path.name, "render_s": round(time.perf_counter() - t0, 1),
                            "bytes": dir_bytes(path),
                            "frames": int(sum(t["num_frames"] for t in meta["traversals"]))}
        record["workers"] = workers
        write_text_atomic(record_path, json.dumps(record, indent=1, sort_keys=True) + "\n")
    bar.close()
    return record
