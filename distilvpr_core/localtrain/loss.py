"""Dense InfoNCE over exact correspondences (the loss of the learned local descriptor).

For a pair of views with correspondences (p_i in A, q_i in B), d_A(p_i) and
d_B(q_i) are the unit descriptors sampled bilinearly at the two pixels.  The
positive of d_A(p_i) is d_B(q_i); its negatives are the descriptors of every
cell of B's dense map whose centre is more than ``radius_px`` from q_i (the
whole image, so a repeated window elsewhere in B is a negative, exactly what
nearest-neighbour matching against a keyframe has to beat):

    loss_i = -log( exp(s_pos / t) / (exp(s_pos / t) + sum_neg exp(s_neg / t)) )

and the same from B to A; t = ``temperature``.  The score head learns, with a
binary cross-entropy, whether a point's positive beat all its negatives in
both directions (target detached): the chance that the point's descriptor
would be matched, used to rank keypoints.
"""
from __future__ import annotations

import torch
from torch.nn import functional as F

from ..features.learned.model import STRIDE, sample


def _one_way(d_src: torch.Tensor, d_pos: torch.Tensor, dense: torch.Tensor, pos_px: torch.Tensor,
             temperature: float, radius_px: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss [N], positive beats every negative bool [N]) of descriptors d_src [N, D] against
    their positives d_pos [N, D] and the cells of ``dense`` [D, h, w] farther than the radius."""
    c, h, w = dense.shape
    cells = dense.reshape(c, h * w)
    ys, xs = torch.meshgrid(torch.arange(h, dtype=pos_px.dtype), torch.arange(w, dtype=pos_px.dtype),
                            indexing="ij")
    centres = torch.stack([xs.reshape(-1), ys.reshape(-1)], -1) * STRIDE + (STRIDE - 1) / 2.0
    near = torch.cdist(pos_px, centres) <= radius_px                       # [N, h*w]
    s_neg = (d_src @ cells).masked_fill(near, float("-inf"))
    s_pos = (d_src * d_pos).sum(-1, keepdim=True)
    logits = torch.cat([s_pos, s_neg], 1) / temperature
    loss = F.cross_entropy(logits, torch.zeros(len(d_src), dtype=torch.long), reduction="none")
    return loss, (s_pos[:, 0] > s_neg.max(1).values).detach()


def pair_loss(desc_a: torch.Tensor, logit_a: torch.Tensor, desc_b: torch.Tensor, logit_b: torch.Tensor,
              pts_a: torch.Tensor, pts_b: torch.Tensor, temperature: float = 0.07, radius_px: float = 6.0,
              score_weight: float = 0.5) -> tuple[torch.Tensor, dict[str, float]]:
    """Loss of one pair: dense maps desc [D, h, w], score logits [1, h, w], correspondences
    pts_a, pts_b float [N, 2] (x, y pixels of each crop).  Returns (loss, stats: ``infonce``,
    ``score_bce``, ``accuracy`` = share of points whose positive beats all negatives both ways)."""
    da = F.normalize(sample(desc_a, pts_a), dim=1)
    db = F.normalize(sample(desc_b, pts_b), dim=1)
    la, ok_a = _one_way(da, db, desc_b, pts_b, temperature, radius_px)
    lb, ok_b = _one_way(db, da, desc_a, pts_a, temperature, radius_px)
    infonce = 0.5 * (la.mean() + lb.mean())
    target = (ok_a & ok_b).float()
    sa, sb = sample(logit_a, pts_a)[:, 0], sample(logit_b, pts_b)[:, 0]
    bce = 0.5 * (F.binary_cross_entropy_with_logits(sa, target) + F.binary_cross_entropy_with_logits(sb, target))
    return infonce + score_weight * bce, {"infonce": float(infonce.detach()), "score_bce": float(bce.detach()),
                                          "accuracy": float(target.mean())}
