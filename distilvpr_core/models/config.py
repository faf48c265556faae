"""Typed model configurations (sections of the training YAML, and the
``model`` dict stored in every checkpoint)."""
from __future__ import annotations

from dataclasses import dataclass, field

from ..foundation.config import ConfigError, spec

IMAGE_BACKBONES = ("resnet18", "resnet34", "mobilenet_v3_large")
#: Names models/input_norm.py builds (checked there), kept here so a config validates without torch.
INPUT_NORM_NAMES = ("none", "instance", "local")
#: Names of the LiDAR encoders that models/lidar.py registers (checked there), kept here
#: so a config is validated without importing torch.
LIDAR_ENCODER_NAMES = ("bev",)


@dataclass
class StudentConfig:
    """Camera-only student: backbone trunk -> 1x1 conv -> GeM -> ``dim``."""
    backbone: str = field(default="resnet18", metadata=spec(
        "image backbone cut at stride 16", choices=IMAGE_BACKBONES))
    dim: int = field(default=384, metadata=spec("descriptor size D", ge=8))
    gem_p: float = field(default=3.0, metadata=spec("initial GeM exponent p (learnable)", gt=0))
    gem_eps: float = field(default=1e-6, metadata=spec("GeM clamp minimum", gt=0))
    pretrained: str = field(default="none", metadata=spec(
        "backbone weights: none | imagenet (downloads) | PATH of a torchvision state dict"))
    input_norm: str = field(default="none", metadata=spec(
        "illumination normalisation inside the model, before the backbone (models/input_norm.py): "
        "none | instance (per-image mean/std) | local (15-px local contrast normalisation)",
        choices=INPUT_NORM_NAMES))


@dataclass
class BevConfig:
    """Bird's-eye-view grid of a LiDAR scan, lidar frame (x forward, y left, z up), metres."""
    range_m: float = field(default=40.0, metadata=spec("half-width of the square grid, metres", gt=0))
    cells: int = field(default=64, metadata=spec("grid cells per side", ge=8))
    z_min: float = field(default=-2.5, metadata=spec("lowest height kept, metres"))
    z_max: float = field(default=6.0, metadata=spec("highest height kept, metres"))
    height_bins: int = field(default=4, metadata=spec("occupancy slices between z_min and z_max", ge=1))

    def __post_init__(self) -> None:
        if self.z_max <= self.z_min:
            raise ConfigError(f"bev: z_max ({self.z_max}) must be greater than z_min ({self.z_min})")

    @property
    def channels(self) -> int:
        """Channels of the BEV tensor: one occupancy per height slice + max height + intensity."""
        return self.height_bins + 2


@dataclass
class TeacherConfig:
    """Camera + LiDAR teacher: image GeM (``image_dim``) ++ LiDAR (``lidar_dim``)."""
    backbone: str = field(default="resnet18", metadata=spec(
        "image backbone cut at stride 16", choices=IMAGE_BACKBONES))
    image_dim: int = field(default=256, metadata=spec("image branch descriptor size", ge=8))
    lidar_encoder: str = field(default="bev", metadata=spec("LiDAR encoder (registry name)"))
    lidar_dim: int = field(default=128, metadata=spec("LiDAR branch descriptor size", ge=8))
    bev: BevConfig = field(default_factory=BevConfig)
    gem_p: float = field(default=3.0, metadata=spec("initial GeM exponent p (learnable)", gt=0))
    gem_eps: float = field(default=1e-6, metadata=spec("GeM clamp minimum", gt=0))
    pretrained: str = field(default="none", metadata=spec(
        "image backbone weights: none | imagenet (downloads) | PATH"))

    def __post_init__(self) -> None:
        if self.lidar_encoder not in LIDAR_ENCODER_NAMES:
            raise ConfigError(f"teacher.lidar_encoder: unknown encoder {self.lidar_encoder!r}; "
                              f"valid: {sorted(LIDAR_ENCODER_NAMES)}")

    @property
    def dim(self) -> int:
        """Descriptor size of the fused teacher embedding."""
        return self.image_dim + self.lidar_dim
