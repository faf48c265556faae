"""Cost of the distillation term: loss-only timings and student-step overhead.

Measures, in one process and interleaved so load changes hit both alike:

* ``plain``: one student training step (forward of a [B, 3, H, W] batch,
  batch-hard triplet, backward, Adam step) with the real student model;
* ``distil``: the same step plus the distillation term against cached teacher
  embeddings float [B, D] (what the trainer does after the cache stage);
* each method's loss alone, forward + backward on float [B, D].

Prints median milliseconds and the ratio distil/plain (issue target <= 1.15),
both measured directly and as 1 + loss time / plain step time.

    python -m distilvpr_core.bench.distill --batch 32 --size 160 120
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import TYPE_CHECKING, Callable, Sequence

if TYPE_CHECKING:
    import torch

HELP = "time the distillation losses and a student step with and without distillation"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of the distillation benchmark."""
    parser.add_argument("--batch", type=int, default=32, help="places per batch B (default 32)")
    parser.add_argument("--dim", type=int, default=384, help="descriptor size D (default 384)")
    parser.add_argument("--size", type=int, nargs=2, default=[160, 120], metavar=("W", "H"),
                        help="student input width and height in pixels (default 160 120)")
    parser.add_argument("--repeats", type=int, default=5, help="timed repetitions, median reported (default 5)")
    parser.add_argument("--methods", nargs="+", default=None,
                        help="distillation methods for the loss-only timings (default: all)")
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads, 0 = torch default")
    parser.add_argument("--losses-only", action="store_true",
                        help="time only the losses, not the student steps (quick, any batch size)")
    parser.add_argument("--json", default=None, metavar="FILE", help="also write the results as JSON")


def _time_ms(fn: Callable[[], None], sync: Callable[[], None]) -> float:
    t0 = time.perf_counter()
    fn()
    sync()
    return (time.perf_counter() - t0) * 1e3


def _median_ms(fn: Callable[[], None], repeats: int, sync: Callable[[], None]) -> float:
    fn()  # warm-up: allocator, autograd graph caches
    sync()
    return statistics.median(_time_ms(fn, sync) for _ in range(repeats))


def run(args: argparse.Namespace) -> int:
    """Run the benchmark; prints a table, returns 0."""
    import torch

    from ..foundation.atomic import write_text_atomic
    from ..foundation.config import load_config
    from ..foundation.errors import UserError
    from ..distill import METHODS, DistillConfig, build_distill_loss

    if args.batch < 4:
        raise UserError(f"--batch {args.batch}: use >= 4 so the batch holds positives and negatives")
    methods = args.methods or list(METHODS)
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise UserError(f"--methods: unknown method {unknown[0]!r}; valid: {list(METHODS)}")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    torch.manual_seed(0)
    b, d = args.batch, args.dim
    w, h = args.size

    results: dict[str, float] = {}
    s = torch.randn(b, d, device=device, requires_grad=True)
    t = torch.randn(b, d, device=device)
    for m in methods:
        module = build_distill_loss(load_config(DistillConfig, data={"method": m})).to(device)

        def loss_only(module=module) -> None:
            loss, _ = module(s, t)
            loss.backward()
        results[f"loss_{m}_ms"] = _median_ms(loss_only, args.repeats, sync)

    if not args.losses_only:
        results.update(_student_steps(args, device, sync))
        # The same ratio from the loss-only timing: far less sensitive to
        # background load than the difference of two multi-second steps.
        if "loss_distilvpr_ms" in results:
            results["step_ratio_from_loss"] = 1 + results["loss_distilvpr_ms"] / results["step_plain_ms"]
    print(f"device={device} B={b} D={d} input={w}x{h} threads={torch.get_num_threads()} "
          f"repeats={args.repeats} (median ms)")
    for key, value in results.items():
        print(f"  {key:24s} {value:10.3f}")
    if args.json:
        meta = {"device": str(device), "batch": b, "dim": d, "size": [w, h],
                "threads": torch.get_num_threads(), "repeats": args.repeats}
        write_text_atomic(args.json, json.dumps({"meta": meta, "results": results}, indent=2) + "\n")
    return 0


def _student_steps(args: argparse.Namespace, device: torch.device,
                   sync: Callable[[], None]) -> dict[str, float]:
    """Median ms of a plain and a DistilVPR student step, interleaved, and their ratio."""
    import torch

    from ..foundation.config import load_config
    from ..models import StudentConfig, build_student
    from ..distill import BatchHardTripletLoss, DistillConfig, build_distill_loss

    b, d = args.batch, args.dim
    w, h = args.size
    model = build_student(load_config(StudentConfig, data={"dim": d})).to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4, weight_decay=1e-4)
    triplet = BatchHardTripletLoss()
    distill = build_distill_loss(DistillConfig())
    images = torch.randn(b, 3, h, w, device=device)
    place = torch.arange(b, device=device) // 2  # pairs of views per place
    pos, neg = place[:, None] == place[None], place[:, None] != place[None]
    teacher = torch.randn(b, d, device=device)

    def step(with_distill: bool) -> None:
        emb = model(images)
        loss, _ = triplet(emb, pos, neg)
        if with_distill:
            loss = loss + distill(emb, teacher)[0]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step(False)  # warm-up
    step(True)
    sync()
    plain, distil = [], []
    for _ in range(args.repeats):  # interleaved, so background load hits both
        plain.append(_time_ms(lambda: step(False), sync))
        distil.append(_time_ms(lambda: step(True), sync))
    res = {"step_plain_ms": statistics.median(plain), "step_distilvpr_ms": statistics.median(distil)}
    res["step_ratio"] = res["step_distilvpr_ms"] / res["step_plain_ms"]
    return res


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m distilvpr_core.bench.distill``."""
    parser = argparse.ArgumentParser(prog="distilvpr bench distill", description=HELP)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
