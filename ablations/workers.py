"""A sweep's jobs on N worker processes of this machine (``ptx sweep --parallel N``).

On a CPU, two quick cells side by side with one torch thread each train 1.3 to 1.5 times as
many images a second as one cell with both threads (2 cores, 64 x 64, batch 8: U-Net/
ResNet-34 56 against 37 img/s, U-Net/EfficientNet-b5 24 against 19): inside one operator a
small network cannot keep two cores busy. So the quick profile's sweeps run two workers by
default (``--parallel auto``).

Each worker is a spawned process that imports torch once and then takes the next job until
none is left, each under its lock and with the same bookkeeping as the serial runner
(``ablations.jobs.execute``), in its own process when the sweep isolates cells. Its torch
thread count is fixed (this process's threads // N), so a cell's numbers do not depend on
which worker ran it or when. Jobs go out largest network first (parameter count, on the
meta device), so the small ones fill the gaps at the end. A job's console output (model
summary, progress bar) goes to ``<runs>/<group>/logs/<run>.log``; the sweep says when each
job starts and ends. Ctrl-C or ``kill`` stops the workers the same way (their running cells
write ``last.ckpt`` and resume next time); a worker that dies (out of memory, SIGKILL) fails
its cell and the others go on.
"""

from __future__ import annotations

import contextlib
import io
import multiprocessing
import os
import queue
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

from ablations.jobs import FAILED, FINISHED, SweepContext, execute, record_state, say, verb
from ablations.plan import Job

STARTED, ENDED = "started", "ended"
STOP_GRACE_S = 120  # a stopped cell writes its last.ckpt; then the worker is killed


def auto_workers(profile: str, extra: tuple[str, ...] = ()) -> int:
    """Workers for ``--parallel auto``: 2 for the quick profile on a CPU with at least two
    torch threads, else 1 (a GPU cell, a paper-size one or a multi-device one uses the
    machine alone)."""
    import torch

    if profile != "quick" or torch.cuda.is_available() or torch.get_num_threads() < 2:
        return 1
    if any(a.split("=")[0] in ("--trainer.devices", "--trainer.strategy") for a in extra):
        return 1
    return 2


def job_size(ctx: SweepContext, job: Job) -> int:
    """The job's network size (parameters, counted on the meta device; 0 if unknown), which
    orders the jobs largest first. The network is the one ``ptx fit`` would build: the
    cell's resolved config (``ablations.plan.requested_config``), extra arguments included."""
    import torch

    from ablations.plan import requested_config
    from lightning_modules.complexity import count_parameters
    from lightning_modules.nets import create_model

    extra = list(ctx.extra)
    try:
        with contextlib.redirect_stderr(io.StringIO()):  # a bad argument: the cell's log says
            config = requested_config(
                ctx.sweep, job, ctx.profile, ctx.data_dir, ctx.root, ctx.group, extra
            )
        model = config["model"]
        kwargs = dict(model.get("net_kwargs") or {})
        with torch.device("meta"):
            net = create_model(
                model["net"], in_channels=model["in_channels"], classes=model["classes"], **kwargs
            )
        return count_parameters(net)
    except (Exception, SystemExit):  # an estimate only (SystemExit: the parser's refusal)
        return 0


def largest_first(ctx: SweepContext, jobs: list[Job]) -> list[Job]:
    sizes: dict[str, int] = {}  # per cell: its seeds and folds train the same network
    for job in jobs:
        if job.cell.id not in sizes:
            sizes[job.cell.id] = job_size(ctx, job)
    return sorted(jobs, key=lambda job: -sizes[job.cell.id])  # stable: ties keep their order


def log_path(ctx: SweepContext, job: Job) -> Path:
    return ctx.root / ctx.group / "logs" / f"{job.name}.log"


@contextlib.contextmanager
def output_to(path: Path):
    """Send this process's stdout and stderr (file descriptors 1 and 2, so child processes
    and C code too) to ``path`` (appended) until the block ends."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with open(path, "ab", buffering=0) as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)


def _stop(signum, frame) -> None:
    raise KeyboardInterrupt


def _take(counter, total: int) -> int | None:
    with counter.get_lock():
        if counter.value >= total:
            return None
        counter.value += 1
        return counter.value - 1


def _work(ctx, plan, isolate: bool, threads: int, wait: bool, counter, events) -> None:
    """One worker: the next job until none is left (runs in a spawned process). ``plan``
    brings the ordered job list once the parent has it (sizing the networks overlaps the
    workers' start-up)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops us with SIGTERM
    signal.signal(signal.SIGTERM, _stop)
    os.environ["OMP_NUM_THREADS"] = str(threads)  # for isolated cells' processes
    try:
        import torch

        from ablations.jobs import run_in_process, run_isolated

        torch.set_num_threads(threads)
        run = run_isolated if isolate else run_in_process
        jobs = plan.get()
        while (index := _take(counter, len(jobs))) is not None:
            job, start = jobs[index], time.perf_counter()

            def announce(current: Job, index=index) -> None:
                events.put((STARTED, index, os.getpid(), verb(current)))

            with output_to(log_path(ctx, job)):
                status, note = execute(ctx, job, run, wait, announce)
            events.put((ENDED, index, status, note, time.perf_counter() - start))
    except KeyboardInterrupt:
        pass


def run_workers(
    ctx: SweepContext,
    todo: list[Job],
    workers: int,
    isolate: bool,
    wait: bool,
    duration: Callable[[float], str],
) -> dict[str, tuple[str, str]]:
    """Run ``todo`` on ``workers`` processes: {name: (status, note)} as the serial runner."""
    import torch

    begin = time.perf_counter()
    mp = multiprocessing.get_context("spawn")
    plan, counter, events = mp.Queue(), mp.Value("i", 0), mp.Queue()
    threads = max(1, torch.get_num_threads() // workers)
    procs = [
        mp.Process(target=_work, args=(ctx, plan, isolate, threads, wait, counter, events))
        for _ in range(workers)
    ]
    for proc in procs:
        proc.start()
    jobs = largest_first(ctx, todo)
    for _ in procs:
        plan.put(jobs)
    say(
        f"{workers} workers, {threads} torch thread{'s' * (threads > 1)} each, largest network "
        f"first; each run's output goes to {ctx.root / ctx.group / 'logs'}/<run>.log"
    )
    results: dict[str, tuple[str, str]] = {}
    running: dict[int, int] = {}  # worker pid -> job index
    try:
        while any(p.is_alive() for p in procs) or not events.empty():
            try:
                event = events.get(timeout=1.0)
            except queue.Empty:
                _lost(procs, running, jobs, results, ctx)
                continue
            if event[0] == STARTED:
                _, index, pid, action = event
                running[pid] = index
                job, elapsed = jobs[index], time.perf_counter() - begin
                done = len(results)  # the jobs' wall-clock rate so far, workers included
                remaining = elapsed / done * (len(jobs) - done) if done else None
                left = f", about {duration(remaining)} left" if remaining is not None else ""
                say(
                    f"[{index + 1}/{len(jobs)}] {action} {job.name} ({job.cell.label}); "
                    f"{duration(elapsed)} so far{left}"
                )
            else:
                _, index, status, note, seconds = event
                running = {p: i for p, i in running.items() if i != index}
                tag = f"[{index + 1}/{len(jobs)}]"
                _ended(ctx, jobs[index], status, note, duration(seconds), results, tag)
    except KeyboardInterrupt:
        _stop_all(procs)
        raise
    finally:
        for proc in procs:
            proc.join(timeout=5)
    for job in jobs:
        if job.name not in results:  # the workers stopped before it (their errors above)
            codes = ", ".join(str(p.exitcode) for p in procs)
            results[job.name] = (FAILED, f"not run: the workers stopped (exit codes {codes})")
    done = sum(status in (FINISHED, FAILED) for status, _ in results.values())
    failed = sum(status == FAILED for status, _ in results.values())
    say(f"{done} runs in {duration(time.perf_counter() - begin)}; {failed} failed")
    return results


def _ended(ctx, job, status, note, took, results, tag) -> None:
    if status in (FINISHED, FAILED):
        word = "finished" if status == FINISHED else "FAILED"
        say(f"{tag} {job.name} {word} in {took}: {note}")
        record_state(ctx, {job.name: {"status": status, "note": note}})
    else:
        say(f"{tag} skipping {job.name}: {note}")
    results[job.name] = (status, note)


def _lost(procs, running, jobs, results, ctx) -> None:
    """A worker that died during a job (out of memory, SIGKILL) fails that job."""
    for proc in procs:
        if proc.exitcode is not None and proc.pid in running:
            job = jobs[running.pop(proc.pid)]
            note = f"its worker process died (exit code {proc.exitcode}); see {log_path(ctx, job)}"
            say(f"{job.name} FAILED: {note}")
            record_state(ctx, {job.name: {"status": FAILED, "note": note}})
            results[job.name] = (FAILED, note)


def _stop_all(procs) -> None:
    """Stop every worker; each running cell saves its state for the next start."""
    say("stopping the workers (their running cells save a checkpoint to resume from)")
    for proc in procs:
        if proc.is_alive():
            os.kill(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_S
    for proc in procs:
        proc.join(timeout=max(0.0, deadline - time.monotonic()))
        if proc.is_alive():
            proc.kill()
