"""Flip every bit of a small map's schema.json and load it each time (issue 18).

Usage: .venv/bin/python scripts/flip_schema_bits.py WORK_DIR
Prints how many single-bit flips PriorMap.load accepted, and how many it
blamed on a file other than schema.json (both should be 0).
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from distilvpr_core.foundation.errors import UserError
from distilvpr_core.infer import PreprocessContract
from distilvpr_core.mapdb import PriorMap


def main(work: Path) -> int:
    d = 8
    m = PriorMap.create(d, "a" * 64, PreprocessContract(descriptor_dim=d).to_dict())
    x = np.random.default_rng(0).standard_normal((5, d)).astype(np.float32)
    m.add(x, np.arange(5), np.column_stack([np.zeros((5, 6)), np.ones(5)]), "s", np.arange(5))
    path = m.save(work / "map")
    schema = path / "schema.json"
    orig = schema.read_bytes()
    t0, accepted, elsewhere, n = time.time(), 0, 0, 0
    for i in range(len(orig)):
        for bit in range(8):
            flipped = bytearray(orig)
            flipped[i] ^= 1 << bit
            schema.write_bytes(bytes(flipped))
            n += 1
            try:
                PriorMap.load(path)
                accepted += 1
            except UserError as exc:
                elsewhere += not str(exc).startswith(str(schema) + ":")
    schema.write_bytes(orig)
    print(f"{n} flips of {len(orig)} bytes: {accepted} accepted, {elsewhere} blamed on another file "
          f"({time.time() - t0:.0f} s)")
    return 1 if accepted or elsewhere else 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
