"""``distilvpr bench node``: end-to-end latency of the localizer over DDS.

Starts the node as a real process (same arguments as the launch file),
publishes 640x480 rgb8 frames at 30 Hz for N seconds (stamp = publish time),
and measures for every answered frame publish -> ``~/candidates`` received.
Next to it, from the node's own /diagnostics in the same run: embed and
search time per query, callback time, queue delay (stamp -> callback), frames
dropped and the node's RSS.  Targets (issue 7, CPU + onnxruntime fp32):
p50 <= embed + search + 3 ms, p99 <= 2 x p50, no growth of the subscription
queue, RSS growth <= 50 MB.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from distilvpr_core.foundation.errors import UserError

HELP = "localizer node latency over DDS: publish 640x480 rgb8 at 30 Hz, time candidates (p50/p99, RSS)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``distilvpr bench node``: the model and map (or ``--synthetic``), node backend, publish
    duration/warm-up/rate, extra node parameters and ``--json``."""
    src = parser.add_argument_group("model and map (one of)")
    src.add_argument("--map", metavar="DIR", help="prior map directory")
    src.add_argument("--model", metavar="FILE", help="student model for --backend (.onnx, or .pt for torch)")
    src.add_argument("--synthetic", action="store_true",
                     help="build a random-init student (ResNet18, 320x240 input, D=384) and a 12-place map "
                          "in a temp dir (needs torch); for timing only")
    parser.add_argument("--backend", default="onnxruntime", choices=("onnxruntime", "tensorrt", "torch"),
                        help="node backend (default: onnxruntime)")
    parser.add_argument("--duration", type=float, default=60.0, metavar="S",
                        help="seconds of 30 Hz publishing after warm-up (default: 60)")
    parser.add_argument("--warmup", type=float, default=5.0, metavar="S",
                        help="seconds published first and not measured (default: 5)")
    parser.add_argument("--rate", type=float, default=30.0, metavar="HZ", help="publish rate (default: 30)")
    parser.add_argument("--param", action="append", default=[], metavar="NAME:=VALUE",
                        help="extra node parameter, e.g. --param min_interval_s:=0.2 (repeatable)")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON here")


def _rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return float("nan")


def _frame_messages(count: int = 8) -> list[Any]:
    from sensor_msgs.msg import Image

    from .synthetic_assets import place_image
    msgs = []
    for i in range(count):
        rgb = place_image(i, 640, 480)
        msg = Image(height=480, width=640, encoding="rgb8", step=640 * 3)
        msg.header.frame_id = "camera"
        msg.data = rgb.tobytes()
        msgs.append(msg)
    return msgs


def measure(map_path: str, model_path: str, backend: str, duration_s: float, warmup_s: float,
            rate_hz: float, extra_params: list[str], log_dir: Path) -> dict[str, Any]:
    """Run the benchmark; returns the result dict (milliseconds, MB, counts)."""
    from .replay.node_process import require_local_dds
    require_local_dds()  # before rclpy.init: LOCALHOST discovery + shared-memory profile
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image, PointCloud2

    from . import launch_args
    from .replay.node_process import LocalizerProcess, NodeExited, diagnostics_values, spin_until
    from .outputs import ns_to_stamp, stamp_to_ns

    args = launch_args.node_arguments({"map": map_path, "model": model_path, "backend": backend})
    for p in extra_params:
        args += ["-p", p]
    frames = _frame_messages()
    rclpy.init()
    client = rclpy.create_node("distilvpr_bench_node")
    latencies: list[tuple[float, float]] = []   # (receive time s, e2e ms)
    diags: list[dict[str, str]] = []

    def on_candidates(msg: Any, info: dict) -> None:
        # The middleware's reception time, so this process's own publishing and
        # Python scheduling do not count as node latency (same system clock as
        # the stamps; falls back to now where the RMW leaves it 0).
        now = int(info.get("received_timestamp") or 0) or time.time_ns()
        latencies.append((now * 1e-9, (now - stamp_to_ns(msg.header.stamp)) * 1e-6))

    def on_diag(msg: Any) -> None:
        d = diagnostics_values(msg)
        if d is not None:
            diags.append(d)

    client.create_subscription(PointCloud2, "/localizer/candidates", on_candidates, 100)
    client.create_subscription(DiagnosticArray, "/diagnostics", on_diag, 10)
    pub = client.create_publisher(Image, "/image", qos_profile_sensor_data)  # like a camera driver
    proc = LocalizerProcess(args, log_dir / "localizer.log")
    rss: list[tuple[float, float]] = []
    try:
        try:
            spin_until(client, lambda: pub.get_subscription_count() > 0, 60, "the node's image subscription",
                       proc)
        except NodeExited as exc:  # a start-up mistake (paths, parameters): the node said why
            raise UserError(str(exc).strip()) from None
        spin_until(client, lambda: bool(diags) and diags[-1].get("image_publishers") == "1", 60,
                   "the node to match the publisher", proc)
        period = 1.0 / rate_hz
        published = 0
        t_start = time.monotonic()
        t_measure = t_start + warmup_s
        t_end = t_measure + duration_s
        next_pub = t_start
        measured_from = None
        next_rss = t_measure
        while time.monotonic() < t_end:
            now = time.monotonic()
            if now >= next_pub:
                msg = frames[published % len(frames)]
                msg.header.stamp = ns_to_stamp(time.time_ns())
                pub.publish(msg)
                published += 1
                next_pub += period
                if now >= t_measure and measured_from is None:
                    measured_from = (time.time(), len(latencies))
            if now >= next_rss:
                rss.append((now - t_measure, _rss_mb(proc.pid)))
                next_rss += 1.0
            rclpy.spin_once(client, timeout_sec=max(0.0, min(next_pub, next_rss) - time.monotonic()))
        n_diag = len(diags)
        spin_until(client, lambda: len(diags) >= n_diag + 2, 10, "final diagnostics", proc)
        final = diags[-1]
    finally:
        proc.stop()
        client.destroy_node()
        rclpy.shutdown()
    if measured_from is None:
        raise UserError("--duration too short: nothing was measured")
    t0_wall, first_lat = measured_from
    lat = np.array([ms for _, ms in latencies[first_lat:]])
    t_lat = np.array([t - t0_wall for t, _ in latencies[first_lat:]])
    if len(lat) < 2:
        raise UserError(f"only {len(lat)} answered frames in {duration_s} s; see {log_dir / 'localizer.log'}")
    tenth = max(duration_s / 10, 1.0)
    early, late = lat[t_lat < tenth], lat[t_lat > duration_s - tenth]
    res = {
        "backend": final.get("backend"), "duration_s": duration_s, "warmup_s": warmup_s, "rate_hz": rate_hz,
        # Whole run (warm-up included): depth-1 QoS drops frames on purpose while the node is busy.
        "published_total": published, "node_received_total": int(final.get("frames_received", 0)),
        "answered": int(len(lat)),
        "e2e_p50_ms": float(np.percentile(lat, 50)), "e2e_p99_ms": float(np.percentile(lat, 99)),
        "e2e_max_ms": float(lat.max()),
        "embed_p50_ms": float(final["embed_p50_ms"]), "embed_p99_ms": float(final["embed_p99_ms"]),
        "search_p50_ms": float(final["search_p50_ms"]), "search_p99_ms": float(final["search_p99_ms"]),
        "decode_p50_ms": float(final["decode_p50_ms"]), "publish_p50_ms": float(final["publish_p50_ms"]),
        "callback_p50_ms": float(final["process_p50_ms"]),
        "callback_p99_ms": float(final["process_p99_ms"]),
        "queue_delay_p50_ms": float(final["queue_delay_p50_ms"]),
        "queue_delay_p99_ms": float(final["queue_delay_p99_ms"]),
        "e2e_p50_first_tenth_ms": float(np.median(early)) if len(early) else float("nan"),
        "e2e_p50_last_tenth_ms": float(np.median(late)) if len(late) else float("nan"),
        "rss_start_mb": rss[0][1] if rss else float("nan"), "rss_end_mb": rss[-1][1] if rss else float("nan"),
        "bad_messages": int(final.get("bad_messages", 0)), "torch_loaded": final.get("torch_loaded"),
    }
    res["rss_growth_mb"] = res["rss_end_mb"] - res["rss_start_mb"]
    res["embed_plus_search_p50_ms"] = res["embed_p50_ms"] + res["search_p50_ms"]
    res["queue_growth_ms"] = res["e2e_p50_last_tenth_ms"] - res["e2e_p50_first_tenth_ms"]
    res["checks"] = {
        "p50 <= embed+search+3ms": res["e2e_p50_ms"] <= res["embed_plus_search_p50_ms"] + 3.0,
        "p99 <= 2*p50": res["e2e_p99_ms"] <= 2.0 * res["e2e_p50_ms"],
        # With a depth-1 queue a frame waits at most one callback; a growing
        # queue would show as stamp->callback delays beyond that.
        "no queue growth (queue delay p99 <= callback p99 + 2 frame periods)":
            res["queue_delay_p99_ms"] <= res["callback_p99_ms"] + 2000.0 / rate_hz,
        "rss growth <= 50 MB": res["rss_growth_mb"] <= 50.0,
    }
    return res


def run(args: argparse.Namespace) -> int:
    """Start the localizer node, publish 640x480 rgb8 frames at ``--rate`` and measure it (see
    :func:`measure`); print the results, write ``--json``; returns 0."""
    if args.duration <= 0 or args.warmup < 0 or args.rate <= 0:
        raise UserError("--duration and --rate must be > 0 and --warmup >= 0")
    for p in args.param:
        if ":=" not in p:
            raise UserError(f"--param {p!r}: expected NAME:=VALUE, e.g. min_interval_s:=0.2")
    with tempfile.TemporaryDirectory(prefix="distilvpr-bench-node-") as tmp:
        if args.synthetic:
            if args.map or args.model:
                raise UserError("--synthetic builds its own model and map; drop --map/--model")
            from . import synthetic_assets
            print("building a random-init student (ResNet18, 320x240, D=384) and a 12-place map ...",
                  file=sys.stderr)
            assets = synthetic_assets.build(Path(tmp) / "assets", places=12, input_size=(320, 240), dim=384)
            map_path, model_path = str(assets.map), str(assets.model)
        elif args.map and args.model:
            map_path, model_path = args.map, args.model
        else:
            raise UserError("give --map DIR and --model FILE, or --synthetic")
        res = measure(map_path, model_path, args.backend, args.duration, args.warmup, args.rate,
                      args.param, Path(tmp))
    print(format_results(res))
    if args.json:
        from distilvpr_core.foundation.atomic import write_text_atomic
        write_text_atomic(args.json, json.dumps(res, indent=2) + "\n")
    return 0


def format_results(res: dict[str, Any]) -> str:
    """The results of :func:`measure` as text: latencies in ms, node memory in MB, and a PASS/FAIL line per check."""
    lines = [
        f"localizer bench: backend {res['backend']}, {res['duration_s']:g} s at {res['rate_hz']:g} Hz, "
        f"640x480 rgb8",
        f"  frames published {res['published_total']}, taken by the node {res['node_received_total']} "
        f"(incl. {res['warmup_s']:g} s warm-up), answered in the measured window {res['answered']}",
        f"  end-to-end publish->candidates  p50 {res['e2e_p50_ms']:.1f} ms  p99 {res['e2e_p99_ms']:.1f} ms  "
        f"max {res['e2e_max_ms']:.1f} ms",
        f"  node: embed p50 {res['embed_p50_ms']:.1f} ms (p99 {res['embed_p99_ms']:.1f}), search p50 "
        f"{res['search_p50_ms']:.2f} ms, embed+search p50 {res['embed_plus_search_p50_ms']:.1f} ms, "
        f"decode p50 {res['decode_p50_ms']:.2f} ms, publish p50 {res['publish_p50_ms']:.2f} ms, "
        f"whole callback p50 {res['callback_p50_ms']:.1f} ms",
        f"  queue delay (stamp->callback) p50 {res['queue_delay_p50_ms']:.2f} ms p99 "
        f"{res['queue_delay_p99_ms']:.1f} ms; e2e p50 first tenth "
        f"{res['e2e_p50_first_tenth_ms']:.1f} ms, last tenth {res['e2e_p50_last_tenth_ms']:.1f} ms",
        f"  node RSS {res['rss_start_mb']:.1f} -> {res['rss_end_mb']:.1f} MB "
        f"(growth {res['rss_growth_mb']:+.1f} MB); torch imported: {res['torch_loaded']}",
    ]
    lines += [f"  [{'PASS' if ok else 'FAIL'}] {name}" for name, ok in res["checks"].items()]
    return "\n".join(lines)
