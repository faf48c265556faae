"""Synthetic multi-traversal town: procedural world, ray-cast camera + LiDAR, traversals.

Public entry points (imported lazily, no side effects)::

    from distilvpr_core.sim import generate, load_synth_config, tiny_dataset
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

_CONFIG_DIR = Path(__file__).resolve().parent.parent.parent / "config"


def load_synth_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Any:
    """``SynthConfig`` from a YAML file plus ``--set``-style overrides."""
    from ..foundation.config import load_config
    from .config import SynthConfig
    return load_config(SynthConfig, path, overrides=overrides)


def generate(cfg: Any, out_dir: str | Path, overwrite: bool = False, workers: int | None = None,
             progress: bool = True) -> Path:
    """Render ``cfg`` (a SynthConfig) into ``out_dir``; see :mod:`distilvpr_core.sim.pipeline`."""
    from .pipeline import generate as _generate
    return _generate(cfg, out_dir, overwrite=overwrite, workers=workers, progress=progress)


def tiny_dataset(tmpdir: str | Path, overrides: list[str] | tuple[str, ...] = (), workers: int = 1) -> Path:
    """Build ``config/synth_tiny.yaml`` into ``tmpdir/synth_tiny`` (reused if complete) and return it.

    Meant for a session-scoped pytest fixture::

        @pytest.fixture(scope="session")
        def tiny_synth(tmp_path_factory):
            return tiny_dataset(tmp_path_factory.mktemp("synth"))
    """
    out = Path(tmpdir) / "synth_tiny"
    if (out / "dataset.json").is_file() and not overrides:
        return out
    cfg = load_synth_config(_CONFIG_DIR / "synth_tiny.yaml", overrides)
    return generate(cfg, out, overwrite=True, workers=workers, progress=False)


__all__ = ["generate", "load_synth_config", "tiny_dataset"]
