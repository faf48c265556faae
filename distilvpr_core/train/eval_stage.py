"""The ``eval`` stage of ``distilvpr distil``: Recall of the run's best models on the test traversals.

Without a geographic split: every ordered pair of test traversals.  With one
(``split.json``): protocols P, D and S (:mod:`distilvpr_core.evaluation.protocols`), the
top-level R@N being P's.
"""
from __future__ import annotations

import functools
from typing import Any, Callable

import numpy as np
from torch import nn

from ..foundation.config import load_config
from ..data.datasets import FrameIndex, PlaceDataset, select
from ..foundation.errors import UserError
from ..evaluation.vpr import evaluate_model
from ..models import TeacherConfig, lidar_encoder_spec, load_teacher
from ..evaluation.protocols import LETTERS
from .loop import RunContext, write_json


def lidar_prepare(tcfg: TeacherConfig) -> Callable[[np.ndarray], np.ndarray]:
    """The teacher's LiDAR input maker: points float32 [P, 4] -> its encoder's input array."""
    # A partial of a module-level function pickles into DataLoader workers; a lambda would not.
    return functools.partial(lidar_encoder_spec(tcfg.lidar_encoder).prepare, cfg=tcfg)


def stage_eval(ctx: RunContext) -> dict[str, Any]:
    """Recall on the test traversals of the best student (and teacher, if this run has one).

    On a dataset with a geographic split every model is scored under the
    protocols P, D and S (:mod:`distilvpr_core.evaluation.protocols`), and with test towns
    (data.test_towns) under T and TD; its top-level R@N are protocol P's (T's without a
    split).  Without either: every ordered pair of test traversals.
    """
    from ..models import load_student
    cfg = ctx.cfg
    tests = select(ctx.traversals, "test", cfg.data.root)
    town_tests = [t for t in tests if getattr(t, "town", "")]
    if len(tests) < 2:
        raise UserError(f"{cfg.data.root}: evaluation needs >= 2 test traversals, found "
                        f"{[t.name for t in tests]}")
    results: dict[str, Any] = {"test_traversals": [t.name for t in tests]}
    models: list[tuple[str, nn.Module, Callable | None]] = []
    student_path = ctx.run_dir / "student_best.pt"
    if student_path.is_file():
        models.append(("student", load_student(student_path)[0], None))
    teacher_path = ctx.run_dir / "teacher_best.pt"
    if teacher_path.is_file():
        teacher, tcfg = load_teacher(teacher_path)
        tc = load_config(TeacherConfig, data=dict(tcfg, pretrained="none"))
        models += [("teacher", teacher, lidar_prepare(tc)), ("teacher_image", teacher, None)]
    for name, model, prepare in models:
        model.to(ctx.device)
        if ctx.split is None and not town_tests:
            results[name] = evaluate_model(model, name, tests, cfg.data, cfg.eval, ctx.device, prepare,
                                           progress=f"eval {name}").to_dict()
        else:
            results[name] = _eval_protocols(ctx, model, name, prepare, tests)
    write_json(ctx.run_dir / "eval.json", results)
    for name in ("teacher", "teacher_image", "student"):
        if name in results:
            r = results[name]
            extra = "  ".join(f"{LETTERS.get(k, k)} {v['R@1']:.2f}" for k, v in r.get("protocols", {}).items())
            print(f"[eval] {name:13s} R@1 {r['R@1']:.2f}  R@1% {r['R@1%']:.2f}  ({r['pairs']} pairs)"
                  + (f"  by protocol R@1: {extra}" if extra else ""))
    return results


def _eval_protocols(ctx: RunContext, model: nn.Module, branch: str, prepare: Callable | None,
                    tests: list[Any]) -> dict[str, Any]:
    """P/D/S (with a split) and T/TD (with test towns) of one model; the top-level keys are
    P's (the paper's protocol), or T's without a split."""
    from ..evaluation.vpr import embed_frames, embedder_for
    from ..evaluation.protocols import evaluate_protocols, mapping_traversal
    cfg = ctx.cfg
    fn, needs_lidar = embedder_for(model, branch)
    model.eval()

    def embed(trav: Any) -> np.ndarray:
        ds = PlaceDataset(FrameIndex([trav]), cfg.data.contract(), lidar_prepare=prepare if needs_lidar else None)
        return embed_frames(fn, ds, cfg.eval.batch_size, ctx.device, cfg.data.num_workers,
                            f"eval {branch} {trav.name}")
    main_tests = [t for t in tests if not getattr(t, "town", "")]
    town_tests = [t for t in tests if getattr(t, "town", "")]
    database = None
    if ctx.split is not None:
        main_train = [t for t in ctx.traversals if t.role == "train" and not getattr(t, "town", "")]
        database = mapping_traversal(main_train, cfg.eval.database)
    protos = evaluate_protocols(embed, main_tests, database, ctx.split, cfg.eval.top_k, cfg.eval.radius_m,
                                town_tests=town_tests, town_map=cfg.eval.town_map)
    head = protos["unseen_places"] if "unseen_places" in protos else protos["unseen_town"]
    return {**head, "protocols": protos}


