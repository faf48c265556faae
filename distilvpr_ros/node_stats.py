"""Counters, latency percentiles, RSS and once-per-kind logging for the node.

Pure Python (no ROS) so the bookkeeping is unit-tested on its own; the node
turns :meth:`NodeStats.snapshot` into a diagnostic_msgs/DiagnosticStatus.
"""
from __future__ import annotations

import os
import time
from collections import Counter, deque
from typing import Callable

import numpy as np

from .health import DropEstimator


class LatencyWindow:
    """The last ``size`` samples (seconds); percentiles in milliseconds."""

    def __init__(self, size: int = 1000) -> None:
        self._samples: deque[float] = deque(maxlen=size)

    def add(self, seconds: float) -> None:
        self._samples.append(seconds)

    def percentile_ms(self, q: float) -> float:
        """q-th percentile in ms, NaN when empty."""
        if not self._samples:
            return float("nan")
        return float(np.percentile(np.fromiter(self._samples, float), q)) * 1000.0

    def __len__(self) -> int:
        return len(self._samples)


def rss_bytes() -> int:
    """Resident set size of this process in bytes (Linux /proc), 0 if unknown."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


class OncePerKindLogger:
    """Log the first message of each kind, then at most once per ``period_s``
    with the count so far, so a flood of bad input never floods the log."""

    def __init__(self, log: Callable[[str], None], period_s: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.log = log
        self.period_s = period_s
        self._clock = clock
        self._last: dict[str, float] = {}
        self._counts: Counter[str] = Counter()

    def __call__(self, kind: str, message: str) -> bool:
        """Count ``kind``; log ``message`` if due.  Returns whether it logged."""
        self._counts[kind] += 1
        now = self._clock()
        last = self._last.get(kind)
        if last is not None and now - last < self.period_s:
            return False
        self._last[kind] = now
        n = self._counts[kind]
        suffix = "" if n == 1 else f" ({n} of this kind so far)"
        self.log(f"dropping bad input [{kind}]: {message}{suffix}; further ones are "
                 f"counted in /diagnostics and logged at most every {self.period_s:g} s")
        return True


class NodeStats:
    """Everything /diagnostics reports, updated by the node's callbacks."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.bad: Counter[str] = Counter()
        self.embed = LatencyWindow()
        self.search = LatencyWindow()
        self.decode = LatencyWindow()       # message -> RGB array (queried frames only)
        self.publish = LatencyWindow()      # result -> all outputs published
        self.process = LatencyWindow()      # callback entry -> all outputs published
        self.queue_delay = LatencyWindow()  # image stamp -> callback entry (needs synced clocks)
        self.start_rss = rss_bytes()
        self.started = time.monotonic()
        self.last_image: float | None = None  # time.monotonic() of the last image callback
        self.drops = DropEstimator()          # camera frames the node skipped
        self.consecutive_failures = 0         # frames in a row the engine raised on
        self.last_failure = ""

    def image_arrived(self, sequence: int | None = None, publisher: bytes = b"") -> None:
        """An image reached the callback; ``sequence``/``publisher``: its publication
        sequence number and publisher gid from rmw's message info (None: unknown)."""
        self.last_image = time.monotonic()
        self.drops.add(sequence, publisher)

    def since_last_image_s(self) -> float:
        """Seconds since the last image (since start when none arrived yet)."""
        return time.monotonic() - (self.started if self.last_image is None else self.last_image)

    def snapshot(self) -> dict[str, str]:
        """Flat key -> string values for a DiagnosticStatus."""
        elapsed = max(time.monotonic() - self.started, 1e-9)
        out = {k: str(v) for k, v in sorted(self.counts.items())}
        out["bad_messages"] = str(sum(self.bad.values()))
        out.update({f"bad_{k}": str(v) for k, v in sorted(self.bad.items())})
        out["query_rate_hz"] = f"{self.counts['queries'] / elapsed:.3f}"
        out["frame_rate_hz"] = f"{self.counts['frames_received'] / elapsed:.3f}"
        for name, win in (("decode", self.decode), ("embed", self.embed), ("search", self.search),
                          ("publish", self.publish),
                          ("process", self.process), ("queue_delay", self.queue_delay)):
            out[f"{name}_p50_ms"] = f"{win.percentile_ms(50):.3f}"
            out[f"{name}_p99_ms"] = f"{win.percentile_ms(99):.3f}"
        out["process_p95_ms"] = f"{self.process.percentile_ms(95):.3f}"
        out["frames_missed_fraction"] = f"{self.drops.fraction():.3f}"
        out["frames_skipped"] = str(self.drops.skipped())
        out["seconds_since_image"] = f"{self.since_last_image_s():.1f}"
        rss = rss_bytes()
        out["rss_mb"] = f"{rss / 2**20:.1f}"
        out["rss_growth_mb"] = f"{(rss - self.start_rss) / 2**20:.1f}"
        return out
