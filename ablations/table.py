"""A sweep's table from its run records: one row per cell, the sweep's columns, statistics.

Per column source (``ablations/sweeps.py``):

- ``image``: per-image values from ``per_image.csv``, averaged over a cell's seeds image by
  image; ``k`` mean and ``k_sd`` sd (ddof=1) over images, ``k_seed_sd`` sd over the seeds'
  means, ``k_ci_low``/``k_ci_high`` patient bootstrap 95% CI of the mean, ``k_diff`` mean
  difference to the reference and ``k_p_t``/``k_p_wilcoxon`` paired tests on ``k_n_pairs``
  images, ``k_sig`` ``*`` when ``k_p_t`` < 0.05.
- ``set``: ``metrics.json`` ``test[k]``, mean (``k``) and sd (``k_seed_sd``) over seeds.
- ``run``: ``metrics.json`` ``params``/``gmacs``, mean over seeds.

Every number is multiplied by the column's ``scale`` (p-values and counts are not); the
paper's published value (``k_paper``) is already in the column's unit. Cells without a
finished run keep their row with NaNs and their status (``not run``, ``failed``, ...).
``write_csv``/``write_json`` store the rows unrounded; ``ablations/report.py`` renders Markdown.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ablations import stats
from ablations.records import FINISHED, NOT_RUN, PARTIAL, CellRuns, Run
from ablations.sweeps import Column, Sweep

NAN = float("nan")


@dataclass
class Table:
    """The assembled table: ``rows`` (one dict per cell, in the sweep's order; NaN = none)
    and what the footnotes need."""

    sweep: Sweep
    rows: list[dict]
    seeds: list[int]
    profiles: list[str]
    data: list[str]
    n_resamples: int
    bootstrap_seed: int
    notes: list[str] = field(default_factory=list)  # failed runs' errors (scrubbed), gaps
    private: set[str] = field(default_factory=set)  # patient keys and image ids seen: never shown

    @property
    def columns(self) -> list[str]:
        """Every key of a row, in order (the CSV header)."""
        return list(self.rows[0]) if self.rows else []


def _values(run: Run, key: str) -> np.ndarray:
    """The run's per-image ``key``; all NaN when its CSV lacks the column (noted in the table)."""
    if run.per_image.has(key):
        return run.per_image.column(key)
    return np.full(len(run.per_image.ids), NAN)


def _image_aggregate(cell_runs: CellRuns, key: str) -> dict | None:
    """Seed-averaged per-image values of ``key`` (unscaled) with patients and seed means."""
    runs = cell_runs.finished
    if not runs:
        return None
    per_seed = [_values(r, key) for r in runs]
    ids, values = stats.average_over_seeds([r.per_image.ids for r in runs], per_seed)
    patient_of = {
        i: p for r in runs for i, p in zip(r.per_image.ids, r.per_image.patients, strict=True)
    }
    seed_means = [stats.mean_sd(v)[0] for v in per_seed]
    return {
        "ids": ids,
        "values": values,
        "patients": [patient_of[i] for i in ids],
        "seed_means": seed_means,
    }


def _seed_values(cell_runs: CellRuns, column: Column) -> list[float]:
    """One value per finished seed from ``metrics.json`` (test section or top level)."""
    out = []
    for run in cell_runs.finished:
        source = (run.metrics.get("test") or {}) if column.source == "set" else run.metrics
        value = source.get(column.key)
        out.append(NAN if value is None else float(value))
    return out


def _image_cells(
    column: Column, agg: dict | None, ref: dict | None, is_ref: bool, n_resamples: int, seed: int
) -> dict:
    k, s = column.key, column.scale
    out = dict.fromkeys(
        (k, f"{k}_sd", f"{k}_seed_sd", f"{k}_ci_low", f"{k}_ci_high", f"{k}_diff"), NAN
    )
    out.update({f"{k}_n": 0, f"{k}_p_t": NAN, f"{k}_p_wilcoxon": NAN, f"{k}_n_pairs": 0})
    out[f"{k}_sig"] = ""
    if agg is None:
        return out
    mean, sd = stats.mean_sd(agg["values"])
    low, high = stats.bootstrap_ci(agg["values"], agg["patients"], n_resamples, seed=seed)
    out.update({k: mean * s, f"{k}_sd": sd * s, f"{k}_ci_low": low * s, f"{k}_ci_high": high * s})
    out[f"{k}_seed_sd"] = stats.mean_sd(agg["seed_means"])[1] * s
    out[f"{k}_n"] = int(np.sum(~np.isnan(agg["values"])))
    if ref is not None and not is_ref:
        test = stats.paired_tests(agg["ids"], agg["values"], ref["ids"], ref["values"])
        out.update({f"{k}_diff": test.mean_diff * s, f"{k}_p_t": test.p_t})
        out.update({f"{k}_p_wilcoxon": test.p_wilcoxon, f"{k}_n_pairs": test.n})
        out[f"{k}_sig"] = test.mark
    return out


def _runs_text(cell_runs: CellRuns) -> str:
    """``s0, s1`` when all finished; ``s0; s1 failed`` when some; else the status."""
    status = cell_runs.status
    if status not in (FINISHED, PARTIAL):
        return status
    done = ", ".join(f"s{r.seed}" for r in cell_runs.finished)
    others = [f"s{r.seed} {r.status}" for r in cell_runs.runs if not r.finished]
    return "; ".join([done, *others])


def _scrub(text: str, private: set[str]) -> str:
    """Error text with any patient key or image id replaced (errors may quote data)."""
    text = text.strip().splitlines()[0] if text.strip() else ""
    for secret in sorted(private, key=len, reverse=True):
        if secret and secret in text:
            text = text.replace(secret, "<id>")
    return text[:300]


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
    image_columns = [c for c in sweep.columns if c.source == "image"]
    aggregates = {
        (c.cell.id, col.key): _image_aggregate(c, col.key) for c in cells for col in image_columns
    }
    private = {
        x for c in cells for r in c.finished for x in (*r.per_image.ids, *r.per_image.patients)
    }
    rows = []
    for cell_runs in cells:
        cell = cell_runs.cell
        ref_id = sweep.reference_of(cell).id
        finished = cell_runs.finished
        row = {
            "cell": cell.id,
            "label": cell.label,
            "status": cell_runs.status,
            "runs": _runs_text(cell_runs),
            "seeds": " ".join(str(r.seed) for r in finished),
            "reference": ref_id,
        }
        for column in sweep.columns:
            k, s = column.key, column.scale
            if column.source == "image":
                row.update(
                    _image_cells(
                        column,
                        aggregates[(cell.id, k)],
                        aggregates[(ref_id, k)],
                        ref_id == cell.id,
                        n_resamples,
                        bootstrap_seed,
                    )
                )
            else:
                mean, sd = stats.mean_sd(_seed_values(cell_runs, column))
                row[k] = mean * s
                if column.source == "set":
                    row[f"{k}_seed_sd"] = sd * s
            paper = cell.paper.get(k)
            row[f"{k}_paper"] = NAN if paper is None else float(paper)
        rows.append(row)
    runs = [r for c in cells for r in c.finished]
    notes = [
        f"{c.cell.label} s{r.seed} {r.status}: {_scrub(r.error or '', private)}"
        for c in cells
        for r in c.runs
        if r.status not in (FINISHED, NOT_RUN)
    ]
    notes += [
        f"{c.cell.label} s{r.seed}: per_image.csv has no column {col.key!r}"
        for c in cells
        for r in c.finished
        for col in image_columns
        if not r.per_image.has(col.key)
    ]
    done = {row["cell"] for row in rows if row["seeds"]}
    notes += [
        f"no paired tests against {sweep.cell(ref).label}: it has no finished run"
        for ref in dict.fromkeys(row["reference"] for row in rows if row["cell"] in done)
        if image_columns and ref not in done
    ]
    return Table(
        sweep=sweep,
        rows=rows,
        seeds=sorted({r.seed for c in cells for r in c.runs}),
        profiles=sorted({r.profile or "unknown" for r in runs}),
        data=sorted({(r.data_dir or "phantom") if r.config else "unknown" for r in runs}),
        n_resamples=n_resamples,
        bootstrap_seed=bootstrap_seed,
        notes=notes,
        private=private,
    )


def plain(value):
    """JSON/W&B-safe copy: NaN becomes None."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_csv(table: Table, path: Path) -> None:
    """``table.csv``: the rows as built, floats unrounded (shortest repr), NaN left empty."""
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=table.columns)
        writer.writeheader()
        for row in table.rows:
            writer.writerow({k: "" if plain(v) is None else v for k, v in row.items()})


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
        "runs": {"seeds": table.seeds, "profiles": table.profiles, "data": table.data},
        "statistics": {
            "test": "paired t-test (scipy.stats.ttest_rel) by image id; * when p < 0.05",
            "check": "Wilcoxon signed-rank (scipy.stats.wilcoxon, zero_method='wilcox')",
            "ci": "percentile bootstrap of the mean over images, resampling patients",
            "ci_level": 0.95,
            "n_resamples": table.n_resamples,
            "bootstrap_seed": table.bootstrap_seed,
        },
        "rows": [{k: plain(v) for k, v in row.items()} for row in table.rows],
        "notes": notes,
    }
    path.write_text(json.dumps(payload, indent=1, allow_nan=False) + "\n")
