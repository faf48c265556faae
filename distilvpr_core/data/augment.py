"""Training-time augmentations of camera frames and LiDAR scans (never applied
at evaluation or caching); deterministic for a given torch/numpy generator."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from ..config import spec


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
    from torchvision.transforms.v2 import functional as F
    t = torch.from_numpy(np.array(img, copy=True)).permute(2, 0, 1)
    s = aug.color_jitter

    def factor() -> float:
        return float(1.0 + (torch.rand(1, generator=gen).item() * 2 - 1) * s)
    # Random order like torchvision's ColorJitter, so no photometric op always comes last.
    for op in torch.randperm(3, generator=gen).tolist():
        if s <= 0:
            break
        if op == 0:
            t = F.adjust_brightness(t, factor())
        elif op == 1:
            t = F.adjust_contrast(t, factor())
        else:
            t = F.adjust_saturation(t, factor())
    if aug.hue_jitter > 0:
        t = F.adjust_hue(t, float((torch.rand(1, generator=gen).item() * 2 - 1) * aug.hue_jitter))
    return t.permute(1, 2, 0).numpy()


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
