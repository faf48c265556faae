"""The epoch loop shared by the teacher and student stages.

Adam + MultiStep schedule, float16 autocast on CUDA, DistributedDataParallel
under torchrun, best-on-validation checkpointing, a resume file per stage,
``<stage>_metrics.json`` / ``metrics.json`` and TensorBoard scalars per epoch,
and a hard stop with a saved diagnostic on a non-finite loss.
"""
from __future__ import annotations

import io
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn
from torch.utils.data import DataLoader

from ..foundation.atomic import write_bytes_atomic, write_text_atomic
from ..data.datasets import FrameIndex, PairBatchSampler, PlaceDataset, collate
from ..foundation.errors import UserError
from .config import DistilRunConfig, StageConfig


def write_json(path: Path, obj: Any) -> None:
    """Atomically write ``obj`` as indented JSON."""
    write_text_atomic(path, json.dumps(obj, indent=2) + "\n")


def place_masks(positions: torch.Tensor, pos_m: float, neg_m: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Positive (<= pos_m) and negative (> neg_m) masks bool [B, B] from positions [B, 2] metres.

    Differences are taken in float64: on UTM coordinates (~5.7e6 m) float32
    rounds positions to 0.5 m and cdist's expansion errs by kilometres.
    """
    p = positions.to(torch.float64)
    d = (p[:, None, :] - p[None, :, :]).norm(dim=-1)
    return d <= pos_m, d > neg_m


def embedding_spread(emb: torch.Tensor) -> float:
    """Mean pairwise distance of a batch's embeddings [B, D] over their mean norm (0 = collapsed)."""
    with torch.no_grad():
        e = emb.detach().float()
        return float(torch.pdist(e).mean() / e.norm(dim=1).mean().clamp_min(1e-12)) if len(e) > 1 else 0.0


class CollapsedTraining(UserError):
    """The embeddings collapsed; the message names the run, stage and epoch."""


def collapse_reason(row: dict[str, Any], margin: float) -> str | None:
    """Why an epoch's mean batch statistics look collapsed, or None.

    Collapse = the embeddings no longer spread (mean pairwise distance below
    1e-3 of their norm), or the batch-hard triplet loss sat at the margin
    with every triplet active for the whole epoch (all distances equal).
    """
    spread, trip, nz = row.get("spread"), row.get("triplet"), row.get("triplet_nonzero")
    if spread is not None and spread < 1e-3:
        return f"embedding spread {spread:.2e} (mean pairwise distance / mean norm)"
    if trip is not None and nz is not None and nz >= 0.999 and abs(trip - margin) < 1e-3 * max(margin, 1.0):
        return f"triplet loss {trip:.4f} pinned at the margin {margin} with {100 * nz:.1f} % of triplets active"
    return None


class NonFiniteLoss(UserError):
    """Training produced a NaN/inf loss; the message names the batch and the diagnostic file."""


@dataclass
class RunContext:
    """What every stage needs: the config, the run directory, device and DDP rank."""
    cfg: DistilRunConfig
    run_dir: Path
    device: torch.device
    rank: int
    world: int
    traversals: list[Any]
    writer: Any
    split: Any = None          # data.geosplit.GeoSplit of a dataset with split.json, else None


def train_stage(ctx: RunContext, stage: str, model: nn.Module, sc: StageConfig, dataset: PlaceDataset,
                 frames: FrameIndex, loss_fn: Callable[[nn.Module, dict[str, torch.Tensor], int],
                                                       tuple[torch.Tensor, dict[str, float]]],
                 validate: Callable[[nn.Module], dict[str, float]], save_best: Callable[[nn.Module, int, dict], None]
                 ) -> None:
    """Generic loop: Adam + MultiStep, AMP on CUDA, resumable, best-on-val selection.

    ``loss_fn(net, batch, step)`` gets the 0-based optimiser step of the stage (for terms
    that start later, e.g. distill.cross_start_step).
    """
    from tqdm import tqdm
    cfg, dev = ctx.cfg, ctx.device
    model.to(dev)
    net: nn.Module = model
    if ctx.world > 1:
        net = nn.parallel.DistributedDataParallel(
            model, device_ids=[dev.index] if dev.type == "cuda" else None)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=sc.lr, weight_decay=sc.weight_decay)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=list(sc.milestones), gamma=sc.gamma)
    use_amp = cfg.run.amp and dev.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    sampler = PairBatchSampler(frames, sc.pairs_per_batch, cfg.task.pos_radius_m, cfg.run.seed,
                               ctx.rank, ctx.world)
    loader = DataLoader(dataset, batch_sampler=sampler, collate_fn=collate,
                        num_workers=cfg.data.num_workers, pin_memory=dev.type == "cuda")
    resume_path = ctx.run_dir / f"{stage}_resume.pt"
    metrics_path = ctx.run_dir / f"{stage}_metrics.json"
    start, best, history = 0, -math.inf, []
    if resume_path.is_file():
        st = torch.load(resume_path, map_location="cpu", weights_only=True)
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["optimizer"])
        sched.load_state_dict(st["scheduler"])
        scaler.load_state_dict(st["scaler"])
        start, best = int(st["epoch"]) + 1, float(st["best"])
        history = json.loads(metrics_path.read_text()) if metrics_path.is_file() else []
        print(f"[{stage}] resuming after epoch {start - 1} (best val R@1 {best:.2f})")
    steps_per_epoch = len(sampler) if not sc.max_batches else min(sc.max_batches, len(sampler))
    for epoch in range(start, sc.epochs):
        scheduled = [g["lr"] for g in opt.param_groups]
        sampler.set_epoch(epoch)
        dataset.set_epoch(epoch)
        net.train()
        sums: dict[str, float] = {}
        n_batches, t0 = 0, time.perf_counter()
        total = len(sampler) if not sc.max_batches else min(sc.max_batches, len(sampler))
        bar = tqdm(loader, total=total, desc=f"{stage} {epoch + 1}/{sc.epochs}", disable=ctx.rank != 0,
                   leave=False)
        for b, batch in enumerate(bar):
            if sc.max_batches and b >= sc.max_batches:
                break
            batch = {k: v.to(dev, non_blocking=True) for k, v in batch.items()}
            step = epoch * steps_per_epoch + b
            if step < sc.warmup_steps:
                for g, lr in zip(opt.param_groups, scheduled):
                    g["lr"] = lr * (step + 1) / sc.warmup_steps
            elif step == sc.warmup_steps:
                for g, lr in zip(opt.param_groups, scheduled):
                    g["lr"] = lr
            with torch.autocast(device_type=dev.type, dtype=torch.float16, enabled=use_amp):
                loss, parts = loss_fn(net, batch, step)
            if not torch.isfinite(loss):
                _nan_diagnostic(ctx, stage, model, epoch, b, batch, parts)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            for k, v in parts.items():
                sums[k] = sums.get(k, 0.0) + float(v)
            n_batches += 1
            bar.set_postfix(loss=f"{parts['loss']:.4f}")
        for g, lr in zip(opt.param_groups, scheduled):   # the schedule continues from its own value
            g["lr"] = lr
        sched.step()
        row: dict[str, Any] = {"epoch": epoch, "lr": opt.param_groups[0]["lr"], "batches": n_batches,
                               "seconds": round(time.perf_counter() - t0, 2)}
        row.update({k: v / max(n_batches, 1) for k, v in sums.items()})
        if ctx.rank == 0:
            row.update(validate(model))
            improved = row.get("val_R@1", 0.0) > best
            if improved:
                best = row["val_R@1"]
                save_best(model, epoch, row)
            row["best_val_R@1"] = best
            history.append(row)
            write_json(metrics_path, history)
            _merge_metrics(ctx.run_dir, stage, history)
            for k, v in row.items():
                if isinstance(v, (int, float)) and k != "epoch":
                    ctx.writer.add_scalar(f"{stage}/{k}", v, epoch)
            ctx.writer.flush()
            buf = state_bytes({"model": model.state_dict(), "optimizer": opt.state_dict(),
                                "scheduler": sched.state_dict(), "scaler": scaler.state_dict(),
                                "epoch": epoch, "best": best})
            write_bytes_atomic(resume_path, buf)
            print(f"[{stage}] epoch {epoch + 1}/{sc.epochs} loss {row.get('loss', float('nan')):.4f} "
                  f"val R@1 {row.get('val_R@1', float('nan')):.2f} (best {best:.2f})")
            reason = collapse_reason(row, cfg.task.margin) if sc.collapse_check else None
            if reason:
                write_text_atomic(ctx.run_dir / f"{stage}.collapsed", reason + "\n")
                raise CollapsedTraining(
                    f"{ctx.run_dir}: the {stage} collapsed in epoch {epoch + 1} ({reason}); its results "
                    f"are not usable. Lower train_{stage}.lr, add train_{stage}.warmup_steps or enlarge "
                    f"train_{stage}.pairs_per_batch")
        if ctx.world > 1:
            torch.distributed.barrier()
    if ctx.rank == 0:
        write_text_atomic(ctx.run_dir / f"{stage}.done", "ok\n")


def _merge_metrics(run_dir: Path, stage: str, history: list[dict]) -> None:
    """metrics.json: {stage: [one row per epoch]} over all stages of the run."""
    path = run_dir / "metrics.json"
    merged = json.loads(path.read_text()) if path.is_file() else {}
    merged[stage] = history
    write_json(path, merged)


def state_bytes(obj: Any) -> bytes:
    """torch.save of ``obj`` into bytes (for atomic writes)."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def _nan_diagnostic(ctx: RunContext, stage: str, model: nn.Module, epoch: int, b: int,
                    batch: dict[str, torch.Tensor], parts: dict[str, float]) -> None:
    path = ctx.run_dir / f"nan_{stage}_epoch{epoch}_batch{b}.pt"
    write_bytes_atomic(path, state_bytes({
        "stage": stage, "epoch": epoch, "batch": b, "frame_indices": batch["index"].cpu(),
        "loss_parts": {k: float(v) for k, v in parts.items()},
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()}}))
    raise NonFiniteLoss(
        f"{stage}: non-finite loss at epoch {epoch + 1}, batch {b} (frames "
        f"{batch['index'].tolist()}; terms {parts}); weights and batch saved to {path}; "
        f"lower train_{stage}.lr or check those frames")


class NullWriter:
    """TensorBoard stand-in for DDP ranks other than 0 (they log nothing)."""
    def add_scalar(self, *a: Any, **k: Any) -> None: ...
    def flush(self) -> None: ...
    def close(self) -> None: ...
