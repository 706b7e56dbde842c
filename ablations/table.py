"""A sweep's table from its run records: one row per cell, the sweep's columns, statistics.

Per column source (``ablations/sweeps.py``; the numbers come from ``ablations/columns.py``):

- ``image`` / ``patient``: per-image (per-patient 3-D) values over the column's population,
  averaged over a cell's seeds image by image; ``k`` mean and ``k_sd`` sd (ddof=1),
  ``k_seed_sd`` sd over the seeds' means, ``k_ci_low``/``k_ci_high`` patient bootstrap 95%
  CI of the mean, ``k_n`` values in the population, ``k_max`` (``max_mean`` columns),
  against the reference ``k_diff`` mean difference, ``k_p_t``/``k_p_wilcoxon`` paired
  tests on ``k_n_pairs`` pairs, ``k_p_t_ind`` the papers' independent two-sample t-test,
  ``k_sig`` ``better``/``worse`` when ``k_p_t`` < 0.05.
- ``set``: ``metrics.json`` ``test[k]``, mean (``k``) and sd (``k_seed_sd``) over seeds.
- ``run``: ``metrics.json`` ``params``/``gmacs``, mean over seeds.

Every number is multiplied by the column's ``scale`` (p-values and counts are not); the
paper's published value (``k_paper``, and ``k_paper_mean`` for a ``max_mean`` pair) is
already in the column's unit. ``pred_empty`` is the share of test images a cell's network
left empty (mean over seeds); a cell whose network predicted nothing on some seed
(``predicts_nothing``), or whose masks touched no pneumothorax on any test image
(``segments_nothing``, which includes the first), is never marked better and a note says
so. Cells without a finished run keep their row with NaNs and their status (``not run``,
``failed``, ...). ``write_csv``/``write_json`` store the rows unrounded;
``ablations/report.py`` renders Markdown.
"""

from __future__ import annotations

import csv
import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

from ablations import columns, stats
from ablations.records import NOT_RUN, PARTIAL, CellRuns
from ablations.sweeps import Sweep
from datamodules.io.errors import DataError
from lightning_modules.diagnosis import DiagnosisRule
from lightning_modules.records import FINISHED, json_safe

NAN = float("nan")


@dataclass
class Table:
    """The assembled table: ``rows`` (one dict per cell, in the sweep's order; NaN = none)
    and what the footnotes need: ``populations`` (``{population: (images, patients)}`` of
    the test set) and ``rules`` (the diagnosis rules the runs used, described)."""

    sweep: Sweep
    rows: list[dict]
    seeds: list[int]
    folds: int  # of a k-fold cross-validation; 0: one split
    profiles: list[str]
    data: list[str]
    n_resamples: int
    bootstrap_seed: int
    populations: dict[str, tuple[int, int]] = field(default_factory=dict)
    rules: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # failed runs' errors (scrubbed), gaps
    private: set[str] = field(default_factory=set)  # patient keys and image ids seen: never shown

    @property
    def columns(self) -> list[str]:
        """Every key of a row, in order (the CSV header)."""
        return list(self.rows[0]) if self.rows else []


def _paper_cells(column, published) -> dict:
    """``k_paper`` (and ``k_paper_mean`` for a ``[max, mean]`` pair) of one cell."""
    k = column.key
    pair = isinstance(published, (list, tuple))
    out = {f"{k}_paper": NAN if published is None else float(published[0] if pair else published)}
    if column.format == "max_mean":
        out[f"{k}_paper_mean"] = float(published[1]) if pair else NAN
    return out


def _runs_text(cell_runs: CellRuns) -> str:
    """``s0, s1`` when all finished; ``s0; s1 failed`` when some; else the status. Under
    k-fold: ``5 folds x s0`` when all finished, else the runs as ``f<fold>s<seed>``."""
    status = cell_runs.status

    def tag(run) -> str:
        return f"s{run.seed}" if run.fold is None else f"f{run.fold}s{run.seed}"

    if status not in (FINISHED, PARTIAL):
        return status
    folds = {r.fold for r in cell_runs.runs} - {None}
    if status == FINISHED and folds:
        seeds = dict.fromkeys(f"s{r.seed}" for r in cell_runs.runs)
        return f"{len(folds)} folds x {', '.join(seeds)}"
    done = ", ".join(tag(r) for r in cell_runs.finished)
    others = [f"{tag(r)} {r.status}" for r in cell_runs.runs if not r.finished]
    return "; ".join([done, *others])


def _scrub(text: str, private: set[str]) -> str:
    """Error text with any patient key or image id replaced (errors may quote data). A data
    error names the file to fix (a folder may be an MRN, a stem a site's UID): the report
    gives its kind only, the run's metrics.json and console the whole message."""
    text = text.strip().splitlines()[0] if text.strip() else ""
    if text.startswith(f"{DataError.__name__}:"):
        return f"{DataError.__name__} (bad input data: the run's metrics.json names the file)"
    for secret in sorted(private, key=len, reverse=True):
        if secret and secret in text:
            text = text.replace(secret, "<id>")
    return text[:300]


def _rules(cells: list[CellRuns]) -> list[str]:
    """The diagnosis rules of the finished runs, described once each."""
    found = []
    for cell_runs in cells:
        for run in cell_runs.finished:
            rule = run.metrics.get("diagnosis")
            text = DiagnosisRule.from_dict(rule).describe() if rule else "not recorded"
            if rule and rule.get("rule") == "tuned":
                text = "tuned per run on its own validation set (metrics.json: diagnosis)"
            found.append(text)
    return list(dict.fromkeys(found))


def _test_sets(cells: list[CellRuns]) -> tuple[dict, list[str]]:
    """Population sizes of the test set (every fold's, pooled), and a note when the runs saw
    different test sets (runs of one fold are compared with each other)."""
    runs = [r for c in cells for r in c.finished]
    if not runs:
        return {}, []
    first = {}
    for run in runs:
        first.setdefault(run.fold, run)
    sizes = columns.population_sizes(list(first.values()))
    differ = any(set(r.per_image.ids) != set(first[r.fold].per_image.ids) for r in runs)
    note = ["the runs were tested on different test sets; the sizes given are of the first"]
    return sizes, note if differ else []


def build_table(
    sweep: Sweep,
    cells: list[CellRuns],
    n_resamples: int = stats.N_RESAMPLES,
    bootstrap_seed: int = 0,
) -> Table:
    """Assemble the table of ``sweep`` from its loaded runs (``records.load_sweep_runs``).

    Args:
        n_resamples, bootstrap_seed: of the patient bootstrap (same seed for every cell).
    """
    tested = [c for c in sweep.columns if c.source in ("image", "patient")]
    aggregates = {(c.cell.id, col.key): columns.aggregate(c, col) for c in cells for col in tested}
    private = {
        x for c in cells for r in c.finished for x in (*r.per_image.ids, *r.per_image.patients)
    }
    rows, notes = [], []
    for cell_runs in cells:
        cell = cell_runs.cell
        ref_id = sweep.reference_of(cell).id
        finished = cell_runs.finished
        empty = [r for r in finished if columns.segments_nothing(r)]
        row = {
            "cell": cell.id,
            "label": cell.label,
            "status": cell_runs.status,
            "runs": _runs_text(cell_runs),
            "seeds": " ".join(str(s) for s in dict.fromkeys(r.seed for r in finished)),
            "folds": len({r.fold for r in finished if r.fold is not None}),
            "reference": ref_id,
            "pred_empty": stats.mean_sd([columns.empty_share(r) for r in finished])[0],
            "predicts_nothing": any(columns.predicts_nothing(r) for r in finished),
            "segments_nothing": bool(empty),
        }
        for column in sweep.columns:
            k, s = column.key, column.scale
            if column in tested:
                agg, ref = aggregates[(cell.id, k)], aggregates[(ref_id, k)]
                entries = columns.stat_cells(
                    column, agg, ref, ref_id == cell.id, n_resamples, bootstrap_seed
                )
                if empty and entries[f"{k}_sig"] == "better":
                    entries[f"{k}_sig"] = ""  # a network that segments nothing is never "better"
                row.update(entries)
            else:
                values = columns.seed_values(cell_runs, column)
                mean, sd = stats.mean_sd(values)
                row[k] = mean * s
                if column.source == "set":
                    row[f"{k}_seed_sd"] = sd * s
                    row[f"{k}_fold_sd"] = columns.fold_sd(cell_runs, values) * s
            row.update(_paper_cells(column, cell.paper.get(k)))
        if empty:
            seeds = ", ".join(str(r.seed) for r in empty)
            what = (  # the weaker statement holds for every run listed
                "predicted no pneumothorax on any test image"
                if all(columns.predicts_nothing(r) for r in empty)
                else "found no pneumothorax pixel on any test image that has one"
            )
            notes.append(
                f"{cell.label}: the network {what} (seed {seeds}): it has not learnt to "
                "segment; its overlap scores over the images with pneumothorax are 0 and it "
                "is never marked better than the reference"
            )
        rows.append(row)
    runs = [r for c in cells for r in c.finished]
    notes += [
        f"{c.cell.label} s{r.seed} {r.status}: {_scrub(r.error or '', private)}"
        for c in cells
        for r in c.runs
        if r.status not in (FINISHED, NOT_RUN)
    ]
    notes += [
        f"{c.cell.label} s{r.seed}: per_image.csv has no column {col.key!r}"
        for c in cells
        for r in c.finished
        for col in tested
        if col.source == "image" and not r.per_image.has(col.key)
    ]
    done = {row["cell"] for row in rows if row["seeds"]}
    notes += [
        f"no paired tests against {sweep.cell(ref).label}: it has no finished run"
        for ref in dict.fromkeys(row["reference"] for row in rows if row["cell"] in done)
        if tested and ref not in done
    ]
    populations, set_notes = _test_sets(cells)
    return Table(
        sweep=sweep,
        rows=rows,
        seeds=sorted({r.seed for c in cells for r in c.runs}),
        folds=len({r.fold for c in cells for r in c.runs if r.fold is not None}),
        profiles=sorted({r.profile or "unknown" for r in runs}),
        data=sorted({(r.data_dir or "phantom") if r.config else "unknown" for r in runs}),
        n_resamples=n_resamples,
        bootstrap_seed=bootstrap_seed,
        populations=populations,
        rules=_rules(cells),
        notes=set_notes + notes,
        private=private,
    )


def write_csv(table: Table, path: Path) -> None:
    """``table.csv``: the rows as built, floats unrounded (shortest repr), NaN left empty."""
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=table.columns)
        writer.writeheader()
        for row in table.rows:
            writer.writerow({k: "" if json_safe(v) is None else v for k, v in row.items()})


def write_json(table: Table, notes: list[str], path: Path) -> None:
    """``table.json``: sweep metadata, run provenance, statistics settings, rows, notes."""
    sweep = table.sweep
    payload = {
        "sweep": {
            "name": sweep.name,
            "title": sweep.title,
            "paper": sweep.paper,
            "group": sweep.group,
            "modality": sweep.modality,
            "reference": sweep.reference,
            "columns": [dataclasses.asdict(c) for c in sweep.columns],
            "cells": [dataclasses.asdict(c) for c in sweep.cells],
        },
        "runs": {
            "seeds": table.seeds,
            "folds": table.folds,
            "profiles": table.profiles,
            "data": table.data,
        },
        "test_set": {k: {"images": v[0], "patients": v[1]} for k, v in table.populations.items()},
        "diagnosis_rules": table.rules,
        "statistics": {
            "test": "paired t-test (scipy.stats.ttest_rel) by image id (patient key) on the "
            "column's population; better/worse when p < 0.05",
            "check": "Wilcoxon signed-rank (scipy.stats.wilcoxon, zero_method='wilcox')",
            "papers": "Student's t-test for two independent samples (scipy.stats.ttest_ind)",
            "ci": "percentile bootstrap of the mean over images, resampling patients",
            "ci_level": 0.95,
            "n_resamples": table.n_resamples,
            "bootstrap_seed": table.bootstrap_seed,
        },
        "rows": [{k: json_safe(v) for k, v in row.items()} for row in table.rows],
        "notes": notes,
    }
    path.write_text(json.dumps(payload, indent=1, allow_nan=False) + "\n")
