"""`distilvpr map init OUT --model M`: the first, empty map of a SLAM session."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")  # the test student is exported from torch

from distilvpr_core.app.cli import main  # noqa: E402
from distilvpr_core.localize.engine import LocalizationEngine  # noqa: E402
from distilvpr_core.localize.settings import LocalizerSettings  # noqa: E402
from distilvpr_core.mapdb import PriorMap  # noqa: E402
from distilvpr_ros import synthetic_assets  # noqa: E402


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    import torch
    torch.set_num_threads(1)
    return synthetic_assets.export_random_student(tmp_path_factory.mktemp("init"))[1]


@pytest.fixture(scope="module")
def embedder(model):
    from distilvpr_core.infer import load_embedder
    emb = load_embedder(model, backend="onnxruntime", intra_op_threads=1)
    yield emb
    emb.close()


def test_init_writes_an_empty_map_matching_the_model(model, embedder, tmp_path, capsys):
    out = tmp_path / "session_map"
    assert main(["map", "init", str(out), "--model", str(model), "--camera", "100,100,80,60,160,120"]) == 0
    assert "empty map, dim 64" in capsys.readouterr().out
    m = PriorMap.load(out, expect_fingerprint=embedder.fingerprint, expect_dim=embedder.dim)
    assert len(m) == 0 and m.contract == embedder.contract.to_dict() and m.features is not None
    assert (m.features.camera.fx, m.features.camera.width) == (100.0, 160)
    assert main(["map", "verify", str(out), "--model", str(model)]) == 0

    # Online mapping fills it; the keyframes carry features, so the saved map verifies later closures.
    s = LocalizerSettings(online_mapping=True, min_interval_s=0.0, exclude_recent_s=0.0)
    engine = LocalizationEngine(embedder, m, s)
    for k in range(3):
        rgb = synthetic_assets.place_image(k, 160, 120)
        engine.query(rgb, 10**18 + k * 10**9, np.array([k * 5.0, 0, 0, 0, 0, 0, 1.0]))
    m.save(out)
    again = PriorMap.load(out, expect_fingerprint=embedder.fingerprint, expect_dim=embedder.dim)
    assert len(again) == 3 and len(again.features) == 3


def test_init_refuses_what_it_should_in_one_line(model, tmp_path, capsys):
    out = tmp_path / "m"
    assert main(["map", "init", str(out), "--model", str(model)]) == 0
    capsys.readouterr()
    assert main(["map", "init", str(out), "--model", str(model)]) == 2
    assert "a map exists already; pass --overwrite" in capsys.readouterr().err
    assert main(["map", "init", str(out), "--model", str(model), "--overwrite"]) == 0
    assert PriorMap.load(out).features is None  # no --camera: no features
    assert main(["map", "init", str(tmp_path / "x"), "--model", str(model), "--camera", "1,2"]) == 2
    assert "--camera '1,2': expected fx,fy,cx,cy,width,height" in capsys.readouterr().err
    assert main(["map", "init", str(tmp_path / "y"), "--model", str(tmp_path / "none.onnx")]) == 2
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()
