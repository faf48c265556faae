"""VPR evaluation of a model over dataset traversals (the ``eval`` subcommand is :mod:`.cli`).

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

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from ..foundation.config import spec
from ..data.datasets import DataConfig, FrameIndex, PlaceDataset, collate
from ..foundation.contract import PreprocessContract
from . import BRANCHES
from .recall import RecallResult, evaluate_runs



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

