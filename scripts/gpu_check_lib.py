"""Table rows, statistics and the time budget of scripts/gpu_check.py (kept apart so the
check itself reads as the list of rows it measures)."""
from __future__ import annotations

import importlib.util
import time
from dataclasses import dataclass, field
from typing import Any, Callable

COLUMNS = ("check", "result", "cosine min / mean", "vs", "finite", "p50 ms b1", "p50 ms b8", "notes")


@dataclass
class Row:
    check: str
    result: str = "skipped"          # "ok" | "FAIL" | "skipped"
    cos: str = "-"
    vs: str = "-"
    finite: str = "-"
    b1: str = "-"
    b8: str = "-"
    notes: str = ""

    def cells(self) -> list[str]:
        return [self.check, self.result, self.cos, self.vs, self.finite, self.b1, self.b8, self.notes]


@dataclass
class Report:
    header: list[str] = field(default_factory=list)
    rows: list[Row] = field(default_factory=list)

    def add(self, row: Row) -> Row:
        self.rows.append(row)
        print(f"  {row.check}: {row.result} {row.cos} {row.notes}".rstrip(), flush=True)
        return row

    def failed(self) -> bool:
        return any(r.result == "FAIL" for r in self.rows)

    def markdown(self) -> str:
        lines = [*self.header, "", "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
        lines += ["| " + " | ".join(c.replace("|", "/") for c in r.cells()) + " |" for r in self.rows]
        return "\n".join(lines) + "\n"


def missing_modules(names: tuple[str, ...]) -> list[str]:
    """The module names in ``names`` that cannot be imported here (dotted names allowed)."""
    out = []
    for name in names:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            out.append(name)
    return out


def cosine_stats(a: Any, b: Any) -> tuple[float, float]:
    """(min, mean) row-wise cosine of two float [N, D] arrays."""
    import numpy as np
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-30)
    return float(cos.min()), float(cos.mean())


def recall_at_1(db: Any, queries: Any) -> float:
    """Percent of queries whose nearest database row (inner product) is their own place (row i)."""
    import numpy as np
    nn = np.argmax(np.asarray(queries) @ np.asarray(db).T, axis=1)
    return float((nn == np.arange(len(queries))).mean() * 100.0)


def synthetic_places(n: int, seed: int, h: int = 480, w: int = 640) -> tuple[Any, Any]:
    """(places, revisits) uint8 [n, h, w, 3]: smooth random scenes; revisits shifted 6 px and 15 % darker."""
    import numpy as np
    from PIL import Image
    rng = np.random.default_rng(seed)
    places = np.empty((n, h, w, 3), np.uint8)
    for i in range(n):
        coarse = rng.integers(0, 256, (6, 8, 3), np.uint8)
        fine = rng.integers(0, 256, (24, 32, 3), np.uint8)
        img = (0.7 * np.asarray(Image.fromarray(coarse).resize((w, h), Image.BICUBIC), np.float32)
               + 0.3 * np.asarray(Image.fromarray(fine).resize((w, h), Image.BILINEAR), np.float32))
        places[i] = img.clip(0, 255).astype(np.uint8)
    revisits = (np.roll(places, 6, axis=2).astype(np.float32) * 0.85).astype(np.uint8)
    return places, revisits


def p50_ms(fn: Callable[[], Any], iters: int, sync: Callable[[], None] = lambda: None) -> float:
    """Median wall time of ``fn`` in ms over ``iters`` calls, after 3 warm-up calls."""
    import statistics
    for _ in range(3):
        fn()
    sync()
    times = []
    for _ in range(iters):
        t = time.perf_counter()
        fn()
        sync()
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def judge(row: Row, cos_min: float, floor: float, finite: bool = True) -> Row:
    row.finite = "yes" if finite else "NO"
    row.result = "ok" if finite and cos_min >= floor else "FAIL"
    row.notes = (f"floor {floor}; " + row.notes).rstrip("; ")
    return row


class Budget:
    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        return self.end - time.monotonic()
