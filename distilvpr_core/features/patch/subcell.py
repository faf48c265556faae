"""Sub-cell keypoints of the patch kind: where inside each layer-3 cell the content is.

Why: a layer-3 cell is 16 input pixels wide.  With the keypoint at the cell's
centre, a query displaced by less than a cell matches the same cells at the
same pixels and PnP returns the keyframe's own pose (docs/local_features.md,
"Sub-cell keypoints").  A keypoint has to move with the image content, like a
detector's.

How (content-anchored keypoints): a fine response map ``r`` (one value per fine
pixel; fine pixel (u, v) is centred on input pixel (s u, s v), s the fine
stride) and, per layer-3 cell (i, j) centred on input pixel (16 j, 16 i), the
soft-argmax of ``r`` over the fine pixels within ``radius`` of that centre:

    w_a = softmax_a(beta * r_a / max_a r_a),   offset = sum_a w_a * (s dx_a, s dy_a)

The response is divided by its window maximum so that the weights do not
depend on the frame's contrast (night, fog): ``beta`` alone sets how sharply
the strongest fine pixel wins (beta = 0: the window's centre, i.e. the cell
centre; large beta: the arg-max).  Fine pixels outside the map (zero padding)
get no weight.  The window may be wider than the cell (``radius`` s > 8): a
keypoint then need not lie in its own cell, which is harmless (the cell's
descriptor is what is matched; the keypoint only has to be the same scene point
in both images).

Responses (``SOURCES``), chosen on validation (docs/local_features.md):

* ``"image"``: the Harris corner response (structure tensor of central
  differences, 3x3 box, k = 0.05, negatives clipped) of the trunk's own
  normalised input averaged over channels, stride 1: a corner is a point that
  moves exactly with the image;
* ``"layer1"`` / ``"layer2"``: the L2 norm over channels of the ResNet trunk's
  layer-1 (stride 4) or layer-2 (stride 8) activation.

Output: ``offsets`` float32 [B, 2, h, w], (dx, dy) in input pixels from the
cell centre, on the layer-3 grid; at most ``radius * s`` pixels.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

#: Response sources -> (index of the trunk layer whose output is used, -1: the input; fine stride).
SOURCES = {"image": (-1, 1), "layer1": (4, 4), "layer2": (5, 8)}
COARSE_STRIDE = 16
HARRIS_K = 0.05


def harris(x: torch.Tensor) -> torch.Tensor:
    """Harris response float32 [B, 1, H, W] (>= 0) of an image float32 [B, C, H, W] (channel mean)."""
    g = x.mean(dim=1, keepdim=True)
    gx = F.pad(g[..., :, 2:] - g[..., :, :-2], (1, 1, 0, 0)) * 0.5
    gy = F.pad(g[..., 2:, :] - g[..., :-2, :], (0, 0, 1, 1)) * 0.5
    a, b, c = (F.avg_pool2d(t, 3, stride=1, padding=1, count_include_pad=False) for t in (gx * gx, gy * gy, gx * gy))
    return (a * b - c * c - HARRIS_K * (a + b) ** 2).clamp_min(0.0)


def activation_norm(f: torch.Tensor) -> torch.Tensor:
    """float32 [B, 1, H, W]: the L2 norm over channels of float32 [B, C, H, W]."""
    return torch.sqrt((f * f).sum(dim=1, keepdim=True))


class SubCell(nn.Module):
    """response float32 [B, 1, Hf, Wf] (stride ``fine_stride``) -> offsets float32 [B, 2, h, w]
    (input pixels, see the module doc); h = floor((Hf - 1) / k) + 1, k = 16 / fine_stride,
    which is the layer-3 grid of an input of Hf * fine_stride pixels (every stride-2 layer
    of the trunk gives ceil(n / 2))."""

    def __init__(self, fine_stride: int, radius: int, beta: float) -> None:
        super().__init__()
        if COARSE_STRIDE % fine_stride:
            raise ValueError(f"fine stride {fine_stride} must divide {COARSE_STRIDE}")
        self.k, self.radius, self.beta = COARSE_STRIDE // fine_stride, int(radius), float(beta)
        n = 2 * self.radius + 1
        # One-hot kernels: channel a of the convolution is the fine pixel a of the window
        # (an unfold that every ONNX runtime has).
        eye = torch.eye(n * n, dtype=torch.float32).reshape(n * n, 1, n, n)
        dy, dx = torch.meshgrid(torch.arange(n) - self.radius, torch.arange(n) - self.radius, indexing="ij")
        self.register_buffer("window", eye)
        self.register_buffer("dxy", torch.stack([dx, dy]).reshape(2, 1, n * n, 1, 1).float() * fine_stride)

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        win = F.conv2d(r, self.window, stride=self.k, padding=self.radius)          # [B, n*n, h, w]
        inside = F.conv2d(torch.ones_like(r), self.window, stride=self.k, padding=self.radius)
        peak = win.amax(dim=1, keepdim=True).clamp_min(1e-12)
        # Outside the map: -1e4 below any real logit (0 <= logit <= beta), so exp() gives 0.
        w = torch.softmax(self.beta * win / peak - 1e4 * (1.0 - inside), dim=1)   # [B, n*n, h, w]
        return torch.cat([(w * self.dxy[0]).sum(1, keepdim=True), (w * self.dxy[1]).sum(1, keepdim=True)], dim=1)
