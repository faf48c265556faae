"""Training-time augmentations of camera frames and LiDAR scans (never applied
at evaluation or caching); deterministic for a given torch/numpy generator."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from ..foundation.config import spec


@dataclass
class AugmentConfig:
    """Training-time augmentations (never applied at evaluation or caching)."""
    color_jitter: float = field(default=0.3, metadata=spec(
        "brightness/contrast/saturation jitter strength (0 = off)", ge=0, le=1))
    hue_jitter: float = field(default=0.05, metadata=spec("hue jitter (0 = off)", ge=0, le=0.5))
    erase_prob: float = field(default=0.5, metadata=spec("random-erasing probability", ge=0, le=1))
    lidar_rotate_deg: float = field(default=5.0, metadata=spec("max LiDAR yaw rotation, degrees", ge=0, le=180))
    lidar_jitter_m: float = field(default=0.02, metadata=spec("std of per-point LiDAR jitter, metres", ge=0))
    lidar_drop: float = field(default=0.1, metadata=spec("max fraction of LiDAR points dropped", ge=0, lt=1))


def jitter_image(img: np.ndarray, aug: AugmentConfig, gen: torch.Generator) -> np.ndarray:
    """Colour jitter of uint8 [H, W, 3] -> uint8 [H, W, 3].

    torchvision's ColorJitter semantics (random order of brightness, contrast,
    saturation with factors in [1 - s, 1 + s], each result clamped to the
    valid range, then a hue shift), computed in float32 with one conversion
    back to uint8: ~10x cheaper than chaining the uint8 ops, which dominated
    a CPU training step.
    """
    t = torch.from_numpy(np.array(img, copy=True)).permute(2, 0, 1).float()
    s = aug.color_jitter
    gray_w = torch.tensor([0.2989, 0.587, 0.114]).view(3, 1, 1)

    def factor() -> float:
        return float(1.0 + (torch.rand(1, generator=gen).item() * 2 - 1) * s)
    # Random order like torchvision's ColorJitter, so no photometric op always comes last.
    for op in torch.randperm(3, generator=gen).tolist():
        if s <= 0:
            break
        f = factor()
        if op == 0:      # brightness: blend with black
            t = t * f
        elif op == 1:    # contrast: blend with the mean grey level
            t = (t - (t * gray_w).sum(0).mean()) * f + (t * gray_w).sum(0).mean()
        else:            # saturation: blend with the per-pixel grey
            g = (t * gray_w).sum(0, keepdim=True)
            t = (t - g) * f + g
        t = t.clamp_(0, 255)
    if aug.hue_jitter > 0:
        t = _rotate_hue(t, float((torch.rand(1, generator=gen).item() * 2 - 1) * aug.hue_jitter))
    return t.round_().to(torch.uint8).permute(1, 2, 0).numpy()


# RGB <-> YIQ (NTSC).  A hue shift is a rotation of the chroma plane (I, Q).
_RGB2YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
_YIQ2RGB = torch.linalg.inv(_RGB2YIQ)


def _rotate_hue(t: torch.Tensor, hue: float) -> torch.Tensor:
    """Shift the hue of float [3, H, W] (0..255) by ``hue`` turns (torchvision's hue_factor scale).

    One 3x3 colour matrix (a rotation in YIQ) instead of torchvision's
    adjust_hue, which goes through HSV and cost ~100x more on CPU.  Luma is
    kept; saturated colours may clip.
    """
    a = -2 * math.pi * hue   # sign chosen to turn the same way as torchvision
    rot = torch.tensor([[1.0, 0.0, 0.0], [0.0, math.cos(a), -math.sin(a)], [0.0, math.sin(a), math.cos(a)]])
    m = _YIQ2RGB @ rot @ _RGB2YIQ
    return torch.einsum("ij,jhw->ihw", m, t).clamp_(0, 255)


def random_erase(image: torch.Tensor, prob: float, gen: torch.Generator) -> torch.Tensor:
    """Zero (= the dataset mean after normalisation) one random rectangle covering
    2-20 % of the image, aspect 0.3-3.3, with probability ``prob`` (Zhong et al.)."""
    if torch.rand(1, generator=gen).item() >= prob:
        return image
    _, h, w = image.shape
    for _ in range(10):  # like torchvision: retry until the rectangle fits
        r = torch.rand(3, generator=gen).tolist()
        area = h * w * (0.02 + 0.18 * r[0])
        aspect = math.exp(math.log(0.3) + (math.log(3.3) - math.log(0.3)) * r[1])
        eh, ew = int(round(math.sqrt(area * aspect))), int(round(math.sqrt(area / aspect)))
        if 0 < eh < h and 0 < ew < w:
            top = int(r[2] * (h - eh))
            left = int(torch.randint(0, w - ew + 1, (1,), generator=gen))
            image = image.clone()
            image[:, top:top + eh, left:left + ew] = 0
            return image
    return image


def augment_lidar(pts: np.ndarray, aug: AugmentConfig, rng: np.random.Generator) -> np.ndarray:
    if aug.lidar_drop > 0 and len(pts) > 1:
        keep = rng.random(len(pts)) >= rng.uniform(0, aug.lidar_drop)
        pts = pts[keep]
    pts = pts.copy()
    if aug.lidar_rotate_deg > 0:
        a = math.radians(rng.uniform(-aug.lidar_rotate_deg, aug.lidar_rotate_deg))
        c, s = math.cos(a), math.sin(a)
        x, y = pts[:, 0].copy(), pts[:, 1].copy()
        pts[:, 0], pts[:, 1] = c * x - s * y, s * x + c * y
    if aug.lidar_jitter_m > 0:
        pts[:, :3] += rng.normal(0, aug.lidar_jitter_m, size=(len(pts), 3)).astype(np.float32)
    return pts
