"""scripts/input_norm_check.py: the model-free check of the input normalisations."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "scripts" / "input_norm_check.py"


def _drive(root: Path, name: str, gain: float, n: int = 4) -> None:
    """n frames 10 m apart along x; the same scene in every drive, scaled by ``gain`` (a darker light)."""
    d = root / "traversals" / name
    (d / "images").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        scene = rng.integers(0, 256, (48, 64, 3)).astype(np.float64)
        Image.fromarray(np.clip(scene * gain, 0, 255).astype(np.uint8)).save(d / "images" / f"{i:06d}.png")
    poses = np.repeat(np.eye(4)[None], n, axis=0)
    poses[:, 0, 3] = np.arange(n) * 100.0
    np.save(d / "poses.npy", poses)


def test_dark_drive_is_found_once_normalised(tmp_path):
    """The script's plumbing: drives, thumbnails, R@1 table and files.  The normalisations'
    own invariances are tested strictly in test_models_input_norm.py (random scenes are too
    distinct for the un-normalised row to fail here, so this test does not claim it)."""
    _drive(tmp_path, "map_noon", 1.0)
    _drive(tmp_path, "night", 0.1)
    out = tmp_path / "check.json"
    res = subprocess.run([sys.executable, str(SCRIPT), "--town", str(tmp_path), "--stride", "1",
                          "--radius-m", "25", "--out", str(out)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    doc = json.loads(out.read_text())
    # A global gain is exactly what instance and local normalisation remove: every frame found.
    assert doc["r1"]["instance"]["night"] == 100.0 and doc["r1"]["local"]["night"] == 100.0
    assert set(doc["r1"]) == {"none", "instance", "local"}
    assert out.with_suffix(".md").read_text().count("|") > 10


def test_missing_map_drive_is_a_clear_error(tmp_path):
    _drive(tmp_path, "night", 0.1)
    res = subprocess.run([sys.executable, str(SCRIPT), "--town", str(tmp_path), "--out", str(tmp_path / "o.json")],
                         capture_output=True, text=True)
    assert res.returncode == 2 and "map_noon" in res.stderr and "Traceback" not in res.stderr
