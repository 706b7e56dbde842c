"""Running one sweep job, the same way whoever runs it: the local runner, a W&B agent (which
calls the runner) or an array task of ``--launcher local|slurm`` (``ablations.launch``).

:func:`execute` takes the job's lock (``ablations.job_lock``), re-reads the run's state (a
job finished meanwhile by another runner is not redone), runs its ``ptx fit`` and reads the
outcome from the run record. ``sweep.json`` and the report are written under group-wide
locks, so concurrent runners neither lose each other's entries nor write one report at once.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from ablations.job_lock import held, lock_path
from ablations.plan import DONE, RESUME, Job, current_action, fit_args
from ablations.sweeps import Sweep, SweepError
from datamodules.io.atomic import write_text_atomic
from lightning_modules.records import FAILED, FINISHED, read_status

SKIPPED = "skipped"  # a job outcome besides the record statuses FINISHED and FAILED


@dataclass(frozen=True)
class SweepContext:
    """What every job of one sweep invocation shares (picklable, for array tasks).

    ``since`` is when the invocation started (time.time()): see ``plan.current_action``.
    """

    sweep: Sweep
    profile: str
    data_dir: str | None
    root: Path
    group: str
    extra: tuple[str, ...] = ()
    force: bool = False
    since: float = field(default_factory=time.time)
    folds: int | None = None

    def job(self, cell_id: str, seed: int, fold: int | None = None) -> Job:
        cell = self.sweep.cell(cell_id)
        run_dir = self.root / self.group / cell.run_name(seed, fold)
        action = current_action(run_dir, self.force, self.since)
        return Job(cell, seed, run_dir, action, fold, self.folds if fold is not None else None)

    def args(self, job: Job) -> list[str]:
        """The job's ``ptx fit`` arguments."""
        sweep, extra = self.sweep, list(self.extra)
        return fit_args(sweep, job, self.profile, self.data_dir, self.root, self.group, extra)


def parallel_jobs(text: str, auto: Callable[[], int]) -> int:
    """``--parallel``: a positive integer, or ``auto()`` for "auto"."""
    if str(text) == "auto":
        return auto()
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise SweepError(f"--parallel {text!r}: give a number of jobs (1 or more) or auto")
    return value


def say(message: str) -> None:
    print(f"[sweep] {message}", flush=True)


def run_isolated(args: list[str]) -> int:
    """One ``ptx fit`` in a child process (``--isolate``); its output goes straight to ours."""
    command = [sys.executable, "-m", "experiments.cli", "fit", *args]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    child = subprocess.Popen(command, env=env)
    try:
        return child.wait()
    except BaseException:  # Ctrl-C or kill: stop the cell too, it resumes next time
        child.terminate()
        try:
            child.wait(timeout=30)
        except subprocess.TimeoutExpired:
            child.kill()
        raise


def run_in_process(args: list[str]) -> int:
    """One ``ptx fit`` in this process: no second start-up of torch and Lightning per cell
    (~10 s, a tenth of a quick CPU cell). An exception fails the cell, not the sweep; an
    interruption (Ctrl-C, kill; Lightning turns it into SystemExit) stops the sweep."""
    from experiments.train import fit_cli

    try:
        return fit_cli(args)
    except (KeyboardInterrupt, SystemExit):
        raise KeyboardInterrupt from None
    except Exception as err:
        if type(err).__name__ == "SIGTERMException":  # Lightning's own SIGTERM handling
            raise KeyboardInterrupt from None
        traceback.print_exc()
        return 1


def outcome(job: Job, rc: int) -> tuple[str, str]:
    """(FINISHED or FAILED, a note) from the run record and ``ptx fit``'s exit status."""
    record = read_status(job.run_dir)
    if rc == 0 and record.get("status") == FINISHED:
        test = record.get("test") or {}
        return FINISHED, f"test dice {test.get('dice', float('nan')):.4f}"
    return FAILED, record.get("error") or f"ptx fit exited with status {rc}"


def execute(
    ctx: SweepContext,
    job: Job,
    run: Callable[[list[str]], int],
    wait: bool = False,
    announce: Callable[[Job], None] | None = None,
) -> tuple[str, str]:
    """Train ``job`` unless another process holds it: (status, note), status one of
    FINISHED, FAILED, SKIPPED (held elsewhere, not waiting) or DONE (finished meanwhile).
    ``announce(job)`` is called just before training starts (the job's current action)."""
    path = lock_path(job.run_dir)
    with held(path) as mine:
        if mine:
            return _train(ctx, job, run, announce)
    if not wait:
        return SKIPPED, f"another runner holds its lock ({path}) and trains it"
    say(f"waiting for another runner to finish {job.name} (its lock {path})")
    with held(path, wait=True):
        return _train(ctx, job, run, announce)


def _train(ctx, job, run, announce) -> tuple[str, str]:
    job = replace(job, action=current_action(job.run_dir, ctx.force, ctx.since))
    if job.action == DONE:
        return DONE, "finished meanwhile by another runner"
    if announce is not None:
        announce(job)
    return outcome(job, run(ctx.args(job)))


def verb(job: Job) -> str:
    return "resuming" if job.action == RESUME else "starting"


def record_state(ctx: SweepContext, runs: dict[str, dict]) -> None:
    """Merge ``runs`` ({name: {status, note}}) into ``<group>/sweep.json`` (what happened to
    each run at its last attempt), under the group's lock so runners keep each other's."""
    path = ctx.root / ctx.group / "sweep.json"
    with held(lock_path(path, "sweep.json"), wait=True):
        try:
            state = json.loads(path.read_text())
        except (OSError, ValueError):
            state = {}
        state.update(sweep=ctx.sweep.name, profile=ctx.profile)
        state["runs"] = {**(state.get("runs") or {}), **runs}
        write_text_atomic(path, json.dumps(state, indent=1) + "\n")


def write_group_report(ctx: SweepContext, out_dir: Path) -> bool:
    """``ptx report`` of the sweep's group, one writer at a time; False (said) on failure."""
    from ablations.report import write_report

    with held(lock_path(ctx.root / ctx.group / "report", "report"), wait=True):
        try:
            write_report(replace(ctx.sweep, group=ctx.group), runs_dir=ctx.root, out_dir=out_dir)
        except Exception as err:  # the runs are safe; the report can be rebuilt alone
            say(f"report failed ({type(err).__name__}: {err}); rerun: ptx report {ctx.sweep.name}")
            return False
    return True
