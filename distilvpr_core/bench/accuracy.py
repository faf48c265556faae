"""Accuracy cost of a deployment variant (INT8, fp16, another backend) on a native dataset.

Both embedders describe every frame of the chosen traversals; Recall@N uses
the project protocol (``distilvpr_core.evaluation.recall``: every ordered pair of runs,
true neighbour within ``radius_m``), and per-frame cosine compares the two
descriptors of the same frame.  No torch unless an embedder uses it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..infer.embedder import Embedder


def _describe(emb: Embedder, trav: Any, batch: int = 16) -> np.ndarray:
    out = []
    for i in range(0, len(trav), batch):
        out.append(emb.embed([trav.load_image(j) for j in range(i, min(i + batch, len(trav)))]))
    return np.concatenate(out)


def compare_on_dataset(ref: Embedder, other: Embedder, root: str | Path,
                       traversals: Sequence[str] | None = None, radius_m: float = 25.0) -> dict[str, Any]:
    """{"ref": recall dict, "other": recall dict, "r1_drop": points, "cosine_min"/"cosine_mean": per frame}.

    ``traversals``: default the dataset's test-role traversals (at least two).
    """
    from ..data import native
    from ..foundation.errors import UserError
    from ..evaluation.recall import evaluate_runs

    ds = native.open_dataset(root)
    names = list(traversals or ds.traversals_with_role("test"))
    if len(names) < 2:
        raise UserError(f"{root}: need at least two traversals to compute recall, got {names}")
    d_ref, d_oth, pos = [], [], []
    for name in names:
        trav = ds.traversal(name)
        d_ref.append(_describe(ref, trav))
        d_oth.append(_describe(other, trav))
        pos.append(trav.poses[:, :3])
    r_ref = evaluate_runs(d_ref, pos, radius_m=radius_m)
    r_oth = evaluate_runs(d_oth, pos, radius_m=radius_m)
    cos = np.concatenate([(a * b).sum(1) for a, b in zip(d_ref, d_oth)])
    return {"dataset": str(root), "traversals": names, "radius_m": radius_m,
            "ref": r_ref.to_dict(), "other": r_oth.to_dict(), "r1_drop": r_ref.r1 - r_oth.r1,
            "cosine_min": float(cos.min()), "cosine_mean": float(cos.mean()), "frames": int(len(cos))}
