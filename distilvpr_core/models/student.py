"""The camera-only student: the model that is exported and deployed."""
from __future__ import annotations

import torch
from torch import nn

from .backbones import BACKBONE_CHANNELS, build_backbone
from .config import StudentConfig
from .input_norm import build_input_norm
from .pooling import GeM


class Student(nn.Module):
    """Input normalisation -> backbone trunk (stride 16) -> 1x1 conv C->D -> GeM -> D.

    ``forward(x)``: x float32 [B, 3, H, W], ImageNet-normalised RGB ->
    float32 [B, D] raw descriptors (not L2-normalised; the relational losses
    need the raw scale, search L2-normalises).
    """

    def __init__(self, cfg: StudentConfig) -> None:
        super().__init__()
        self.input_norm = build_input_norm(cfg.input_norm)
        self.backbone = build_backbone(cfg.backbone, cfg.pretrained)
        self.proj = nn.Conv2d(BACKBONE_CHANNELS[cfg.backbone], cfg.dim, kernel_size=1)
        self.pool = GeM(cfg.gem_p, cfg.gem_eps)
        self.dim = cfg.dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.proj(self.backbone(self.input_norm(x))))


def build_student(cfg: StudentConfig | None = None) -> Student:
    """A student built from ``cfg`` (defaults: ResNet18, D = 384, random init)."""
    return Student(cfg or StudentConfig())
