"""A sweep's runs: which cells, seeds and folds finished, failed or never ran, and their data.

A cell's run for seed S is ``<runs root>/<group>/<cell id>-s<S>/`` (``<id>-f<K>-s<S>/`` for
fold K). A report reads only its run records, through their one reader
(``lightning_modules.records``): ``metrics.json`` (status, set-level ``test`` metrics,
``params``, ``gmacs``, ``history``), ``per_image.csv``, ``config.yaml`` (the data folder)
and ``predictions.npz`` (the fixed overlay images). A malformed file never stops a report:
the run is marked ``malformed`` with an error that names the file, and the table shows it.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ablations.sweeps import Cell, Sweep
from lightning_modules.records import (
    FAILED,
    FINISHED,
    METRICS,
    PER_IMAGE,
    PREDICTIONS,
    PerImage,
    RecordError,
    config_data_dir,
    read_config,
    read_metrics,
    read_per_image,
    read_predictions,
    remedy,
)

log = logging.getLogger("ptx.report")

UNFINISHED, MALFORMED, NOT_RUN = "unfinished", "malformed", "not run"
PARTIAL = "partial"  # a cell with some seeds finished


@dataclass
class Run:
    """One seed of one cell; ``status`` is one of finished, failed, unfinished, malformed,
    not run. ``error`` says why a run failed or is malformed."""

    cell_id: str
    seed: int
    path: Path
    status: str
    error: str | None = None
    fold: int | None = None  # of a k-fold cross-validation (None: the one split)
    metrics: dict = field(default_factory=dict)
    config: dict = field(default_factory=dict)
    per_image: PerImage | None = None

    @property
    def finished(self) -> bool:
        return self.status == FINISHED

    @property
    def profile(self) -> str | None:
        return self.metrics.get("profile") or (self.config.get("run") or {}).get("profile")

    @property
    def data_dir(self) -> str | None:
        """The data folder of the run (None: the phantom)."""
        return config_data_dir(self.config)

    @property
    def history(self) -> list[dict]:
        return list(self.metrics.get("history") or [])

    def predictions(self) -> dict[str, np.ndarray] | None:
        """``predictions.npz`` (ids N, image/true/pred N x H x W uint8), None when absent."""
        path = self.path / PREDICTIONS
        return read_predictions(path) if path.is_file() else None


@dataclass
class CellRuns:
    """A cell and its runs, one per seed in seed order."""

    cell: Cell
    runs: list[Run]

    @property
    def finished(self) -> list[Run]:
        return [r for r in self.runs if r.finished]

    @property
    def status(self) -> str:
        """finished (every seed), partial (some), else failed, malformed, unfinished, not run."""
        done = len(self.finished)
        if done:
            return FINISHED if done == len(self.runs) else PARTIAL
        states = {r.status for r in self.runs}
        return next(s for s in (FAILED, MALFORMED, UNFINISHED, NOT_RUN) if s in states)


def load_run(run_dir: Path, cell_id: str, seed: int, fold: int | None = None) -> Run:
    """The record of one run; never raises for a malformed record (status ``malformed``)."""
    run = Run(cell_id=cell_id, seed=seed, path=run_dir, status=NOT_RUN, fold=fold)
    if not run_dir.is_dir():
        return run
    try:
        metrics_path = run_dir / METRICS
        if not metrics_path.is_file():
            run.status = UNFINISHED  # the folder exists: the run started, no record yet
            return run
        run.metrics = read_metrics(metrics_path)
        run.config = read_config(run_dir)
        status = run.metrics["status"]
        if status == FINISHED:
            csv_path = run_dir / PER_IMAGE
            if not csv_path.is_file():
                raise RecordError(f"{metrics_path}: status finished but no {csv_path}; {remedy()}")
            run.per_image = read_per_image(csv_path)
            run.status = FINISHED
        elif status == FAILED:
            run.status, run.error = FAILED, str(run.metrics.get("error") or "no error recorded")
        else:  # created, running, fitted: killed, or still going
            run.status, run.error = UNFINISHED, f"status {status}"
    except RecordError as err:
        log.warning("%s", err)
        run.status, run.error = MALFORMED, str(err)
    return run


def find_runs(sweep: Sweep, runs_root: Path) -> tuple[list[int], list[int | None]]:
    """(seeds, folds) of the sweep's runs under ``<runs_root>/<group>/``: ``[0]`` without any
    run; folds ``[None]`` without k-fold runs (``<id>-f<K>-s<S>``), else the folds found."""
    group_dir = runs_root / sweep.group
    pattern = re.compile(
        "(?:" + "|".join(re.escape(c.id) for c in sweep.cells) + r")(?:-f(\d+))?-s(\d+)"
    )
    seeds, folds = set(), set()
    if group_dir.is_dir():
        for entry in group_dir.iterdir():
            match = pattern.fullmatch(entry.name)
            if match and entry.is_dir():
                seeds.add(int(match.group(2)))
                folds.add(None if match.group(1) is None else int(match.group(1)))
    numbered = sorted(f for f in folds if f is not None)
    if numbered and None in folds:
        log.warning(
            "%s holds runs with and without k-fold; the table uses the %d folds' runs",
            group_dir,
            len(numbered),
        )
    return sorted(seeds) or [0], numbered or [None]


def find_seeds(sweep: Sweep, runs_root: Path) -> list[int]:
    """Seeds of any run of the sweep under ``<runs_root>/<group>/`` ([0] when there is none)."""
    return find_runs(sweep, runs_root)[0]


def load_sweep_runs(
    sweep: Sweep,
    runs_root: Path,
    seeds: list[int] | None = None,
    folds: int | None = None,
) -> list[CellRuns]:
    """Every cell of ``sweep`` (in its order) with its run per seed (and fold).

    Args:
        runs_root: the runs root; the sweep's runs are under ``<runs_root>/<group>/``.
        seeds: the seeds the sweep was run with (default: every seed found on disk).
        folds: the number of k-fold folds it was run with (default: the folds found).
    """
    found_seeds, found_folds = find_runs(sweep, runs_root)
    seeds = sorted(seeds) if seeds else found_seeds
    fold_ids = list(range(folds)) if folds else found_folds
    group_dir = runs_root / sweep.group
    cells = [
        CellRuns(
            cell,
            [
                load_run(group_dir / cell.run_name(s, f), cell.id, s, f)
                for s in seeds
                for f in fold_ids
            ],
        )
        for cell in sweep.cells
    ]
    check_id_fingerprints(cells)
    return cells


def check_id_fingerprints(cells: list[CellRuns]) -> None:
    """Refuse finished runs made under different identifier secrets (``id_fingerprint`` in
    ``metrics.json``): their patient keys (and CT slice ids) do not match, so the paired
    tests and the patient bootstrap would pair the wrong images. Runs without one (older
    versions) are only warned about."""
    runs = [r for c in cells for r in c.finished]
    prints: dict[str, list[str]] = {}
    for run in runs:
        prints.setdefault(run.metrics.get("id_fingerprint") or "", []).append(run.path.name)
    unknown = prints.pop("", [])
    if unknown and prints:
        log.warning(
            "%d runs record no identifier-secret fingerprint (older versions), e.g. %s: their "
            "patient keys may not match the others'",
            len(unknown),
            unknown[0],
        )
    if len(prints) > 1:
        listed = "; ".join(f"{f}: {len(n)} runs, e.g. {n[0]}" for f, n in sorted(prints.items()))
        raise RecordError(
            f"the runs were made with different identifier secrets ({listed}), so their "
            "patient keys do not match; rerun them with one secret (PTX_ID_SALT or the same "
            "id_secret file on every machine, docs/data.md)"
        )
