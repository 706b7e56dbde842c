"""``ptx sweep NAME --launcher slurm|local``: the sweep's pending jobs through submitit.

``slurm`` submits one SLURM job array, one array task per (cell, seed), with the sbatch
options given as ``--slurm.KEY VALUE`` (``--slurm.partition gpu --slurm.gpus-per-task 1
--slurm.time 04:00:00``: any parameter of submitit's ``SlurmExecutor``, i.e. sbatch's long
options with dashes); ``--parallel N`` caps how many run at once (``%N``). Then a dependent
job (``afterany`` on the array, no GPU) writes the report, and the command returns with the
job ids. ``local`` runs the same tasks through submitit's ``LocalExecutor`` on this machine,
``--parallel`` at a time (default 1), waits for them and writes the report: the array logic
tested without a cluster.

Each array task (:class:`SweepTask`) does what the local runner does for one job
(``ablations.jobs.execute``): takes the job's lock, re-reads the run's state, runs
``ptx fit`` in its own process, resumable. On preemption or time-out SLURM signals the task
(USR2, 90 s ahead); submitit calls :meth:`SweepTask.checkpoint` and requeues it, and the
requeued task re-plans, so it resumes from the run's ``last.ckpt`` (written every epoch:
at most an epoch is lost). Lightning's own SLURM auto-requeue listens on SIGUSR1, which
these jobs do not request, so exactly one mechanism requeues. A multi-GPU cell is one array
task of several SLURM tasks (``--slurm.ntasks-per-node 4 --slurm.gpus-per-node 4
--slurm.nodes 2 -- --trainer.devices 4 --trainer.num_nodes 2 --trainer.strategy ddp``):
every SLURM task runs the fit as one DDP rank (Lightning reads the ranks from SLURM), and
only rank 0 takes the lock.
"""

from __future__ import annotations

import argparse
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

import yaml
from submitit.helpers import Checkpointable

from ablations.jobs import (
    FAILED,
    FINISHED,
    SKIPPED,
    SweepContext,
    execute,
    parallel_jobs,
    record_state,
    run_in_process,
    say,
    verb,
    write_group_report,
)
from ablations.plan import DONE, Job
from ablations.sweeps import SweepError

LOCAL_TIMEOUT_MIN = 7 * 24 * 60  # submitit's local default (2 min) would kill every cell
REPORT_TIME_MIN = 60
GPU_KEYS = ("gpus_per_task", "gpus_per_node", "gres", "cpus_per_gpu", "mem_per_gpu")


@dataclass
class SweepTask(Checkpointable):
    """One (cell, seed, fold) as a submitit job: returns (run name, status, note)."""

    ctx: SweepContext
    cell_id: str
    seed: int
    fold: int | None = None

    def __call__(self) -> tuple[str, str, str]:
        job = self.ctx.job(self.cell_id, self.seed, self.fold)
        if int(os.environ.get("SLURM_PROCID", "0")) > 0:  # a further DDP rank of this job
            return self._other_rank(job)

        def announce(current: Job) -> None:
            say(f"{verb(current)} {current.name} ({current.cell.label}) as a submitit task")

        status, note = execute(self.ctx, job, run_in_process, announce=announce)
        if status in (FINISHED, FAILED):
            record_state(self.ctx, {job.name: {"status": status, "note": note}})
        say(f"{job.name}: {status}: {note}")
        return job.name, status, note

    def _other_rank(self, job: Job) -> tuple[str, str, str]:
        """Ranks > 0 train beside rank 0, which holds the lock and decided the same action."""
        if job.action == DONE:
            return job.name, DONE, "finished"
        rc = run_in_process(self.ctx.args(job))
        return job.name, FINISHED if rc == 0 else FAILED, f"rank exited with status {rc}"


@dataclass
class ReportTask:
    """The report of a sweep's group, as the job that runs after the array."""

    ctx: SweepContext
    out_dir: str

    def __call__(self) -> bool:
        return write_group_report(self.ctx, Path(self.out_dir))


def slurm_minutes(text: str) -> int:
    """sbatch ``--time`` (``MM``, ``MM:SS``, ``HH:MM:SS``, ``D-HH[:MM[:SS]]``) in minutes."""
    match = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", str(text).strip())
    if not match:
        raise SweepError(f"--slurm.time {text!r}: give HH:MM:SS, D-HH:MM or minutes")
    days, a, b, c = (int(g) if g else None for g in match.groups())
    if days is not None:  # D-HH, D-HH:MM, D-HH:MM:SS
        hours, minutes, seconds = a, b or 0, c or 0
    elif c is not None:  # HH:MM:SS
        hours, minutes, seconds = a, b, c
    else:  # MM or MM:SS
        hours, minutes, seconds = 0, a, b or 0
    return max(1, (days or 0) * 1440 + hours * 60 + minutes + (seconds + 59) // 60)


def slurm_parameters(options: dict[str, object]) -> dict[str, object]:
    """``--slurm.*`` values for submitit's SlurmExecutor: numbers as numbers, time in minutes."""
    params = {}
    for key, value in options.items():
        if key == "time":
            params[key] = slurm_minutes(str(value))
        elif isinstance(value, str):
            parsed = yaml.safe_load(value) if value else value
            params[key] = parsed if isinstance(parsed, (int, float, bool)) else value
        else:
            params[key] = value
    return params


def executor(kind: str, folder: Path, slurm: dict, parallel: int):
    """A submitit executor writing its scripts and logs into ``folder``."""
    import submitit

    if kind == "local":
        import torch

        local = submitit.LocalExecutor(folder)
        gpus = torch.cuda.device_count()  # else submitit hides every GPU from the task
        local.update_parameters(timeout_min=LOCAL_TIMEOUT_MIN, gpus_per_node=gpus)
        return local
    try:
        cluster = submitit.SlurmExecutor(folder)
        cluster.update_parameters(**{"array_parallelism": parallel, **slurm_parameters(slurm)})
    except (RuntimeError, ValueError) as err:  # no srun here, or an unknown sbatch option
        raise SweepError(f"--launcher slurm: {' '.join(str(err).split())}") from None
    return cluster


def launch(ctx: SweepContext, todo: list[Job], options: argparse.Namespace, slurm: dict) -> int:
    """Submit ``todo`` as array tasks; local: wait, then report; slurm: report job after."""
    parallel = parallel_jobs(options.parallel, lambda: 1)
    folder = ctx.root / ctx.group / ".submitit"
    tasks = [SweepTask(ctx, job.cell.id, job.seed, job.fold) for job in todo]
    out_dir = str(Path(options.out).resolve())
    if options.launcher == "local":
        local = executor("local", folder, {}, 1)
        return _run_local(local, tasks, ctx, options, out_dir, parallel)
    cluster = executor("slurm", folder, slurm, parallel)
    jobs = cluster.submit_array(tasks) if tasks else []
    array_id = jobs[0].job_id.split("_")[0] if jobs else None
    say(f"submitted {len(jobs)} array tasks as SLURM job {array_id}; logs in {folder}")
    if options.no_report:
        return 0
    report = executor("slurm", folder, _report_options(slurm, array_id), 1)
    report_job = report.submit(ReportTask(ctx, out_dir))
    say(
        f"the report (job {report_job.job_id}) runs after them into {out_dir}/{ctx.group}/; "
        f"follow with: squeue -j {array_id},{report_job.job_id}; "
        f"or rebuild it later: ptx report {ctx.sweep.name}"
    )
    return 0


def _report_options(slurm: dict, array_id: str | None) -> dict:
    """The report job's sbatch options: the array's, without GPUs or several tasks."""
    keep = {k: v for k, v in slurm.items() if k not in GPU_KEYS + ("nodes", "ntasks_per_node")}
    keep.update(time=str(REPORT_TIME_MIN), job_name="ptx-report")
    if array_id is not None:
        keep["dependency"] = f"afterany:{array_id}"
    return keep


def _run_local(local, tasks, ctx, options, out_dir: str, parallel: int) -> int:
    """Run the tasks ``parallel`` at a time through the local executor; then the report."""
    pending, running, results = list(tasks), [], []
    while pending or running:
        while pending and len(running) < parallel:
            running.append(local.submit(pending.pop(0)))
        time.sleep(1)
        for job in [j for j in running if j.done()]:
            running.remove(job)
            try:
                results.append(job.result())
            except Exception as err:  # the task itself crashed: its log says why
                results.append((job.job_id, FAILED, f"{type(err).__name__}: {err}"))
    failed = [(name, note) for name, status, note in results if status == FAILED]
    skipped = [name for name, status, _ in results if status == SKIPPED]
    say(f"{len(results)} submitit tasks done: {len(failed)} failed, {len(skipped)} skipped")
    for name, note in failed:
        say(f"  failed: {name}: {' '.join(note.split())[:300]}")
    if not options.no_report and not skipped and not write_group_report(ctx, Path(out_dir)):
        return 1
    return 1 if failed else 0
