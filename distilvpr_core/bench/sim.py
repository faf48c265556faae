"""Render-speed benchmark: ``python -m distilvpr_core.bench.sim --config config/synth_town.yaml``.

Renders frames in this process (one image + one scan + descriptors + PNG,
exactly what a worker does) and reports wall and CPU seconds per frame; on a
shared machine CPU time is the honest number, wall time shows contention.
"""
from __future__ import annotations

import argparse
import json
import sys
import time


def main(argv: list[str] | None = None) -> int:
    """Print a JSON line with frames, wall_s, cpu_s, fps_wall and fps_per_core_cpu."""
    from ..foundation.config import load_config
    from ..sim.config import SynthConfig
    from ..sim import pipeline
    p = argparse.ArgumentParser(prog="python -m distilvpr_core.bench.sim", description=__doc__)
    p.add_argument("--config", default="config/synth_town.yaml")
    p.add_argument("--set", dest="overrides", action="append", default=[])
    p.add_argument("--frames", type=int, default=40, help="frames per traversal to time")
    args = p.parse_args(argv)
    cfg = load_config(SynthConfig, args.config, overrides=args.overrides)
    pipeline._init_worker(cfg)
    n = min(args.frames, cfg.route.frames)
    out = {"frames": 0, "wall_s": 0.0, "cpu_s": 0.0, "per_traversal": {}}
    for ti, t in enumerate(cfg.traversals):
        pipeline.render_frame((ti, 0))          # builds this traversal's scene, not timed
        w0, c0 = time.perf_counter(), time.process_time()
        for fi in range(n):
            pipeline.render_frame((ti, fi * (cfg.route.frames // n)))
        w, c = time.perf_counter() - w0, time.process_time() - c0
        out["per_traversal"][t.name] = {"cpu_ms_per_frame": round(1000 * c / n, 1)}
        out["frames"] += n
        out["wall_s"] += w
        out["cpu_s"] += c
    out["fps_wall"] = round(out["frames"] / out["wall_s"], 2)
    out["fps_per_core_cpu"] = round(out["frames"] / out["cpu_s"], 2)
    out["camera"] = [cfg.camera.width, cfg.camera.height]
    out["lidar"] = [cfg.lidar.beams, cfg.lidar.azimuth_bins]
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
