"""The learned local-feature network (torch; training and export only).

Input: float32 [B, 1, H, W], the normalised grey image in [0, 1]
(preprocess.py); H and W any multiple of ``STRIDE``.  Outputs, on a grid of
stride ``STRIDE`` = 4 (cell (i, j) centred on pixel (4 j + 1.5, 4 i + 1.5)):

* ``descriptors`` float32 [B, D, H/4, W/4], D = ``desc_dim``, unit L2 norm
  per cell (sampled bilinearly at a keypoint and normalised again);
* ``score`` float32 [B, 1, H/4, W/4] in (0, 1): the predicted chance that a
  cell's descriptor finds its true correspondence (the ranking of keypoints).

The image is standardised per image first (mean 0, std 1 over its pixels), so a
dark night frame and a bright noon frame reach the first convolution alike.
Six 3x3 convolutions (two with stride 2) give a receptive field of about 35 px
of the 320x240 camera; 138 k parameters (width 32), ~0.87 GMAC at 320x240.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

STRIDE = 4


def _conv(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class LocalFeatureNet(nn.Module):
    """Dense descriptors and a matchability score at stride 4 (module doc)."""

    def __init__(self, desc_dim: int = 128, width: int = 32):
        super().__init__()
        w = int(width)
        self.desc_dim = int(desc_dim)
        self.width = w
        self.body = nn.Sequential(_conv(1, w // 2), _conv(w // 2, w, 2), _conv(w, w),
                                  _conv(w, 2 * w, 2), _conv(2 * w, 2 * w), _conv(2 * w, 3 * w))
        self.desc = nn.Conv2d(3 * w, self.desc_dim, 1)
        self.score = nn.Conv2d(3 * w, 1, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(descriptors [B, D, H/4, W/4] unit norm, score [B, 1, H/4, W/4] in (0, 1))."""
        desc, logits = self.score_logits(x)
        return desc, torch.sigmoid(logits)

    def score_logits(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(descriptors as :meth:`forward`, score logits before the sigmoid): for the loss."""
        mean = x.mean(dim=(2, 3), keepdim=True)
        std = ((x - mean) ** 2).mean(dim=(2, 3), keepdim=True).add(1e-6).sqrt()
        f = self.body((x - mean) / std)
        return F.normalize(self.desc(f), dim=1), self.score(f)


def sample(dense: torch.Tensor, pts: torch.Tensor, stride: int = STRIDE) -> torch.Tensor:
    """[N, C] bilinear samples of ``dense`` [C, h, w] at image pixels ``pts`` [N, 2] (x, y),
    the torch twin of preprocess.sample_map (same cell centres, border clamp)."""
    c, h, w = dense.shape
    gx = ((pts[:, 0] - (stride - 1) / 2.0) / stride).clamp(0, w - 1)
    gy = ((pts[:, 1] - (stride - 1) / 2.0) / stride).clamp(0, h - 1)
    # grid_sample with align_corners=True: -1 and 1 are the centres of the border cells.
    grid = torch.stack([gx / max(w - 1, 1) * 2 - 1, gy / max(h - 1, 1) * 2 - 1], -1)
    out = F.grid_sample(dense[None], grid[None, None], mode="bilinear", align_corners=True)
    return out[0, :, 0].t()
