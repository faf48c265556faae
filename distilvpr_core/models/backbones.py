"""Image backbones cut at stride 16, from torchvision, with optional weights.

Every backbone returns a feature map float32 [B, C, H/16, W/16] for an
ImageNet-normalised RGB input float32 [B, 3, H, W]; ``C`` is given by
:data:`BACKBONE_CHANNELS`.  ``pretrained`` is ``"none"`` (random init, the
default: nothing is downloaded), ``"imagenet"`` (torchvision weights, downloads
on first use) or a path to a ``.pth`` state dict of the full torchvision model.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch
from torch import nn
from torchvision import models as tvm

from ..foundation.errors import UserError

# Channels of the stride-16 feature map of each backbone.
BACKBONE_CHANNELS: dict[str, int] = {"resnet18": 256, "resnet34": 256, "mobilenet_v3_large": 112}


def _resnet_trunk(net: nn.Module) -> nn.Module:
    # layer4 is dropped: the paper's teacher/student use the stride-16 layer3 map.
    return nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool, net.layer1, net.layer2, net.layer3)


def _mobilenet_trunk(net: nn.Module) -> nn.Module:
    # features[0..12] end at stride 16 with 112 channels; later blocks go to stride 32.
    return nn.Sequential(*list(net.features.children())[:13])


_BUILDERS: dict[str, tuple[Callable[..., nn.Module], object, Callable[[nn.Module], nn.Module]]] = {
    "resnet18": (tvm.resnet18, tvm.ResNet18_Weights.IMAGENET1K_V1, _resnet_trunk),
    "resnet34": (tvm.resnet34, tvm.ResNet34_Weights.IMAGENET1K_V1, _resnet_trunk),
    "mobilenet_v3_large": (tvm.mobilenet_v3_large, tvm.MobileNet_V3_Large_Weights.IMAGENET1K_V1,
                           _mobilenet_trunk),
}


def build_backbone(name: str, pretrained: str = "none") -> nn.Module:
    """The stride-16 trunk of torchvision model ``name``.

    Raises ValueError for an unknown name (listing the valid ones) and
    UserError for an unreadable or mismatching weights file.
    """
    if name not in _BUILDERS:
        raise ValueError(f"unknown backbone {name!r}; valid: {sorted(_BUILDERS)}")
    ctor, imagenet, trunk = _BUILDERS[name]
    if pretrained == "imagenet":
        net = ctor(weights=imagenet)
    else:
        net = ctor(weights=None)
        if pretrained not in ("none", ""):
            _load_weights_file(net, Path(pretrained), name)
    return trunk(net)


def _load_weights_file(net: nn.Module, path: Path, name: str) -> None:
    if not path.is_file():
        raise UserError(f"pretrained: {path}: file not found; use 'none', 'imagenet' or the "
                        f"path of a torchvision {name} state dict")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a bad file
        raise UserError(f"pretrained: {path}: not a loadable state dict ({exc})") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    try:
        result = net.load_state_dict(state, strict=False)
    except RuntimeError as exc:
        raise UserError(f"pretrained: {path}: weights do not fit a {name} ({exc})") from None
    # The classifier head and the stride-32 blocks are cut off anyway; anything
    # else missing means the file is for another architecture.
    unused = ("fc.", "layer4.", "classifier.", "features.13.", "features.14.", "features.15.",
              "features.16.")
    missing = [k for k in result.missing_keys if not k.startswith(unused)]
    if missing:
        raise UserError(f"pretrained: {path}: not a torchvision {name} state dict "
                        f"({len(missing)} trunk weights missing, e.g. {missing[0]!r})")
