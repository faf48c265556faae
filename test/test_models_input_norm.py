"""The student's illumination normalisation (models/input_norm.py): invariances, old checkpoints, ONNX."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from distilvpr_core.foundation.config import ConfigError, load_config
from distilvpr_core.models import StudentConfig, build_student, save_checkpoint
from distilvpr_core.models.input_norm import LocalContrastNorm, build_input_norm


def _textured(seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(2, 3, 48, 64, generator=g) * 1.5


def test_instance_norm_removes_global_gain_and_offset_per_channel():
    x = _textured()
    gain = torch.tensor([0.5, 0.8, 3.0]).view(1, 3, 1, 1)   # exposure and white balance
    offset = torch.tensor([-1.0, 0.3, 2.0]).view(1, 3, 1, 1)
    norm = build_input_norm("instance")
    torch.testing.assert_close(norm(x * gain + offset), norm(x), atol=1e-2, rtol=1e-2)


def test_local_contrast_norm_removes_a_light_gradient_across_the_image():
    """A lamp lighting the left of the frame (gain 0.2 -> 3 from right to left) changes the
    raw input by a factor 15 but the normalised input only slightly (the box is 15 px wide)."""
    x = _textured(1)
    ramp = torch.linspace(3.0, 0.2, x.shape[-1]).view(1, 1, 1, -1)
    norm = LocalContrastNorm()
    a, b = norm(x), norm(x * ramp)
    raw_change = (x * ramp - x).abs().mean() / x.abs().mean()
    norm_change = (b - a).abs().mean() / a.abs().mean()
    assert raw_change > 0.5 and norm_change < 0.1, (raw_change, norm_change)


def test_local_contrast_norm_keeps_flat_dark_noise_small():
    """The std floor: sensor noise on a black sky is not amplified to unit variance."""
    noise = torch.randn(1, 3, 48, 64) * 0.02 - 2.0      # a dark, flat region in ImageNet units
    out = LocalContrastNorm()(noise)
    assert out.std() < 0.3, out.std()
    texture = _textured(2)
    assert LocalContrastNorm()(texture).std() > 0.8      # real texture is kept at unit scale


def test_local_contrast_norm_window_is_checked():
    with pytest.raises(ValueError, match="odd"):
        LocalContrastNorm(window=4)


def test_unknown_input_norm_is_a_config_error_naming_the_choices():
    with pytest.raises(ConfigError, match="instance"):
        load_config(StudentConfig, data={"input_norm": "gray"})


def test_old_checkpoints_without_the_field_load_as_none(tmp_path):
    """Checkpoints written before the option carry no input_norm: they keep the identity."""
    from distilvpr_core.models.student_io import load_student_checkpoint
    cfg = StudentConfig(dim=16)
    path = save_checkpoint(tmp_path / "s.pt", build_student(cfg), "student", cfg, (64, 48))
    ckpt = torch.load(path, weights_only=False)
    del ckpt["model"]["input_norm"]
    torch.save(ckpt, path)
    loaded = load_student_checkpoint(path)
    assert isinstance(loaded.model.input_norm, torch.nn.Identity)


@pytest.mark.parametrize("name", ["instance", "local"])
def test_normalised_student_round_trips_through_checkpoint_and_onnx(tmp_path, name):
    ort = pytest.importorskip("onnxruntime")
    from distilvpr_core.export.onnx_export import export_student_onnx
    from distilvpr_core.foundation.contract import PreprocessContract
    from distilvpr_core.models.student_io import load_student_checkpoint
    torch.manual_seed(4)
    cfg = StudentConfig(dim=32, input_norm=name)
    path = save_checkpoint(tmp_path / "s.pt", build_student(cfg).eval(), "student", cfg, (64, 48))
    model = load_student_checkpoint(path).model.eval()
    assert type(model.input_norm) is type(build_input_norm(name))
    onnx_path = tmp_path / "s.onnx"
    export_student_onnx(model, PreprocessContract(input_size=(64, 48)), "f" * 64, onnx_path)
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    x = _textured(5)
    got = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
    with torch.no_grad():
        np.testing.assert_allclose(got, model(x).numpy(), rtol=1e-4, atol=1e-4)


def test_separable_box_mean_equals_the_two_dimensional_one_at_the_borders_too():
    import torch.nn.functional as F
    x = _textured(6)
    norm = LocalContrastNorm(window=15)
    ref = F.avg_pool2d(x, 15, stride=1, padding=7, count_include_pad=False)
    torch.testing.assert_close(norm._box_mean(x), ref, atol=1e-5, rtol=1e-5)
