"""``distilvpr eval``: the flags, and the run (a VPR evaluation of one checkpoint).

``distilvpr eval --checkpoint runs/.../student_best.pt --set data.root=...``
embeds every test traversal with the checkpoint and reports Recall@1..25 and
Recall@1% over every ordered pair of test traversals (:mod:`.vpr`).  Kept
apart from :mod:`.vpr`, which imports torch at the top, so ``--help`` works
on a robot without torch.
"""
from __future__ import annotations

import argparse
import functools
import json
from pathlib import Path

from ..foundation.atomic import write_text_atomic
from ..foundation.config import add_config_args, load_config, read_yaml
from ..foundation.errors import UserError
from . import BRANCHES

HELP = "evaluate a checkpoint: Recall@N / Recall@1% over every ordered pair of test traversals"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``distilvpr eval``: the checkpoint, which branch and which traversal role to evaluate,
    the torch device, ``--output`` JSON, and ``--config``/``--set`` for the data and eval sections."""
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
    """Evaluate a student or teacher checkpoint on the dataset's traversals of ``--role`` with the
    preprocessing it was trained with; print the results, write ``--output``; returns 0."""
    import torch

    from ..data.datasets import select
    from ..data.traversals import open_traversals
    from ..models import load_student, load_teacher, read_checkpoint
    from ..models.checkpoint import checkpoint_contract
    from ..models.config import TeacherConfig
    from ..models.lidar import lidar_encoder_spec
    from .vpr import EvalCommandConfig, evaluate_model

    # A distil config may be passed as is: only its data and eval sections matter here.
    sections = {k: v for k, v in read_yaml(args.config).items() if k in ("data", "eval")} \
        if args.config else {}
    cfg = load_config(EvalCommandConfig, None, args.overrides, data=sections)
    ckpt = read_checkpoint(args.checkpoint)
    kind = ckpt["kind"]
    branch = args.branch if args.branch != "auto" else kind
    if (branch == "student") != (kind == "student"):
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
