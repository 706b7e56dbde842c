"""One (cell, seed) is trained by one process at a time, whoever started it.

Two runners on one sweep (two terminals, two W&B agents, a resubmitted SLURM array, the
local runner beside an array) each take a job's OS file lock (``flock`` through the
``filelock`` package) before training it: the second finds it held and skips the job (or
waits, ``--wait``), then re-reads the run's state, so a job finished meanwhile is not redone.
The lock lives in ``<group>/.locks/<run>.lock``, beside the run folder rather than in it
(``--overwrite`` empties the run folder, which must not free the lock). The OS releases it
when its process ends, however it ends, so a killed runner never blocks the next one; the
file itself stays (it is empty and harmless).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from filelock import FileLock, Timeout

LOCK_DIR = ".locks"


def lock_path(run_dir: Path, name: str | None = None) -> Path:
    """The lock of a run (or of ``name``, e.g. the group's report) in its group folder."""
    return run_dir.parent / LOCK_DIR / f"{name or run_dir.name}.lock"


@contextlib.contextmanager
def held(path: Path, wait: bool = False) -> Iterator[bool]:
    """Hold the lock ``path`` while in the block; yields False (holding nothing) when another
    process holds it and ``wait`` is False, else waits for it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(path, timeout=-1 if wait else 0)
    try:
        lock.acquire()
    except Timeout:
        yield False
        return
    try:
        yield True
    finally:
        lock.release()


def held_elsewhere(path: Path) -> bool:
    """Whether another process holds the lock ``path`` right now."""
    if not path.exists():
        return False
    with held(path) as mine:
        return not mine
