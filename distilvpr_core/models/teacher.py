"""The camera + LiDAR teacher (trained offline, never deployed)."""
from __future__ import annotations

import torch
from torch import nn

from .backbones import BACKBONE_CHANNELS, build_backbone
from .config import TeacherConfig
from .lidar import lidar_encoder_spec
from .pooling import GeM


class ImageBranch(nn.Module):
    """Backbone trunk -> 1x1 conv C->image_dim -> GeM: [B, 3, H, W] -> [B, image_dim]."""

    def __init__(self, cfg: TeacherConfig) -> None:
        super().__init__()
        self.backbone = build_backbone(cfg.backbone, cfg.pretrained)
        self.proj = nn.Conv2d(BACKBONE_CHANNELS[cfg.backbone], cfg.image_dim, kernel_size=1)
        self.pool = GeM(cfg.gem_p, cfg.gem_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.proj(self.backbone(x)))


class Teacher(nn.Module):
    """``forward(image, lidar)``: image float32 [B, 3, H, W] ImageNet-normalised RGB,
    lidar = the encoder's prepared input (BEV float32 [B, C, G, G]) ->
    float32 [B, image_dim + lidar_dim], the raw concatenation of both branches."""

    def __init__(self, cfg: TeacherConfig) -> None:
        super().__init__()
        self.image = ImageBranch(cfg)
        self.lidar = lidar_encoder_spec(cfg.lidar_encoder).build(cfg)
        self.dim = cfg.dim

    def forward(self, image: torch.Tensor, lidar: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.image(image), self.lidar(lidar)], dim=1)


def build_teacher(cfg: TeacherConfig | None = None) -> Teacher:
    """A teacher built from ``cfg`` (defaults: ResNet18 + BEV CNN, 256 + 128 = 384)."""
    return Teacher(cfg or TeacherConfig())
