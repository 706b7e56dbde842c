"""A sweep's run records: which cells and seeds finished, failed or never ran, and their data.

A cell's run for seed S is ``<runs root>/<group>/<cell id>-s<S>/`` (docs/design.md, "Run
records"). A report reads only these files: ``metrics.json`` (status, set-level ``test``
metrics, ``params``, ``gmacs``, ``history``), ``per_image.csv`` (one row per test image),
``config.yaml`` (the data folder) and ``predictions.npz`` (the fixed overlay images).
A malformed file never stops a report: the run is marked ``malformed`` with an error that
names the file, and the table shows it.
"""

from __future__ import annotations

import csv
import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from ablations.sweeps import Cell, Sweep
from lightning_modules.metric_functions import ALIASES, RECORD_VERSION

log = logging.getLogger("ptx.report")

FINISHED, FAILED, UNFINISHED, MALFORMED, NOT_RUN = (
    "finished", "failed", "unfinished", "malformed", "not run",
)  # fmt: skip
PARTIAL = "partial"  # a cell with some seeds finished
PREDICTION_KEYS = ("ids", "image", "true", "pred")
_REMEDY = "rerun the cell (ptx sweep ... FORCE=1) or delete its folder"


def config_data_dir(config: dict) -> str | None:
    """The data folder in a run's resolved ``config.yaml`` (None: the phantom)."""
    return ((config.get("data") or {}).get("init_args") or {}).get("data_dir")


class RecordError(ValueError):
    """A run record file is malformed; the message names the file, the row and the remedy."""


@dataclass
class PerImage:
    """``per_image.csv`` of a run: ``ids``, ``patients`` (N each) and float64 columns (N)."""

    path: Path
    ids: list[str]
    patients: list[str]
    values: dict[str, np.ndarray]

    def has(self, key: str) -> bool:
        return key in self.values or ALIASES.get(key, key) in self.values

    def column(self, key: str) -> np.ndarray:
        """Per-image values of ``key`` (``dsc1``/``pa1`` read ``dice``/``sen``); NaN = undefined."""
        name = key if key in self.values else ALIASES.get(key, key)
        if name not in self.values:
            raise RecordError(f"{self.path}: no column {key!r}; columns: {', '.join(self.values)}")
        return self.values[name]

    @property
    def true_area(self) -> np.ndarray:
        """Float N: ground-truth PTX pixels (``true_area``, else 0/1 from ``true_ptx``)."""
        source = self.values.get("true_area", self.values.get("true_ptx"))
        if source is None:
            raise RecordError(f"{self.path}: neither true_area nor true_ptx; {_REMEDY}")
        return np.nan_to_num(source)

    @property
    def positive(self) -> np.ndarray:
        """Bool N: the ground truth has pneumothorax."""
        return self.true_area > 0

    def counts(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``tp``, ``fp``, ``fn`` (int64 N): what every per-patient (3-D) number is made of."""
        missing = [k for k in ("tp", "fp", "fn") if k not in self.values]
        if missing:
            raise RecordError(f"{self.path}: no column(s) {', '.join(missing)}; {_REMEDY}")
        return tuple(np.nan_to_num(self.values[k]).astype(np.int64) for k in ("tp", "fp", "fn"))


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
        path = self.path / "predictions.npz"
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


def _number(text: str | None, path: Path, line: int, column: str) -> float:
    value = (text or "").strip()
    if value.lower() in ("", "nan", "none", "null"):
        return float("nan")
    if value in ("True", "False"):
        return float(value == "True")
    try:
        return float(value)
    except ValueError:
        raise RecordError(
            f"{path}, line {line}: column {column}: {value!r} is not a number; {_REMEDY}"
        ) from None


def read_per_image(path: Path) -> PerImage:
    """Parse ``per_image.csv``; NaN may be written ``nan`` or left empty; booleans as 0/1.

    Raises:
        RecordError: no header, no ``id``/``patient`` column, a short row, a value that is
            not a number, a duplicate image id (each names the file and line).
    """
    with open(path, newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if not header or "id" not in header or "patient" not in header:
            raise RecordError(f"{path}: header must name id and patient columns; {_REMEDY}")
        metrics = [c for c in header if c not in ("id", "patient")]
        ids, patients, rows = [], [], []
        for line, row in enumerate(reader, start=2):
            if not row:
                continue
            if len(row) != len(header):
                raise RecordError(
                    f"{path}, line {line}: {len(row)} fields, the header has {len(header)}; "
                    f"{_REMEDY}"
                )
            record = dict(zip(header, row, strict=True))
            ids.append(record["id"])
            patients.append(record["patient"])
            rows.append([_number(record[c], path, line, c) for c in metrics])
    if len(set(ids)) != len(ids):
        duplicate = next(i for i in ids if ids.count(i) > 1)
        raise RecordError(f"{path}: image id {duplicate!r} appears twice; {_REMEDY}")
    table = np.asarray(rows, dtype=np.float64).reshape(len(rows), len(metrics))
    values = {c: table[:, j].copy() for j, c in enumerate(metrics)}
    return PerImage(path=path, ids=ids, patients=patients, values=values)


def read_metrics(path: Path) -> dict:
    """Parse ``metrics.json`` (null = NaN stays None here); must hold a ``status``."""
    try:
        record = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise RecordError(f"{path}: not valid JSON ({err}); {_REMEDY}") from None
    if not isinstance(record, dict) or "status" not in record:
        raise RecordError(f"{path}: no 'status' field: not a run record; {_REMEDY}")
    if not isinstance(record.get("history") or [], list):
        raise RecordError(f"{path}: 'history' must be a list of per-epoch rows; {_REMEDY}")
    version = record.get("record_version", 1)
    if record["status"] == FINISHED and version != RECORD_VERSION:
        raise RecordError(
            f"{path}: record version {version}, this ptx-seg reads version {RECORD_VERSION} "
            "(version 1 averaged Dice over every image, empty ones counting 1); " + _REMEDY
        )
    return record


def read_predictions(path: Path) -> dict[str, np.ndarray]:
    """Parse ``predictions.npz``: ``ids`` N, ``image``, ``true``, ``pred`` N x H x W."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError) as err:
        raise RecordError(f"{path}: unreadable ({err}); {_REMEDY}") from None
    missing = [k for k in PREDICTION_KEYS if k not in arrays]
    if missing:
        raise RecordError(f"{path}: missing arrays {missing}; {_REMEDY}")
    n = len(arrays["ids"])
    shapes = {k: arrays[k].shape for k in PREDICTION_KEYS[1:]}
    if any(len(s) != 3 or s[0] != n for s in shapes.values()) or len(set(shapes.values())) > 1:
        raise RecordError(f"{path}: {n} ids but image/true/pred shapes {shapes}; {_REMEDY}")
    arrays["ids"] = arrays["ids"].astype(str)
    return arrays


def load_run(run_dir: Path, cell_id: str, seed: int, fold: int | None = None) -> Run:
    """The record of one run; never raises for a malformed record (status ``malformed``)."""
    run = Run(cell_id=cell_id, seed=seed, path=run_dir, status=NOT_RUN, fold=fold)
    if not run_dir.is_dir():
        return run
    try:
        metrics_path = run_dir / "metrics.json"
        if not metrics_path.is_file():
            run.status = UNFINISHED  # the folder exists: the run started, no record yet
            return run
        run.metrics = read_metrics(metrics_path)
        config_path = run_dir / "config.yaml"
        if config_path.is_file():
            try:
                run.config = yaml.safe_load(config_path.read_text()) or {}
            except yaml.YAMLError as err:
                raise RecordError(f"{config_path}: not valid YAML ({err}); {_REMEDY}") from None
        status = run.metrics["status"]
        if status == FINISHED:
            csv_path = run_dir / "per_image.csv"
            if not csv_path.is_file():
                raise RecordError(f"{metrics_path}: status finished but no {csv_path}; {_REMEDY}")
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
