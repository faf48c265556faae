"""VPR evaluation of a model over dataset traversals, and the ``eval`` subcommand.

``distilvpr eval --checkpoint runs/.../student_best.pt --set data.root=...``
embeds every test traversal with the checkpoint (student, teacher, or the
teacher's image branch) and reports Recall@1..25 and Recall@1% over every
ordered pair of test traversals (:mod:`distilvpr_core.evaluation.recall`).  Frames are
preprocessed with the checkpoint's own contract (input size, resize policy,
normalisation), whatever the data config says.  Where the dataset defines
the evaluation queries and their true neighbours (the Oxford/Boreas query
pickles), exactly those are used, as in the reference protocol.
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from ..foundation.atomic import write_text_atomic
from ..foundation.config import load_config, read_yaml, spec
from ..data.datasets import DataConfig, FrameIndex, PlaceDataset, collate, select
from ..data.traversals import open_traversals
from ..foundation.contract import PreprocessContract
from .recall import RecallResult, evaluate_runs

HELP = "evaluate a checkpoint: Recall@N / Recall@1% over every ordered pair of test traversals"
BRANCHES = ("auto", "student", "teacher", "teacher_image")


@dataclass
class EvalConfig:
    """The evaluation protocol (defaults are the paper's)."""
    radius_m: float = field(default=25.0, metadata=spec("true-neighbour radius, metres", gt=0))
    top_k: int = field(default=25, metadata=spec("retrievals per query (Recall@1..top_k)", ge=1))
    batch_size: int = field(default=32, metadata=spec("frames per forward pass", ge=1))
    database: str = field(default="", metadata=spec(
        "protocols D and S (datasets with split.json): the training traversal used as the map "
        "(empty = the first training traversal)"))
    town_map: str = field(default="map_noon", metadata=spec(
        "protocol T's deployment form (TD): the drive of each test town used as its map"))


@dataclass
class EvalCommandConfig:
    """The ``distilvpr eval`` config: which data, which protocol."""
    data: DataConfig = field(default_factory=DataConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


def embedder_for(model: nn.Module, branch: str) -> tuple[Callable[[dict[str, torch.Tensor]], torch.Tensor], bool]:
    """(batch -> descriptors [B, D], needs_lidar) for ``branch`` of ``model``."""
    module = model.module if hasattr(model, "module") else model
    if branch == "student":
        return (lambda b: module(b["image"])), False
    if branch == "teacher":
        return (lambda b: module(b["image"], b["lidar"])), True
    if branch == "teacher_image":
        return (lambda b: module.image(b["image"])), False
    raise ValueError(f"unknown branch {branch!r}; valid: {list(BRANCHES[1:])}")


@torch.no_grad()
def embed_frames(fn: Callable[[dict[str, torch.Tensor]], torch.Tensor], dataset: PlaceDataset,
                 batch_size: int, device: torch.device, num_workers: int = 0,
                 progress: str | None = None) -> np.ndarray:
    """Descriptors float32 [N, D] of every frame of ``dataset``, in frame order."""
    from tqdm import tqdm
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate,
                        num_workers=num_workers)
    out = []
    for batch in tqdm(loader, desc=progress, disable=progress is None, leave=False):
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        out.append(fn(batch).float().cpu())
    return torch.cat(out).numpy()


def dataset_protocol(traversals: Sequence[Any]) -> tuple[list[np.ndarray | None] | None,
                                                        dict[tuple[int, int], list[np.ndarray]] | None]:
    """(query_indices, true_neighbours) for :func:`recall.evaluate_runs` from the
    traversals' ``query_indices`` / ``true_neighbours`` / ``eval_set``
    (set by the Oxford/Boreas readers); (None, None) when no traversal has them."""
    by_set = {t.eval_set: k for k, t in enumerate(traversals) if getattr(t, "eval_set", None) is not None}
    queries = [getattr(t, "query_indices", None) for t in traversals]
    true: dict[tuple[int, int], list[np.ndarray]] = {}
    for i, t in enumerate(traversals):
        for m, lists in (getattr(t, "true_neighbours", None) or {}).items():
            if m in by_set:
                true[(i, by_set[m])] = lists
    return (queries if any(q is not None for q in queries) else None), (true or None)


def evaluate_model(model: nn.Module, branch: str, traversals: Sequence[Any], data: DataConfig,
                   cfg: EvalConfig, device: torch.device, lidar_prepare: Callable | None = None,
                   pairs: Sequence[tuple[int, int]] | None = None,
                   progress: str | None = None,
                   contract: PreprocessContract | None = None) -> RecallResult:
    """Recall of ``model`` over ``traversals`` (all ordered pairs, or ``pairs``),
    with the dataset's query subsets and true-neighbour lists where it has them.
    ``contract``: the model's preprocessing (default: ``data.contract()``)."""
    fn, needs_lidar = embedder_for(model, branch)
    contract = contract or data.contract()
    was_training = model.training
    model.eval()
    descs, positions = [], []
    for trav in traversals:
        ds = PlaceDataset(FrameIndex([trav]), contract,
                          lidar_prepare=lidar_prepare if needs_lidar else None)
        descs.append(embed_frames(fn, ds, cfg.batch_size, device, data.num_workers,
                                  f"{progress} {trav.name}" if progress else None))
        positions.append(np.asarray(trav.positions, dtype=np.float64))
    model.train(was_training)
    queries, true = dataset_protocol(traversals)
    res = evaluate_runs(descs, positions, cfg.top_k, cfg.radius_m, pairs=pairs,
                        query_indices=queries, true_neighbours=true)
    return dataclasses.replace(res, run_names=tuple(t.name for t in traversals))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..app.cli import add_config_args
    parser.add_argument("--checkpoint", required=True, metavar="PT",
                        help="student or teacher checkpoint (.pt) written by 'distilvpr distil'")
    parser.add_argument("--branch", default="auto", choices=BRANCHES,
                        help="what to evaluate: auto = the checkpoint's model; teacher_image = "
                             "the teacher's camera branch alone")
    parser.add_argument("--role", default="test", choices=("train", "val", "test"),
                        help="which traversals of the dataset to evaluate on (default: test)")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda:0")
    parser.add_argument("--output", metavar="JSON", help="also write the results to this JSON file")
    add_config_args(parser, None)


def run(args: argparse.Namespace) -> int:
    from ..models import load_student, load_teacher, read_checkpoint
    from ..models.checkpoint import checkpoint_contract
    from ..models.config import TeacherConfig
    from ..models.lidar import lidar_encoder_spec
    # A distil config may be passed as is: only its data and eval sections matter here.
    sections = {k: v for k, v in read_yaml(args.config).items() if k in ("data", "eval")} \
        if args.config else {}
    cfg = load_config(EvalCommandConfig, None, args.overrides, data=sections)
    ckpt = read_checkpoint(args.checkpoint)
    kind = ckpt["kind"]
    branch = args.branch if args.branch != "auto" else kind
    if (branch == "student") != (kind == "student"):
        from ..foundation.errors import UserError
        raise UserError(f"--branch {branch} does not fit a {kind} checkpoint ({args.checkpoint})")
    # Evaluate with the preprocessing the model was trained with, not the data config's.
    contract = checkpoint_contract(ckpt, args.checkpoint)
    if sections.get("data") or any(o.startswith("data.") for o in args.overrides or ()):
        said = (tuple(cfg.data.input_size), cfg.data.resize)
    else:
        said = (contract.input_size, contract.resize)
    if said != (contract.input_size, contract.resize):
        print(f"note: using the checkpoint's preprocessing {list(contract.input_size)} {contract.resize} "
              f"(the data config says {list(cfg.data.input_size)} {cfg.data.resize})")
    cfg.data.input_size, cfg.data.resize = contract.input_size, contract.resize
    model, model_cfg = load_student(args.checkpoint) if kind == "student" else load_teacher(args.checkpoint)
    prepare = None
    if branch == "teacher":
        tcfg = load_config(TeacherConfig, data=dict(model_cfg, pretrained="none"))
        prepare = functools.partial(lidar_encoder_spec(tcfg.lidar_encoder).prepare, cfg=tcfg)
    device = torch.device(args.device)
    travs = select(open_traversals(cfg.data), args.role, f"{cfg.data.root}")
    if len(travs) < 2:
        from ..foundation.errors import UserError
        raise UserError(f"{cfg.data.root}: evaluation needs >= 2 traversals with role {args.role!r}, "
                        f"found {[t.name for t in travs]}")
    res = evaluate_model(model.to(device), branch, travs, cfg.data, cfg.eval, device, prepare,
                         progress="embed", contract=contract)
    out = {"checkpoint": str(args.checkpoint), "branch": branch, "role": args.role,
           "traversals": [t.name for t in travs], **res.to_dict(),
           "recall_at": [round(float(v), 4) for v in res.recall_at]}
    print(f"{branch} on {len(travs)} {args.role} traversals ({res.pairs} pairs, {res.queries} queries): "
          f"R@1 {res.r1:.2f}  R@5 {res.recall_at[min(4, len(res.recall_at) - 1)]:.2f}  "
          f"R@1% {res.recall_1pct:.2f}")
    for pair, r1 in out.get("R@1 by pair", {}).items():
        print(f"  {pair:40s} R@1 {r1:6.2f}")
    if args.output:
        write_text_atomic(Path(args.output), json.dumps(out, indent=2) + "\n")
    return 0
