"""LiDAR encoders behind a registry: name -> (points -> input array, nn.Module).

The paper uses MinkLoc3D on MinkowskiEngine, which does not install here; the
``bev`` encoder is a 2-D CNN + GeM over a height/occupancy grid that trains on
a CPU.  A new encoder registers a :class:`LidarEncoderSpec`.

No sparse-convolution (MinkLoc3D-style) encoder: spconv 2.3.8's CPU wheel
installs here and runs forward, but its backward pass calls
``torch.cuda.current_stream()`` and fails without a GPU driver, so such an
encoder could neither train nor be tested on these machines.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import nn

from .bev import points_to_bev
from .config import LIDAR_ENCODER_NAMES, TeacherConfig
from .pooling import GeM


def _block(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class BevEncoder(nn.Module):
    """float32 [B, C, G, G] BEV grid -> float32 [B, lidar_dim] (stride-8 CNN + GeM)."""

    def __init__(self, cfg: TeacherConfig) -> None:
        super().__init__()
        c = cfg.bev.channels
        self.body = nn.Sequential(_block(c, 32, 1), _block(32, 32, 1), _block(32, 64, 2),
                                  _block(64, 64, 1), _block(64, 128, 2), _block(128, 128, 1),
                                  _block(128, 128, 2))
        self.proj = nn.Conv2d(128, cfg.lidar_dim, kernel_size=1)
        self.pool = GeM(cfg.gem_p, cfg.gem_eps)

    def forward(self, bev: torch.Tensor) -> torch.Tensor:
        return self.pool(self.proj(self.body(bev)))


@dataclass(frozen=True)
class LidarEncoderSpec:
    """``prepare(points float32 [P, 4], cfg) -> float32 array`` (numpy, data workers) and
    ``build(cfg) -> nn.Module`` mapping a batch of prepared arrays to [B, lidar_dim]."""
    prepare: Callable[[np.ndarray, TeacherConfig], np.ndarray]
    build: Callable[[TeacherConfig], nn.Module]


def _bev_prepare(points: np.ndarray, cfg: TeacherConfig) -> np.ndarray:
    return points_to_bev(points, cfg.bev)


# Module-level functions (not lambdas) so DataLoader workers can pickle them.
LIDAR_ENCODERS: dict[str, LidarEncoderSpec] = {
    "bev": LidarEncoderSpec(prepare=_bev_prepare, build=BevEncoder),
}
assert tuple(LIDAR_ENCODERS) == LIDAR_ENCODER_NAMES, "config.LIDAR_ENCODER_NAMES must list the registry"


def lidar_encoder_spec(name: str) -> LidarEncoderSpec:
    """The registered encoder ``name``; ValueError listing the valid names otherwise."""
    if name not in LIDAR_ENCODERS:
        raise ValueError(f"unknown lidar_encoder {name!r}; valid: {sorted(LIDAR_ENCODERS)}")
    return LIDAR_ENCODERS[name]
