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
    photometric_prob: float = field(default=0.0, metadata=spec(
        "condition augmentation for night and fog (0 = off): each of gamma darkening, contrast "
        "loss, haze, sensor noise and blur is applied with this probability (photometric_image)",
        ge=0, le=1))
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


#: Haze colour (uint8 RGB levels): the grey-white airlight of the renderer's fog.
_AIRLIGHT = (200.0, 202.0, 206.0)


def photometric_image(img: np.ndarray, prob: float, gen: torch.Generator) -> np.ndarray:
    """Condition changes strong enough to turn a noon frame into night- or fog-like ones:
    uint8 [H, W, 3] -> uint8 [H, W, 3].

    Each op is drawn with probability ``prob``, in this order (the order a camera sees them):
    haze (blend towards the airlight, weight 0.2-0.7, heavier towards the top of the image
    where the scene is farther), contrast loss (factor 0.35-0.8 around the mean grey), gamma
    darkening (v' = v^g on 0..1, g in 1.5-3.5: night), sensor noise (Gaussian, std 2-12 levels)
    and Gaussian blur (sigma 0.5-1.5 px).  With ``prob`` 0 nothing is drawn, so turning the
    option on changes no other augmentation's random draws.
    """
    if prob <= 0:
        return img
    t = torch.from_numpy(np.array(img, copy=True)).permute(2, 0, 1).float()
    _, h, w = t.shape

    def draw(lo: float, hi: float) -> float:
        return lo + (hi - lo) * torch.rand(1, generator=gen).item()
    on = (torch.rand(5, generator=gen) < prob).tolist()
    if on[0]:    # haze: farther (higher in the image) is hazier
        a = draw(0.2, 0.7)
        rows = torch.linspace(1.0, 0.5, h).view(1, h, 1)
        weight = (a * rows).clamp_(0, 1)
        t = t * (1 - weight) + torch.tensor(_AIRLIGHT).view(3, 1, 1) * weight
    if on[1]:    # contrast loss
        mean = t.mean()
        t = (t - mean) * draw(0.35, 0.8) + mean
    if on[2]:    # gamma darkening (night)
        t = 255.0 * (t.clamp(0, 255) / 255.0) ** draw(1.5, 3.5)
    if on[3]:    # sensor noise
        t = t + torch.randn(t.shape, generator=gen) * draw(2.0, 12.0)
    if on[4]:    # blur
        t = _gaussian_blur(t, draw(0.5, 1.5))
    return t.clamp_(0, 255).round_().to(torch.uint8).permute(1, 2, 0).numpy()


def _gaussian_blur(t: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of float [3, H, W] (reflect padding)."""
    r = max(1, int(math.ceil(2.5 * sigma)))
    x = torch.arange(-r, r + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    k = k / k.sum()
    out = t.unsqueeze(0)
    out = torch.nn.functional.conv2d(torch.nn.functional.pad(out, (r, r, 0, 0), mode="reflect"),
                                     k.view(1, 1, 1, -1).repeat(3, 1, 1, 1), groups=3)
    out = torch.nn.functional.conv2d(torch.nn.functional.pad(out, (0, 0, r, r), mode="reflect"),
                                     k.view(1, 1, -1, 1).repeat(3, 1, 1, 1), groups=3)
    return out[0]


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
    """float32 [P, 4] scan (lidar frame) with random point dropout, a yaw rotation and xyz jitter (metres)."""
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
