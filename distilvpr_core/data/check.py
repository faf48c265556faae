"""``distilvpr doctor --data DIR``: what a dataset folder holds, before a long run.

Reports, without running any code from the folder: which expected files are
present, the classes each pickle names (read with ``pickletools``, never
unpickled for this), the traversals per role with frame and query counts,
frames whose scan or image is missing, whether the query pickle's true
neighbour lists agree with a 25 m recomputation, and the shape and extent
of a sample cloud per run (to set the BEV grid).  Returns the number of
problems found (0 = ready).
"""
from __future__ import annotations

import pickletools
from pathlib import Path
from typing import Any, Callable


from ..foundation.errors import UserError


def pickle_globals(path: Path) -> list[str]:
    """``module.name`` of every global a pickle file refers to (the file is not unpickled)."""
    found: list[str] = []
    strings: list[Any] = []
    memo: dict[int, Any] = {}
    with path.open("rb") as fh:
        for op, arg, _ in pickletools.genops(fh):
            if op.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE", "BINUNICODE8"):
                strings.append(arg)
            elif op.name == "MEMOIZE":
                memo[len(memo)] = strings[-1] if strings else None
            elif op.name in ("BINPUT", "LONG_BINPUT", "PUT"):
                memo[int(arg)] = strings[-1] if strings else None
            elif op.name in ("BINGET", "LONG_BINGET", "GET"):
                strings.append(memo.get(int(arg)))
            elif op.name in ("GLOBAL", "INST"):
                found.append(str(arg).replace(" ", "."))
            elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                found.append(f"{strings[-2]}.{strings[-1]}")
    return sorted(set(found))


def _report_pickles(root: Path, image_root: Path, names: list[str], say: Callable[[str], None]) -> int:
    from .benchmark_pickles import _NUMPY, _TUPLE_MODULES, load_pickle
    allowed = {f"{m}.{n}" for m, n in _NUMPY} | {f"{m}.TrainingTuple" for m in _TUPLE_MODULES} \
        | {"copyreg._reconstructor", "builtins.object", "__builtin__.object"}
    problems = 0
    for name in names:
        path = next((d / name for d in (root, image_root) if (d / name).is_file()), None)
        if path is None:
            say(f"  --  {name:42s} missing")
            continue
        try:
            classes = pickle_globals(path)
        except Exception as exc:  # noqa: BLE001 -- a broken file is what we report
            say(f"  !!  {name:42s} unreadable ({type(exc).__name__}: {exc})")
            problems += 1
            continue
        bad = [c for c in classes if c not in allowed]
        if not bad:
            # The listing above follows strings through the opcode stream and can be
            # fooled; the verdict is the loader's own: the restricted unpickler (which
            # runs no code) either builds the file or refuses it.
            try:
                load_pickle(path)
            except UserError as exc:
                bad = [str(exc).split(": ", 1)[-1][:160]]
        problems += bool(bad)
        say(f"  {'!!' if bad else 'ok'}  {name:42s} {path.stat().st_size:>10d} B  classes: "
            f"{', '.join(classes) or 'none'}" + (f"  REFUSED: {bad}" if bad else ""))
    return problems


def _report_traversals(travs: list[Any], say: Callable[[str], None]) -> int:
    problems = 0
    for role in ("train", "val", "test"):
        chosen = [t for t in travs if t.role == role]
        frames = sum(len(t) for t in chosen)
        say(f"  {role:5s}: {len(chosen)} traversal(s), {frames} frames")
        for t in chosen:
            q = getattr(t, "query_indices", None)
            missing_img = sum(not t.image_path(i).is_file() for i in range(len(t))) \
                if hasattr(t, "image_path") else 0
            missing_scan = sum(not (t.root / r).is_file() for r in t.relpaths) if hasattr(t, "relpaths") else 0
            problems += bool(missing_img or missing_scan)
            extra = f", {len(q)} queries" if q is not None else ""
            miss = f"  MISSING: {missing_img} images, {missing_scan} scans" if missing_img or missing_scan else ""
            say(f"      {t.name:36s} {len(t):6d} frames{extra}{miss}")
    return problems


def _report_clouds(travs: list[Any], say: Callable[[str], None]) -> int:
    problems, seen = 0, set()
    for t in travs:
        run = getattr(t, "run", t.name)
        if not getattr(t, "has_lidar", False) or run in seen:
            continue
        seen.add(run)
        try:
            pts = t.load_lidar(0)
        except UserError as exc:
            say(f"  !!  {t.name}: {exc}")
            problems += 1
            continue
        lo, hi = pts[:, :3].min(axis=0), pts[:, :3].max(axis=0)
        say(f"  ok  {t.name:36s} {pts.shape[0]} points, x [{lo[0]:.2f}, {hi[0]:.2f}] "
            f"y [{lo[1]:.2f}, {hi[1]:.2f}] z [{lo[2]:.2f}, {hi[2]:.2f}]")
    return problems


def check_dataset(cfg: Any, say: Callable[[str], None] = print) -> int:
    """Print a report on the dataset of ``cfg`` (a DataConfig); returns the number of problems."""
    from .traversals import open_traversals
    from .eval_sets import neighbour_list_disagreements
    root = Path(cfg.root)
    image_root = Path(cfg.image_root) if cfg.image_root else root
    say(f"dataset {root} (format {cfg.format}, images {image_root})")
    problems = 0
    if cfg.format in ("oxford", "boreas"):
        if cfg.format == "oxford":
            from .oxford_format import oxford_layout
            spec = oxford_layout()
        else:
            from .boreas import BOREAS as spec
        say("files:")
        problems += _report_pickles(root, image_root, [spec.train_pickle, spec.val_pickle, spec.eval_database,
                                                       spec.eval_query, spec.l2i_pickle], say)
    try:
        travs = open_traversals(cfg)
    except UserError as exc:
        say(f"  !!  cannot open the dataset: {exc}")
        return problems + 1
    say("traversals per role:")
    problems += _report_traversals(travs, say)
    for role in ("train", "val", "test"):
        if not any(t.role == role for t in travs):
            say(f"  !!  no {role} traversal" + (" (set data.val_runs to hold out training runs)"
                                                   if role == "val" else ""))
            problems += 1
    tests = [t for t in travs if getattr(t, "true_neighbours", None) is not None]
    if tests:
        differ, total = neighbour_list_disagreements(tests)
        say(f"query pickle: {total} neighbour lists, {differ} differ from the 25 m recomputation")
    elif any(t.role == "test" for t in travs):
        say("query pickle: none; every test frame is a query, true neighbours within eval.radius_m")
    say("clouds (first frame of each run):")
    problems += _report_clouds(travs, say)
    say(f"{problems} problem(s) found" if problems else "ready")
    return problems
