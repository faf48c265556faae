"""Batch-hard triplet loss with masks (the task loss of teacher and student).

As in MinkLoc / DistilVPR: for every anchor, the farthest positive and the
nearest negative in the batch (Euclidean distance on raw embeddings), margin
0.2, "swap" (the negative's distance is the smaller of anchor-negative and
positive-negative), averaged over the triplets whose loss is non-zero.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .manifolds import euclidean_dist_matrix


@dataclass(frozen=True)
class TripletStats:
    """Batch statistics for logging; distances in embedding units."""

    num_triplets: int          # anchors with >= 1 positive and >= 1 negative
    non_zero_fraction: float   # share of those triplets with loss > 0
    mean_pos_dist: float       # mean anchor-to-hardest-positive distance
    mean_neg_dist: float       # mean (swapped) distance to the hardest negative


class BatchHardTripletLoss(nn.Module):
    """forward(emb float [B, D], pos_mask bool [B, B], neg_mask bool [B, B]).

    ``pos_mask[i, j]``: j is a positive of anchor i (the trainer uses poses
    <= 10 m apart); ``neg_mask[i, j]``: j is a negative (> 50 m); pairs in
    neither are ignored, and the diagonal is never a positive or negative.
    Returns (loss scalar tensor, :class:`TripletStats`).  A batch without a
    valid triplet gives a zero loss that still supports ``backward``.
    """

    def __init__(self, margin: float = 0.2, swap: bool = True) -> None:
        super().__init__()
        if not margin >= 0:
            raise ValueError(f"triplet margin must be >= 0, got {margin!r}")
        self.margin = margin
        self.swap = swap

    def forward(self, emb: Tensor, pos_mask: Tensor, neg_mask: Tensor) -> tuple[Tensor, TripletStats]:
        b = emb.shape[0]
        if emb.ndim != 2 or pos_mask.shape != (b, b) or neg_mask.shape != (b, b):
            raise ValueError(f"expected embeddings [B, D] and masks [B, B]; got {tuple(emb.shape)}, "
                             f"{tuple(pos_mask.shape)}, {tuple(neg_mask.shape)}")
        eye = torch.eye(b, dtype=torch.bool, device=emb.device)
        pos_mask = pos_mask.to(emb.device, torch.bool) & ~eye
        neg_mask = neg_mask.to(emb.device, torch.bool) & ~eye
        dist = euclidean_dist_matrix(emb, emb)
        with torch.no_grad():  # mining picks indices only
            hardest_pos = dist.masked_fill(~pos_mask, float("-inf")).argmax(dim=1)
            hardest_neg = dist.masked_fill(~neg_mask, float("inf")).argmin(dim=1)
            valid = pos_mask.any(dim=1) & neg_mask.any(dim=1)
        anchors = valid.nonzero(as_tuple=True)[0]
        p, n = hardest_pos[anchors], hardest_neg[anchors]
        d_ap = dist[anchors, p]
        d_an = dist[anchors, n]
        if self.swap:
            d_an = torch.minimum(d_an, dist[p, n])
        losses = torch.relu(d_ap - d_an + self.margin)
        non_zero = losses > 0
        num_non_zero = int(non_zero.sum())
        # Averaging over non-zero terms keeps the gradient from fading as easy
        # triplets stop contributing.
        loss = losses.sum() / max(num_non_zero, 1) if anchors.numel() else emb.sum() * 0.0
        n_trip = int(anchors.numel())
        stats = TripletStats(
            num_triplets=n_trip,
            non_zero_fraction=num_non_zero / n_trip if n_trip else 0.0,
            mean_pos_dist=float(d_ap.detach().mean()) if n_trip else 0.0,
            mean_neg_dist=float(d_an.detach().mean()) if n_trip else 0.0)
        return loss, stats

    def extra_repr(self) -> str:
        return f"margin={self.margin}, swap={self.swap}"
