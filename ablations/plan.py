"""What a sweep has left to do: each (cell, seed[, fold]) is done, to resume, or to start.

A cell's run is ``<runs root>/<group>/<id>-s<seed>/`` (``<id>-f<fold>-s<seed>/`` under
``--folds``; ``ablations.sweeps.Cell.run_name``). Its ``metrics.json`` status says where it
stands: ``finished`` (tested: skip it), else a ``checkpoints/last.ckpt`` to resume from,
else nothing usable (start over). A finished run is reused only when its resolved
configuration is the one this sweep would run for the cell (same ``config_hash``,
``experiments.run_config``: experiment, profile, data folder, every override and extra
argument), its identifier secret is this machine's and its record version this ptx-seg's;
otherwise planning stops, names what differs and says how to keep both or replace it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml

from ablations.sweeps import Cell, Sweep, SweepError
from datamodules.layouts.privacy import id_fingerprint
from lightning_modules.records import (
    FINISHED,
    METRICS,
    RecordError,
    config_data_dir,
    read_config,
    read_status,
    version_problem,
)

log = logging.getLogger("ptx.sweep")

DONE, RESUME, START = "done", "resume", "start"


@dataclass(frozen=True)
class Job:
    """One (cell, seed, fold) of a sweep and what to do about it (fold None: no k-fold)."""

    cell: Cell
    seed: int
    run_dir: Path
    action: str  # DONE, RESUME or START
    fold: int | None = None
    folds: int | None = None

    @property
    def name(self) -> str:
        return self.cell.run_name(self.seed, self.fold)


def _stored_config(run_dir: Path) -> dict:
    try:
        return read_config(run_dir)
    except RecordError:
        return {}


def check_identity(job: Job, record: dict, wanted: Callable[[], dict], profile, data_dir) -> None:
    """Refuse a finished run that is not this cell's configuration (see module docstring).

    ``wanted()`` is the resolved config this sweep would run the job with; a record without
    a ``config_hash`` (an older version) is compared on experiment, profile and data only.
    """
    from experiments.run_config import config_hash, differences

    differ: list[str] = []
    if record.get("config_hash"):
        requested = wanted()
        if config_hash(requested) != record["config_hash"]:
            differ = differences(_stored_config(job.run_dir), requested) or [
                f"config_hash {record['config_hash']} (this sweep: {config_hash(requested)})"
            ]
    else:
        log.warning(
            "%s records no config_hash (made by an older version): only its experiment, "
            "profile and data folder are checked; --force reruns it",
            job.run_dir,
        )
        found = {
            "experiment": record.get("experiment"),
            "profile": record.get("profile"),
            "data": config_data_dir(_stored_config(job.run_dir)),
        }
        expected = {"experiment": job.cell.exp, "profile": profile, "data": data_dir}
        differ = [
            f"{k} {found[k]!r} (this sweep: {expected[k]!r})"
            for k in expected
            if found[k] != expected[k]
        ]
    secret = record.get("id_fingerprint")
    if secret is None:  # made before runs recorded it: keys from the old public salt
        log.warning(
            "%s records no identifier-secret fingerprint (made by an older version): its "
            "patient keys may not match this sweep's; --force reruns it",
            job.run_dir,
        )
    elif secret != id_fingerprint():
        differ.append(
            f"identifier secret {secret} (this sweep: {id_fingerprint()}; patient keys differ: "
            "share the secret, docs/data.md)"
        )
    if problem := version_problem(record):
        differ.append(problem)
    if differ:
        raise SweepError(
            f"{job.run_dir} holds a finished run of another configuration: {'; '.join(differ)}. "
            "Give this sweep its own --group (make ... GROUP=name), or --force (FORCE=1) to "
            "replace the earlier runs"
        )


def requested_config(sweep: Sweep, job: Job, profile, data_dir, runs_root, group, extra) -> dict:
    """The resolved config ``ptx fit`` would run ``job`` with (nothing is built or run)."""
    from experiments.lightning_cli import resolved_config
    from experiments.train import lightning_args

    args = fit_args(sweep, job, profile, data_dir, runs_root, group, extra)
    return resolved_config(["fit", *lightning_args("fit", args)])


def plan(
    sweep: Sweep,
    runs_root: Path,
    seeds: list[int],
    profile: str,
    data_dir: str | None,
    group: str | None = None,
    force: bool = False,
    only: list[str] | None = None,
    folds: int | None = None,
    extra: list[str] | None = None,
) -> list[Job]:
    """The jobs of a sweep, seed-major then fold-major (every cell once before any cell's
    next fold or seed); ``folds`` runs every cell on every fold of a k-fold.

    Raises:
        SweepError: ``only`` names an unknown cell, or a finished run does not match.
    """
    cells = [sweep.cell(c) for c in only] if only else list(sweep.cells)
    jobs = []
    for seed in seeds:
        for fold in range(folds) if folds else [None]:
            for cell in cells:
                run_dir = runs_root / (group or sweep.group) / cell.run_name(seed, fold)
                job = Job(cell, seed, run_dir, current_action(run_dir, force), fold, folds)
                if job.action == DONE:
                    where = (profile, data_dir, runs_root, group, extra)

                    def wanted(job=job, where=where):
                        return requested_config(sweep, job, *where)

                    check_identity(job, read_status(run_dir), wanted, profile, data_dir)
                jobs.append(job)
    return jobs


def current_action(run_dir: Path, force: bool = False, since: float | None = None) -> str:
    """DONE, RESUME or START for a run as its folder is now.

    ``since`` (a time.time()) is when this invocation started: with ``force``, a run that
    another runner finished (or checkpointed) after it is not redone (two ``--force`` runners
    on one sweep must not train a cell twice either).
    """
    record, last = read_status(run_dir), run_dir / "checkpoints" / "last.ckpt"

    def recent(path: Path) -> bool:
        try:
            return since is not None and path.stat().st_mtime >= since
        except OSError:
            return False

    if record.get("status") == FINISHED and (not force or recent(run_dir / METRICS)):
        return DONE
    if last.is_file() and (not force or recent(last)):
        return RESUME
    return START


def fit_args(
    sweep: Sweep,
    job: Job,
    profile: str,
    data_dir: str | None,
    runs_root: Path,
    group: str | None = None,
    extra: list[str] | None = None,
) -> list[str]:
    """``ptx fit`` arguments of a job: the cell's experiment and overrides, its fold, its run
    name in the sweep's group, and ``--ckpt_path last`` to resume or ``--overwrite``."""
    args = ["--exp", job.cell.exp, "--profile", profile, "--seed", str(job.seed)]
    args += ["--group", group or sweep.group, "--name", job.name, "--runs-dir", str(runs_root)]
    if data_dir is not None:
        args += ["--data", data_dir]
    args += ["--run.sweep", sweep.name, "--run.cell", job.cell.id]
    if job.fold is not None:
        args += ["--data.init_args.folds", str(job.folds), "--data.init_args.fold"]
        args.append(str(job.fold))
    for key, value in sweep.overrides_for(job.cell, profile).items():
        args += [f"--{key}", _cli_value(value)]
    args += ["--ckpt_path", "last"] if job.action == RESUME else ["--overwrite"]
    return args + list(extra or [])


def _cli_value(value) -> str:
    """A YAML value as LightningCLI reads it on the command line (flow style for lists/dicts)."""
    if isinstance(value, str):
        return value
    return (
        yaml.safe_dump(value, default_flow_style=True, width=10_000)
        .strip()
        .removesuffix("...")
        .strip()
    )
