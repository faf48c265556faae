"""Illumination normalisation of the network input, inside the model (so ONNX/TensorRT carry it).

A change of light (dusk, night) or of visibility (fog) moves pixel values far more than a
change of place does.  Normalising each image before the backbone removes part of that
nuisance without touching the preprocessing contract that maps and models share:

* ``none``: identity (every checkpoint written before this option).
* ``instance``: per image and channel, subtract the mean and divide by the standard
  deviation (``InstanceNorm2d`` without affine terms): removes global exposure, gain and
  white balance.
* ``local``: local contrast normalisation (Jarrett et al., ICCV 2009; Pinto et al., 2008):
  subtract a ``window``-pixel box mean and divide by the box standard deviation, per
  channel.  Removes illumination that varies across the image (street lamps, headlights)
  and restores the contrast fog takes from distant surfaces.  The std has a floor
  (``LOCAL_STD_FLOOR``) so flat, dark regions do not blow sensor noise up to full scale.

Input and output: float32 [B, 3, H, W]; the input is the contract's ImageNet-normalised RGB
(unit ~ 1/0.225 of full scale), the output is unit-free with mean ~0 and std ~1.
"""
from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F

from .config import INPUT_NORM_NAMES

INPUT_NORMS = ("none", "instance", "local")
assert INPUT_NORMS == INPUT_NORM_NAMES, "models/config.py lists other input norms than input_norm.py builds"

#: Floor of the local std, in ImageNet-normalised units (0.1 ~ 6/255 of full scale): above the
#: night renderer's read noise (~0.06 of full scale is its *peak* sigma, ~4x lower in flat dark
#: areas after the sRGB curve), so black sky stays black instead of becoming amplified noise.
LOCAL_STD_FLOOR = 0.1
INSTANCE_EPS = 1e-3


class LocalContrastNorm(nn.Module):
    """(x - box_mean) / sqrt(box_var + floor^2) over a ``window`` x ``window`` neighbourhood,
    per channel of an RGB input [B, 3, H, W]."""

    def __init__(self, window: int = 15, std_floor: float = LOCAL_STD_FLOOR) -> None:
        super().__init__()
        if window < 3 or window % 2 == 0:
            raise ValueError(f"window must be an odd number >= 3, got {window}")
        self.window, self.std_floor = window, std_floor
        # Depthwise box kernels for the 3 input channels; non-persistent buffers (no state_dict
        # entry, so checkpoints do not change) that follow .to(device) and export as constants.
        self.register_buffer("kx", torch.full((3, 1, window, 1), 1.0 / window), persistent=False)
        self.register_buffer("ky", torch.full((3, 1, 1, window), 1.0 / window), persistent=False)

    def _box_mean(self, x: torch.Tensor) -> torch.Tensor:
        """Mean over the w x w box around each pixel; at a border only the pixels that exist.

        Two depthwise 1-D convolutions (w x 1, then 1 x w): 2w multiply-adds per pixel instead of
        w^2, and plain Conv nodes in ONNX/TensorRT.  avg_pool2d would give the same numbers but
        ran 7x slower on CPU.  Dividing by the same filter applied to ones restores the mean where
        the zero padding cut the box (a clipped rectangle's count is the product of its sides).
        """
        r = self.window // 2

        def box(t: torch.Tensor) -> torch.Tensor:
            t = F.conv2d(t, self.kx, padding=(r, 0), groups=3)
            return F.conv2d(t, self.ky, padding=(0, r), groups=3)
        return box(x) / box(torch.ones_like(x[:1]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = self._box_mean(x)
        var = (self._box_mean(x * x) - mean * mean).clamp_min(0.0)
        return (x - mean) / torch.sqrt(var + self.std_floor ** 2)


def build_input_norm(name: str) -> nn.Module:
    """The normalisation module called ``name`` (one of :data:`INPUT_NORMS`)."""
    if name == "none":
        return nn.Identity()
    if name == "instance":
        return nn.InstanceNorm2d(3, eps=INSTANCE_EPS, affine=False, track_running_stats=False)
    if name == "local":
        return LocalContrastNorm()
    raise ValueError(f"input_norm {name!r}: expected one of {INPUT_NORMS}")
