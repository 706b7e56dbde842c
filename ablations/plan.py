"""What a sweep has left to do: each (cell, seed) is done, to resume, or to start.

A cell's run is ``<runs root>/<group>/<id>-s<seed>/`` (``ablations.sweeps.Cell.run_name``).
Its ``metrics.json`` status says where it stands: ``finished`` (tested: skip it), else a
``checkpoints/last.ckpt`` to resume from, else nothing usable (start over). A finished run
of another configuration (another experiment, profile, data folder or identifier secret) is
never silently taken for this sweep's cell: planning stops and says how to keep both.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import yaml

from ablations.records import config_data_dir
from ablations.sweeps import Cell, Sweep, SweepError
from datamodules.privacy import id_fingerprint

log = logging.getLogger("ptx.sweep")

DONE, RESUME, START = "done", "resume", "start"


@dataclass(frozen=True)
class Job:
    """One (cell, seed) of a sweep and what to do about it."""

    cell: Cell
    seed: int
    run_dir: Path
    action: str  # DONE, RESUME or START

    @property
    def name(self) -> str:
        return self.cell.run_name(self.seed)


def read_status(run_dir: Path) -> dict:
    """``metrics.json`` of a run (empty when absent or unreadable: a run that never started)."""
    try:
        return json.loads((run_dir / "metrics.json").read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def _data_dir(run_dir: Path) -> str | None:
    try:
        return config_data_dir(yaml.safe_load((run_dir / "config.yaml").read_text()) or {})
    except (OSError, yaml.YAMLError):
        return None


def check_identity(job: Job, record: dict, profile: str, data_dir: str | None) -> None:
    """Refuse a finished run that is not this cell's configuration (see module docstring)."""
    found = {
        "experiment": record.get("experiment"),
        "profile": record.get("profile"),
        "data": _data_dir(job.run_dir),
    }
    wanted = {"experiment": job.cell.exp, "profile": profile, "data": data_dir}
    differ = [
        f"{k} {found[k]!r} (this sweep: {wanted[k]!r})" for k in wanted if found[k] != wanted[k]
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
    if differ:
        raise SweepError(
            f"{job.run_dir} holds a finished run of another configuration: {'; '.join(differ)}. "
            "Give this sweep its own --group (make ... GROUP=name), or --force (FORCE=1) to "
            "replace the earlier runs"
        )


def plan(
    sweep: Sweep,
    runs_root: Path,
    seeds: list[int],
    profile: str,
    data_dir: str | None,
    group: str | None = None,
    force: bool = False,
    only: list[str] | None = None,
) -> list[Job]:
    """The jobs of a sweep, seed-major (every cell once before any cell's second seed).

    Raises:
        SweepError: ``only`` names an unknown cell, or a finished run does not match.
    """
    cells = [sweep.cell(c) for c in only] if only else list(sweep.cells)
    jobs = []
    for seed in seeds:
        for cell in cells:
            run_dir = runs_root / (group or sweep.group) / cell.run_name(seed)
            job = Job(cell, seed, run_dir, current_action(run_dir, force))
            if job.action == DONE:
                check_identity(job, read_status(run_dir), profile, data_dir)
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

    if record.get("status") == "finished" and (not force or recent(run_dir / "metrics.json")):
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
    """``ptx fit`` arguments of a job: the cell's experiment and overrides, its run name in
    the sweep's group, and ``--ckpt_path last`` to resume or ``--overwrite`` to start over."""
    args = ["--exp", job.cell.exp, "--profile", profile, "--seed", str(job.seed)]
    args += ["--group", group or sweep.group, "--name", job.name, "--runs-dir", str(runs_root)]
    if data_dir is not None:
        args += ["--data", data_dir]
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
