"""``ptx sweep NAME``: run a paper table's grid, one ``ptx fit`` per (cell, seed), then report.

    ptx sweep ablation-encoders [--data DIR] [--profile auto|quick|paper] [--seeds 0,1,2]
              [--folds N] [--force] [--group G] [--runs-dir D] [--cells ID,ID]
              [--isolate auto|yes|no] [--wait] [--launcher inline|local|slurm]
              [--parallel auto|N]
              [--slurm.KEY VALUE ...]
              [--dry-run] [--no-report] [-- extra ptx fit arguments, e.g. --trainer.devices 2]

Jobs run one after another in the sweep's run group. Under the paper profile each runs in
its own process (a crash or out-of-memory in one cell cannot take the sweep down, and every
cell starts from a clean state); quick-profile cells, a minute or two each on a CPU, run in
this process and save the ~10 s start-up of torch and Lightning per cell, two at a time on a
CPU (``--parallel``: worker processes sharing the torch threads, ``ablations.workers``). Finished
runs are skipped, so a killed sweep started again does only what is missing: an interrupted
cell resumes from its last checkpoint, a cell that never started starts. ``--force`` reruns
everything. A failing cell is reported and the sweep goes on; the exit status is 1 when any
cell failed. At the end ``ptx report`` rebuilds the table from every finished run.
``--folds N`` runs every cell on each of the N folds of a patient k-fold stratified by
pneumothorax (``--data.folds N --data.fold K``; runs ``<id>-f<K>-s<seed>``), and the table
pools the folds' test images (every image tested once) and gives the spread over folds.
A finished run is reused only if its resolved config is the one this sweep asks for
(``ablations.plan``); a run of other settings is refused with the keys that differ.

Each job is trained under an OS file lock (``ablations.job_lock``): a second runner on the
same sweep (another terminal, W&B agent or array) skips a job the first one holds and says
so, or waits for it with ``--wait``; the last runner to finish writes the report.
``--launcher local|slurm`` submits the pending jobs through submitit instead, as one SLURM
job array (``ablations.launch``; docs/sweeps.md).
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path

from ablations.job_lock import held_elsewhere, lock_path
from ablations.jobs import (
    FAILED,
    FINISHED,
    SKIPPED,
    SweepContext,
    execute,
    parallel_jobs,
    record_state,
    run_in_process,
    run_isolated,
    say,
    verb,
    write_group_report,
)
from ablations.plan import DONE, RESUME, plan
from ablations.sweeps import SweepError, list_sweeps, load_sweep
from ablations.workers import auto_workers, run_workers
from experiments.cli import HelpFormatter
from experiments.profiles import choose_profile
from experiments.run_dir import runs_root as default_runs_root

SLURM_PREFIX = "--slurm."


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ptx sweep",
        description=__doc__,
        formatter_class=HelpFormatter,
        allow_abbrev=False,
    )
    parser.add_argument("sweep", help=f"a sweep ({', '.join(list_sweeps())}) or a sweep YAML")
    parser.add_argument("--data", help="data folder (default: the generated phantom)")
    parser.add_argument(
        "--profile",
        choices=("auto", "quick", "paper"),
        default="auto",
        help="paper settings, a quick CPU-sized run, or auto (quick without data and GPU)",
    )
    parser.add_argument("--seeds", default="0", help="comma-separated training seeds")
    parser.add_argument(
        "--folds",
        type=int,
        help="k-fold cross-validation: run every cell on each of N patient folds (N >= 2)",
    )
    parser.add_argument("--force", action="store_true", help="rerun finished cells too")
    parser.add_argument("--group", help="run group / W&B group (default: the sweep's)")
    parser.add_argument("--runs-dir", help="runs root (default: $PTX_RUNS_DIR or ./runs)")
    parser.add_argument("--cells", help="comma-separated cell ids to run (default: all)")
    parser.add_argument("--out", default="results", help="report folder")
    parser.add_argument(
        "--isolate",
        choices=("auto", "yes", "no"),
        default="auto",
        help="each cell in its own process (a crash or out-of-memory stays in the cell); "
        "auto: yes for the paper profile, no for quick (saves ~10 s start-up per cell)",
    )
    parser.add_argument(
        "--wait",
        action="store_true",
        help="wait for a job another runner holds (default: skip it and say so)",
    )
    parser.add_argument(
        "--launcher",
        choices=("inline", "local", "slurm"),
        default="inline",
        help="inline: run the jobs here, one after another; local: through "
        "submitit's local executor; slurm: one SLURM job array (--slurm.KEY VALUE options)",
    )
    parser.add_argument(
        "--parallel",
        default="auto",
        help="jobs at a time: inline, N worker processes on this machine (auto: 2 for the "
        "quick profile on a CPU, else 1); local|slurm: tasks at once (auto: 1)",
    )
    parser.add_argument("--dry-run", action="store_true", help="print the plan, run nothing")
    parser.add_argument("--no-report", action="store_true", help="skip the report at the end")
    return parser


def _seeds(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in str(text).replace(" ", "").split(",") if s]
    except ValueError:
        raise SweepError(
            f"--seeds {text!r}: give integers separated by commas, e.g. 0,1,2"
        ) from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise SweepError(f"--seeds {text!r}: give distinct integers, e.g. 0,1,2")
    return seeds


def _duration(seconds: float) -> str:
    minutes, seconds = divmod(int(seconds), 60)
    return f"{minutes // 60}h{minutes % 60:02d}m" if minutes >= 60 else f"{minutes}m{seconds:02d}s"


def sweep_context(options: argparse.Namespace, extra: list[str]) -> SweepContext:
    """The sweep, profile, data folder and run group of this invocation."""
    sweep = load_sweep(options.sweep)
    import torch

    profile, message = choose_profile(
        options.profile, options.data is not None, torch.cuda.is_available()
    )
    if message:
        say(message)
    data_dir = str(Path(options.data).resolve()) if options.data else None
    if data_dir is not None and not Path(data_dir).is_dir():
        raise SweepError(f"--data {options.data}: no such folder")
    root = default_runs_root(options.runs_dir)
    group = options.group or sweep.group
    folds = getattr(options, "folds", None)
    if folds is not None and folds < 2:
        raise SweepError(f"--folds {folds}: give 2 or more folds (or leave it out)")
    return SweepContext(
        sweep, profile, data_dir, root, group, tuple(extra), options.force, folds=folds
    )


def run_sweep(options: argparse.Namespace, extra: list[str], slurm: dict | None = None) -> int:
    ctx = sweep_context(options, extra)
    only = options.cells.split(",") if options.cells else None
    seeds = _seeds(options.seeds)
    jobs = plan(
        ctx.sweep,
        ctx.root,
        seeds,
        ctx.profile,
        ctx.data_dir,
        ctx.group,
        ctx.force,
        only,
        folds=ctx.folds,
        extra=list(ctx.extra),
    )
    todo = [j for j in jobs if j.action != DONE]
    resume = sum(j.action == RESUME for j in todo)
    say(
        f"{ctx.sweep.name}: {ctx.sweep.title}; {len(jobs)} runs ({len(jobs) - len(todo)} "
        f"finished, {resume} to resume, {len(todo) - resume} to start) in {ctx.root / ctx.group}"
        f", profile {ctx.profile}, data {ctx.data_dir or 'phantom'}"
        + (f", {ctx.folds}-fold cross-validation" if ctx.folds else "")
    )
    if options.dry_run:
        for job in jobs:
            print(f"  {job.action:<7} {job.name:<40} {job.cell.label}")
        return 0
    if options.launcher != "inline":
        from ablations.launch import launch

        return launch(ctx, todo, options, slurm or {})
    isolate = options.isolate == "yes" or (options.isolate == "auto" and ctx.profile != "quick")
    workers = parallel_jobs(options.parallel, lambda: auto_workers(ctx.profile, ctx.extra))
    workers = min(workers, len(todo))
    if workers > 1:
        results = run_workers(ctx, todo, workers, isolate, options.wait, _duration)
    else:
        results = run_inline(ctx, todo, run_isolated if isolate else run_in_process, options.wait)
    failures = [(n, note) for n, (status, note) in results.items() if status == FAILED]
    for name, note in failures:
        say(f"  failed: {name}: {note} (run the sweep again to retry it)")
    elsewhere = [n for n, (status, _) in results.items() if status == SKIPPED]
    still = [n for n in elsewhere if held_elsewhere(lock_path(ctx.root / ctx.group / n))]
    if still:
        say(
            f"{len(still)} runs are still being trained by another runner ({', '.join(still)}): "
            f"it writes the report when it is done (or later: ptx report {ctx.sweep.name})"
        )
    elif not options.no_report and not write_group_report(ctx, Path(options.out)):
        return 1
    return 1 if failures else 0


def run_inline(ctx, todo, run, wait: bool) -> dict[str, tuple[str, str]]:
    """Run the jobs one after another in this process's care: {name: (status, note)}."""
    results: dict[str, tuple[str, str]] = {}
    start = time.perf_counter()
    for number, job in enumerate(todo, 1):
        elapsed = time.perf_counter() - start
        done = sum(status in (FINISHED, FAILED) for status, _ in results.values())
        eta = f", about {_duration(elapsed / done * (len(todo) - number + 1))} left" if done else ""
        tag = f"[{number}/{len(todo)}]"

        def announce(current, tag=tag, elapsed=elapsed, eta=eta):
            label = f"{verb(current)} {current.name} ({current.cell.label})"
            say(f"{tag} {label}; {_duration(elapsed)} so far{eta}")

        cell_start = time.perf_counter()
        status, note = execute(ctx, job, run, wait, announce)
        took = _duration(time.perf_counter() - cell_start)
        if status in (SKIPPED, DONE):
            say(f"{tag} skipping {job.name}: {note}")
        else:
            word = "finished" if status == FINISHED else "FAILED"
            say(f"{tag} {job.name} {word} in {took}: {note}")
            record_state(ctx, {job.name: {"status": status, "note": note}})
        results[job.name] = (status, note)
    ran = sum(status in (FINISHED, FAILED) for status, _ in results.values())
    failed = sum(status == FAILED for status, _ in results.values())
    say(f"{ran} runs in {_duration(time.perf_counter() - start)}; {failed} failed")
    return results


def split_slurm(argv: list[str]) -> tuple[list[str], dict[str, object]]:
    """Take ``--slurm.KEY VALUE`` / ``--slurm.KEY=VALUE`` out of ``argv``: (rest, {key: value})
    with dashes in keys as underscores (``gpus-per-task`` -> ``gpus_per_task``); ``setup``
    and ``srun-args`` may repeat (lists)."""
    rest, slurm, i = [], {}, 0
    while i < len(argv):
        arg = argv[i]
        if not arg.startswith(SLURM_PREFIX):
            rest.append(arg)
            i += 1
            continue
        key, eq, value = arg[len(SLURM_PREFIX) :].partition("=")
        if not eq:
            if i + 1 >= len(argv):
                raise SweepError(f"{arg} needs a value, e.g. {arg} VALUE")
            value, i = argv[i + 1], i + 1
        key = key.replace("-", "_")
        if key in ("setup", "srun_args"):
            slurm.setdefault(key, []).append(value)
        else:
            slurm[key] = value
        i += 1
    return rest, slurm


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def cli(argv: list[str]) -> int:
    """``ptx sweep``; arguments after ``--`` go to every cell's ``ptx fit``."""
    if "--" in argv:
        cut = argv.index("--")
        argv, extra = argv[:cut], argv[cut + 1 :]
    else:
        extra = []
    # `kill` (SIGTERM) stops the running cell too, like Ctrl-C: it is resumed next time
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        argv, slurm = split_slurm(argv)
        options = build_parser().parse_args(argv)
        if slurm and options.launcher != "slurm":
            raise SweepError(f"--slurm.{next(iter(slurm))} needs --launcher slurm")
        return run_sweep(options, extra, slurm)
    except SweepError as err:
        print(f"ptx sweep: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nptx sweep: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
