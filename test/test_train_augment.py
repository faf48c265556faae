"""Colour jitter: torchvision's ColorJitter semantics at a fraction of its CPU cost."""
from __future__ import annotations

import numpy as np
import torch
from torchvision.transforms.v2 import functional as F

from distilvpr_core.data.augment import AugmentConfig, _rotate_hue
from distilvpr_core.data.augment import jitter_image as _jitter_image


def _scene() -> np.ndarray:
    """A smooth colourful image (sky gradient, coloured blocks), like a rendered frame."""
    y, x = np.mgrid[0:60, 0:80]
    img = np.stack([100 + x, 120 + y, 200 - x], axis=-1).astype(np.float64)
    img[30:50, 10:30] = (180, 40, 40)
    img[20:55, 45:70] = (40, 160, 60)
    return img.clip(0, 255).astype(np.uint8)


def test_no_jitter_is_the_identity():
    img = _scene()
    out = _jitter_image(img, AugmentConfig(color_jitter=0.0, hue_jitter=0.0), torch.Generator().manual_seed(0))
    assert out.dtype == np.uint8 and np.array_equal(out, img)


def test_matches_torchvision_colour_ops_within_rounding():
    img = _scene()
    t = torch.from_numpy(img.copy()).permute(2, 0, 1)
    for seed in range(5):
        ours = _jitter_image(img, AugmentConfig(color_jitter=0.3, hue_jitter=0.0),
                             torch.Generator().manual_seed(seed))
        g = torch.Generator().manual_seed(seed)
        ref = t.clone()
        for op in torch.randperm(3, generator=g).tolist():   # the same draws, in the same order
            f = float(1.0 + (torch.rand(1, generator=g).item() * 2 - 1) * 0.3)
            ref = [F.adjust_brightness, F.adjust_contrast, F.adjust_saturation][op](ref, f)
        diff = np.abs(ours.astype(np.float64) - ref.permute(1, 2, 0).numpy().astype(np.float64))
        assert diff.mean() < 2.0 and diff.max() <= 8, (seed, diff.mean(), diff.max())
        assert np.abs(ours.astype(int) - img.astype(int)).mean() > 0.5   # it did change the image


def test_hue_rotation_keeps_grey_and_luma_and_turns_like_torchvision():
    img = _scene()
    t = torch.from_numpy(img.copy()).permute(2, 0, 1).float()
    grey = torch.full((3, 4, 4), 128.0)
    assert torch.allclose(_rotate_hue(grey, 0.2), grey, atol=1e-3)
    luma = torch.tensor([0.299, 0.587, 0.114]).view(3, 1, 1)
    shifted = _rotate_hue(t.clone(), 0.05)
    assert (((shifted - t) * luma).sum(0)).abs().mean() < 1.0
    ref = F.adjust_hue(t.to(torch.uint8), 0.05).float()
    assert (shifted - ref).abs().mean() < (_rotate_hue(t.clone(), -0.05) - ref).abs().mean()


def test_photometric_ops_darken_haze_and_stay_deterministic():
    from distilvpr_core.data.augment import photometric_image
    img = _scene()
    assert photometric_image(img, 0.0, torch.Generator().manual_seed(0)) is img   # off: untouched
    outs = [photometric_image(img, 1.0, torch.Generator().manual_seed(s)) for s in range(4)]
    for o in outs:
        assert o.dtype == np.uint8 and o.shape == img.shape
        # every op on: haze + contrast loss + gamma + noise + blur -> a darker, flatter image
        assert o.astype(float).std() < img.astype(float).std()
    again = photometric_image(img, 1.0, torch.Generator().manual_seed(0))
    assert np.array_equal(again, outs[0])
    assert not np.array_equal(outs[0], outs[1])
    # over many draws at p=0.5 some images are darker (night) and some hazier (brighter, greyer)
    means = [photometric_image(img, 0.5, torch.Generator().manual_seed(s)).mean() for s in range(40)]
    assert min(means) < img.mean() - 20 and max(means) > img.mean() + 5


def test_photometric_option_keeps_the_other_draws():
    """PlaceDataset applies it after the colour jitter, only when photometric_prob > 0."""
    from distilvpr_core.data.augment import photometric_image
    img = _scene()
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    a = _jitter_image(img, AugmentConfig(), g1)
    photometric_image(a, 0.0, g1)
    _jitter_image(img, AugmentConfig(), g2)
    assert torch.rand(1, generator=g1).item() == torch.rand(1, generator=g2).item()
