"""A child process that saves over a prior map and stops inside the save.

Used by the crash-safety tests: the save pauses after some columns are in the
temp directory (just before ``poses.npy``), so a kill or a second writer lands
inside the save.  The caller ends the child with :func:`kill`.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def writer_paused_mid_save(path: Path, grow_by: int = 0, dim: int = 0) -> subprocess.Popen:
    """Start the child; returns once it is paused mid-save.

    grow_by: keyframes (unit vectors of ``dim``) the child adds before saving,
    so the half-written version differs from the one on disk."""
    grow = textwrap.dedent(f"""
        import numpy as np
        x = np.eye({dim}, dtype=np.float32)[:{grow_by}]
        m.add(x, np.arange({grow_by}), np.tile([0, 0, 0, 0, 0, 0, 1.0], ({grow_by}, 1)), "new",
              np.arange({grow_by}))
    """) if grow_by else ""
    script = textwrap.dedent(f"""
        import time
        import distilvpr_core.mapdb.priormap as pm
        import distilvpr_core.mapdb.storage as st
        m = pm.PriorMap.load({str(path)!r})
    """) + grow + textwrap.dedent(f"""
        real = st.save_npy
        def paused(p, arr):
            if p.name == "poses.npy":
                print("SAVING", flush=True)
                time.sleep(120)
            return real(p, arr)
        st.save_npy = paused
        m.save({str(path)!r})
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "SAVING", "the writer did not reach the paused save"
    except BaseException:
        kill(proc)
        raise
    return proc


def kill(proc: subprocess.Popen) -> None:
    """SIGKILL the child (no clean-up of its temp directory, as in a crash) and reap it."""
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
