"""``ptx sweep NAME``: run a paper table's grid, one ``ptx fit`` per (cell, seed), then report.

    ptx sweep ablation-encoders [--data DIR] [--profile auto|quick|paper] [--seeds 0,1,2]
              [--force] [--group G] [--runs-dir D] [--cells ID,ID] [--isolate auto|yes|no]
              [--dry-run] [--no-report] [-- extra ptx fit arguments, e.g. --trainer.devices 2]

Jobs run one after another in the sweep's run group. Under the paper profile each runs in
its own process (a crash or out-of-memory in one cell cannot take the sweep down, and every
cell starts from a clean state); quick-profile cells, a minute or two each on a CPU, run in
this process and save the ~10 s start-up of torch and Lightning per cell. Finished
runs are skipped, so a killed sweep started again does only what is missing: an interrupted
cell resumes from its last checkpoint, a cell that never started starts. ``--force`` reruns
everything. A failing cell is reported and the sweep goes on; the exit status is 1 when any
cell failed. At the end ``ptx report`` rebuilds the table from every finished run.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import traceback
from dataclasses import replace
from pathlib import Path

from ablations.plan import DONE, RESUME, Job, fit_args, plan, read_status
from ablations.sweeps import SweepError, list_sweeps, load_sweep
from experiments.profiles import choose_profile
from experiments.run_dir import runs_root as default_runs_root


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ptx sweep",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    parser.add_argument("sweep", help=f"a sweep ({', '.join(list_sweeps())}) or a sweep YAML")
    parser.add_argument("--data", help="data folder (default: the generated phantom)")
    parser.add_argument("--profile", choices=("auto", "quick", "paper"), default="auto")
    parser.add_argument("--seeds", default="0", help="comma-separated training seeds (0)")
    parser.add_argument("--force", action="store_true", help="rerun finished cells too")
    parser.add_argument("--group", help="run group / W&B group (default: the sweep's)")
    parser.add_argument("--runs-dir", help="runs root (default $PTX_RUNS_DIR or ./runs)")
    parser.add_argument("--cells", help="comma-separated cell ids to run (default: all)")
    parser.add_argument("--out", default="results", help="report folder (default results)")
    parser.add_argument(
        "--isolate",
        choices=("auto", "yes", "no"),
        default="auto",
        help="each cell in its own process (a crash or out-of-memory stays in the cell); "
        "auto: yes for the paper profile, no for quick (saves ~10 s start-up per cell)",
    )
    parser.add_argument("--dry-run", action="store_true", help="print the plan, run nothing")
    parser.add_argument("--no-report", action="store_true", help="skip the report at the end")
    return parser


def _say(message: str) -> None:
    print(f"[sweep] {message}", flush=True)


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


def _outcome(job: Job, rc: int) -> tuple[bool, str]:
    record = read_status(job.run_dir)
    if rc == 0 and record.get("status") == "finished":
        test = record.get("test") or {}
        return True, f"test dice {test.get('dice', float('nan')):.4f}"
    error = record.get("error") or f"ptx fit exited with status {rc}"
    return False, error


def _log_state(path: Path, state: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(state, indent=1) + "\n")


def run_sweep(options: argparse.Namespace, extra: list[str]) -> int:
    sweep = load_sweep(options.sweep)
    import torch

    profile, message = choose_profile(
        options.profile, options.data is not None, torch.cuda.is_available()
    )
    if message:
        _say(message)
    data_dir = str(Path(options.data).resolve()) if options.data else None
    if data_dir is not None and not Path(data_dir).is_dir():
        raise SweepError(f"--data {options.data}: no such folder")
    root = default_runs_root(options.runs_dir)
    group = options.group or sweep.group
    only = options.cells.split(",") if options.cells else None
    seeds = _seeds(options.seeds)
    jobs = plan(sweep, root, seeds, profile, data_dir, group, options.force, only)
    todo = [j for j in jobs if j.action != DONE]
    resume = sum(j.action == RESUME for j in todo)
    _say(
        f"{sweep.name}: {sweep.title}; {len(jobs)} runs ({len(jobs) - len(todo)} finished, "
        f"{resume} to resume, {len(todo) - resume} to start) in {root / group}, "
        f"profile {profile}, data {'phantom' if data_dir is None else data_dir}"
    )
    if options.dry_run:
        for job in jobs:
            print(f"  {job.action:<7} {job.name:<40} {job.cell.label}")
        return 0
    isolate = options.isolate == "yes" or (options.isolate == "auto" and profile != "quick")
    run_job = run_isolated if isolate else run_in_process
    state_path = root / group / "sweep.json"
    state = {"sweep": sweep.name, "profile": profile, "seeds": seeds, "runs": {}}
    failures: list[tuple[Job, str]] = []
    start = time.perf_counter()
    for number, job in enumerate(todo, 1):
        elapsed = time.perf_counter() - start
        eta = (
            f", about {_duration(elapsed / (number - 1) * (len(todo) - number + 1))} left"
            if number > 1
            else ""
        )
        verb = "resuming" if job.action == RESUME else "starting"
        so_far = f"{_duration(elapsed)} so far{eta}"
        _say(f"[{number}/{len(todo)}] {verb} {job.name} ({job.cell.label}); {so_far}")
        cell_start = time.perf_counter()
        rc = run_job(fit_args(sweep, job, profile, data_dir, root, group, extra))
        ok, note = _outcome(job, rc)
        took = _duration(time.perf_counter() - cell_start)
        _say(
            f"[{number}/{len(todo)}] {job.name} {'finished' if ok else 'FAILED'} in {took}: {note}"
        )
        if not ok:
            failures.append((job, note))
        state["runs"][job.name] = {"status": "finished" if ok else "failed", "note": note}
        _log_state(state_path, state)
    _say(f"{len(todo)} runs in {_duration(time.perf_counter() - start)}; {len(failures)} failed")
    for job, note in failures:
        _say(f"  failed: {job.name}: {note} (run the sweep again to retry it)")
    if not options.no_report:
        from ablations.report import write_report

        try:
            write_report(replace(sweep, group=group), runs_dir=root, out_dir=Path(options.out))
        except Exception as err:  # the runs are safe; the report can be rebuilt alone
            _say(f"report failed ({type(err).__name__}: {err}); rerun: ptx report {sweep.name}")
            return 1
    return 1 if failures else 0


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def cli(argv: list[str]) -> int:
    """``ptx sweep``; arguments after ``--`` go to every cell's ``ptx fit``."""
    if "--" in argv:
        cut = argv.index("--")
        argv, extra = argv[:cut], argv[cut + 1 :]
    else:
        extra = []
    options = build_parser().parse_args(argv)
    # `kill` (SIGTERM) stops the running cell too, like Ctrl-C: it is resumed next time
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        return run_sweep(options, extra)
    except SweepError as err:
        print(f"ptx sweep: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nptx sweep: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
