"""Training stages from one config (the ``distil`` subcommand's flags are in :mod:`.cli`).

Stages (``run.stages``, in this order): ``teacher`` trains the camera+LiDAR
teacher with the batch-hard triplet loss; ``cache`` embeds the training set
once with the best teacher; ``student`` trains the camera-only student with
the triplet loss plus the chosen distillation against the cached teacher
embeddings; ``eval`` runs the Recall@N protocol on the test traversals.
Model selection uses the validation traversal(s) only.  Every stage writes
into one run directory and is resumable (``run.resume: RUN_DIR``).

Multi-GPU: ``torchrun --nproc_per_node=N -m distilvpr_core.app.cli distil ...``;
rank 0 writes files and evaluates.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from ..foundation.atomic import write_bytes_atomic
from ..foundation.config import load_config
from ..data.datasets import FrameIndex, PlaceDataset, select
from ..data.traversals import open_split_traversals
from ..distill import BatchHardTripletLoss, build_distill_loss
from ..foundation.errors import UserError
from ..evaluation.vpr import evaluate_model
from ..models import (build_student, build_teacher, load_teacher,
                     save_checkpoint)
from .config import STAGES, DistilRunConfig, RunConfig, StageConfig, TaskConfig  # noqa: F401 (re-export)
from .eval_stage import lidar_prepare as _lidar_prepare, stage_eval  # noqa: F401 (stage_eval re-export)
from .loop import embedding_spread, place_masks  # noqa: F401 (re-export)
from .loop import NonFiniteLoss, NullWriter, RunContext, state_bytes, train_stage, write_json  # noqa: F401


# ----------------------------------------------------------------------------- helpers

def _dist_info() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def _device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UserError(f"run.device: {name!r} but CUDA is not available; use run.device=cpu")
        if name == "cuda":   # set_device needs an index; torchrun gives each rank its own
            name = f"cuda:{int(os.environ.get('LOCAL_RANK', torch.cuda.current_device()))}"
    try:
        return torch.device(name)
    except RuntimeError:
        raise UserError(f"run.device: {name!r} is not a torch device; use auto, cpu or cuda:N") from None


def seed_everything(seed: int) -> None:
    """Seed torch (CPU and CUDA) and numpy's legacy global RNG."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)


# ----------------------------------------------------------------------------- stages

def _val_pairs(ctx: RunContext) -> tuple[list[Any], list[tuple[int, int]]]:
    """Validation runs: val traversals as queries against each other and the training traversals
    of their own town (a validation town has none; other towns hold no true neighbour)."""
    val = select(ctx.traversals, "val", f"{ctx.cfg.data.root} (model selection)")
    select(ctx.traversals, "train", ctx.cfg.data.root)
    val_towns = {getattr(t, "town", "") for t in val}
    train = [t for t in ctx.traversals if t.role == "train" and getattr(t, "town", "") in val_towns]
    runs = val + train
    town = [getattr(t, "town", "") for t in runs]
    pairs = [(i, j) for i in range(len(val)) for j in range(len(runs)) if i != j and town[i] == town[j]]
    return runs, pairs


def _validator(ctx: RunContext, branch: str, prepare: Callable | None) -> Callable[[nn.Module], dict[str, float]]:
    runs, pairs = _val_pairs(ctx)

    def validate(model: nn.Module) -> dict[str, float]:
        res = evaluate_model(model, branch, runs, ctx.cfg.data, ctx.cfg.eval, ctx.device, prepare,
                             pairs=pairs)
        return {"val_R@1": res.r1, "val_R@1%": res.recall_1pct}
    return validate


def _task(ctx: RunContext, frames: FrameIndex) -> tuple[BatchHardTripletLoss, torch.Tensor]:
    tc = ctx.cfg.task
    # float64 on purpose: see place_masks.
    return (BatchHardTripletLoss(tc.margin, tc.swap),
            torch.as_tensor(frames.positions, dtype=torch.float64, device=ctx.device))


def stage_teacher(ctx: RunContext) -> Path:
    """Train the teacher; returns the path of its best checkpoint."""
    cfg = ctx.cfg
    frames = FrameIndex(select(ctx.traversals, "train", cfg.data.root))
    prepare = _lidar_prepare(cfg.teacher)
    dataset = PlaceDataset(frames, cfg.data.contract(), cfg.aug, prepare, cfg.run.seed)
    model = build_teacher(cfg.teacher)
    triplet, pos = _task(ctx, frames)
    best_path = ctx.run_dir / "teacher_best.pt"

    def loss_fn(net: nn.Module, batch: dict[str, torch.Tensor], step: int) -> tuple[torch.Tensor, dict[str, float]]:
        emb = net(batch["image"], batch["lidar"]).float()
        p, n = place_masks(pos[batch["index"]], cfg.task.pos_radius_m, cfg.task.neg_radius_m)
        loss, stats = triplet(emb, p, n)
        return loss, {"loss": loss.item(), "triplet": loss.item(), "triplet_nonzero": stats.non_zero_fraction,
                      "spread": embedding_spread(emb)}

    train_stage(ctx, "teacher", model, cfg.train_teacher, dataset, frames, loss_fn,
                 _validator(ctx, "teacher", prepare), _best_saver(cfg, "teacher", cfg.teacher, best_path))
    return best_path


def _best_saver(cfg: DistilRunConfig, kind: str, model_cfg: Any, path: Path) -> Callable[[nn.Module, int, dict], None]:
    """``save(model, epoch, metrics row)``: the stage's best checkpoint, with the run's preprocessing contract."""
    def save(m: nn.Module, epoch: int, row: dict) -> None:
        save_checkpoint(path, m, kind, model_cfg, cfg.data.input_size, epoch, _numbers(row),
                        preprocess=cfg.data.contract().to_dict())
    return save


def _numbers(row: dict) -> dict[str, float]:
    return {k: float(v) for k, v in row.items() if isinstance(v, (int, float))}


def _teacher_path(ctx: RunContext) -> Path:
    path = Path(ctx.cfg.run.teacher_checkpoint) if ctx.cfg.run.teacher_checkpoint \
        else ctx.run_dir / "teacher_best.pt"
    if not path.is_file():
        raise UserError(f"{path}: no teacher checkpoint; run the 'teacher' stage first or set "
                        "run.teacher_checkpoint: PATH")
    return path


def stage_cache(ctx: RunContext) -> Path:
    """Embed every training frame once with the best teacher -> teacher_cache.pt."""
    from ..evaluation.vpr import embed_frames, embedder_for
    from ..models.config import TeacherConfig as _TC
    path = _teacher_path(ctx)
    teacher, tcfg_dict = load_teacher(path)
    tcfg = load_config(_TC, data=dict(tcfg_dict, pretrained="none"))
    frames = FrameIndex(select(ctx.traversals, "train", ctx.cfg.data.root))
    ds = PlaceDataset(frames, ctx.cfg.data.contract(), None, _lidar_prepare(tcfg))
    fn, _ = embedder_for(teacher.to(ctx.device), "teacher")
    emb = embed_frames(fn, ds, ctx.cfg.eval.batch_size, ctx.device, ctx.cfg.data.num_workers,
                       "cache teacher")
    out = ctx.run_dir / "teacher_cache.pt"
    write_bytes_atomic(out, state_bytes({"embeddings": torch.from_numpy(emb),
                                          "teacher": str(path), "frames": len(frames)}))
    print(f"[cache] {emb.shape[0]} teacher embeddings of size {emb.shape[1]} -> {out}")
    return out


def load_cache(ctx: RunContext, frames: FrameIndex) -> torch.Tensor:
    """Cached teacher embeddings float32 [N_train, D_t], checked against the training frames."""
    path = Path(ctx.cfg.run.teacher_cache) if ctx.cfg.run.teacher_cache else ctx.run_dir / "teacher_cache.pt"
    if not path.is_file():
        raise UserError(f"{path}: no teacher embedding cache; run the 'cache' stage first "
                        "or set run.teacher_cache: PATH")
    st = torch.load(path, map_location="cpu", weights_only=True)
    if int(st["frames"]) != len(frames):
        raise UserError(f"{path}: cache holds {st['frames']} frames but the training set has "
                        f"{len(frames)}; rerun the 'cache' stage")
    return st["embeddings"].float()


def stage_student(ctx: RunContext) -> Path:
    """Train the student: triplet + distillation against the cached teacher embeddings."""
    cfg = ctx.cfg
    frames = FrameIndex(select(ctx.traversals, "train", cfg.data.root))
    distill = build_distill_loss(cfg.distill).to(ctx.device)
    has_terms = len(getattr(distill, "terms", ())) > 0
    teacher_emb = load_cache(ctx, frames).to(ctx.device) if has_terms else None
    if teacher_emb is not None and getattr(distill, "requires_same_dim", False) \
            and teacher_emb.shape[1] != cfg.student.dim:
        raise UserError(f"distill.method {cfg.distill.method!r} compares descriptors directly, but the "
                        f"teacher gives D={teacher_emb.shape[1]} and "
                        f"student.dim is {cfg.student.dim}; set student.dim={teacher_emb.shape[1]} "
                        "or use a teacher of the student's size")
    dataset = PlaceDataset(frames, cfg.data.contract(), cfg.aug, None, cfg.run.seed)
    model = build_student(cfg.student)
    triplet, pos = _task(ctx, frames)
    best_path = ctx.run_dir / "student_best.pt"

    def loss_fn(net: nn.Module, batch: dict[str, torch.Tensor], step: int) -> tuple[torch.Tensor, dict[str, float]]:
        emb = net(batch["image"]).float()
        p, n = place_masks(pos[batch["index"]], cfg.task.pos_radius_m, cfg.task.neg_radius_m)
        task, stats = triplet(emb, p, n)
        parts = {"triplet": task.item(), "triplet_nonzero": stats.non_zero_fraction,
                 "spread": embedding_spread(emb)}
        loss = cfg.task.student_weight * task
        if teacher_emb is not None:
            dl, dparts = distill(emb, teacher_emb[batch["index"]], step)
            loss = loss + dl
            parts.update(dparts)
        parts["loss"] = loss.item()
        return loss, parts

    train_stage(ctx, "student", model, cfg.train_student, dataset, frames, loss_fn,
                 _validator(ctx, "student", None), _best_saver(cfg, "student", cfg.student, best_path))
    return best_path


# ----------------------------------------------------------------------------- entry

def check_config(cfg: DistilRunConfig, traversals: list[Any]) -> None:
    """Cross-checks that need the dataset: LiDAR for the teacher, roles present."""
    if "teacher" in cfg.run.stages or ("cache" in cfg.run.stages and not cfg.run.teacher_checkpoint):
        no_lidar = [t.name for t in traversals if not t.has_lidar]
        if no_lidar:
            raise UserError(f"{cfg.data.root}: the teacher's LiDAR branch needs LiDAR scans, but "
                            f"traversal(s) {no_lidar} are camera-only; drop 'teacher' from run.stages "
                            "and set run.teacher_checkpoint to a trained teacher")
    for role in ("train", "val"):
        select(traversals, role, f"{cfg.data.root}")


def run_pipeline(cfg: DistilRunConfig, argv: list[str] | None = None) -> Path:
    """Run the configured stages; returns the run directory."""
    if cfg.run.threads:
        torch.set_num_threads(cfg.run.threads)
    world_env = int(os.environ.get("WORLD_SIZE", "1"))
    own_group = world_env > 1 and not torch.distributed.is_initialized()
    if own_group:  # started by torchrun
        torch.distributed.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    try:
        return _run_stages(cfg, argv)
    finally:
        if own_group:
            torch.distributed.destroy_process_group()


def _run_stages(cfg: DistilRunConfig, argv: list[str] | None) -> Path:
    from .rundir import create_run_dir
    rank, world = _dist_info()
    device = _device(cfg.run.device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    seed_everything(cfg.run.seed + rank)
    traversals, split = open_split_traversals(cfg.data)
    check_config(cfg, traversals)
    if cfg.run.resume:
        run_dir = Path(cfg.run.resume)
        if not (run_dir / "config.yaml").is_file():
            raise UserError(f"run.resume: {run_dir} is not a run directory (no config.yaml)")
    elif rank == 0:
        run_dir = create_run_dir(cfg.run.root, cfg.run.name, cfg, argv)
    if world > 1:
        box = [str(run_dir) if rank == 0 else None]
        torch.distributed.broadcast_object_list(box, src=0)
        run_dir = Path(box[0])
    from torch.utils.tensorboard import SummaryWriter
    writer = SummaryWriter(str(run_dir / "tb")) if rank == 0 else NullWriter()
    ctx = RunContext(cfg, run_dir, device, rank, world, traversals, writer, split)
    if rank == 0:
        print(f"[distil] run directory {run_dir} on {device}" + (f" x{world}" if world > 1 else ""))
    try:
        for stage in cfg.run.stages:
            done = stage in ("teacher", "student") and (run_dir / f"{stage}.done").is_file()
            if done and rank == 0:
                print(f"[{stage}] already done in {run_dir}, skipped")
            # cache and eval run on rank 0 only; every rank meets at the barrier below.
            if not done and (rank == 0 or stage in ("teacher", "student")):
                # Each stage starts from the seed, so a student is initialised the same
                # whether or not the teacher was trained in this process.
                seed_everything(cfg.run.seed + rank)
                {"teacher": stage_teacher, "cache": stage_cache, "student": stage_student,
                 "eval": stage_eval}[stage](ctx)
            if world > 1:
                torch.distributed.barrier()
    finally:
        writer.close()
    return run_dir

