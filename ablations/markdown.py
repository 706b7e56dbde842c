"""``table.md``: a sweep's table as Markdown, with footnotes naming every column's population.

Shows labels, numbers and statuses only: never an image id or patient key. Image and patient
columns read ``mean (sd)`` (``max (mean)`` for the X-ray paper's HD) with a ▲ or ▼ when the
cell is significantly better or worse than its reference on that column's population.
"""

from __future__ import annotations

import math

from ablations import stats
from ablations.sweeps import Column
from ablations.table import Table
from lightning_modules import metric_functions as mf

MARKS = {"better": "▲", "worse": "▼", "": ""}
UNITS = {"ct": "slice", "xray": "image"}  # what one test item is in each paper
SET_TEXT = {  # what a set-level key is, {n}/{p} filled from its population's sizes
    "dice_kaggle": "mean Dice over all {n} test {unit}s with empty/empty = 1 (the SIIM-ACR "
    "leaderboard convention, shown for comparison with it; never a headline)",
    "dice_global": "Dice pooled over all pixels of the {n} test {unit}s",
    "empty_fp_rate": "share of the {n} test {unit}s without pneumothorax ({p} patients) that "
    "the diagnosis rule calls pneumothorax",
    "neg_pred_area": "mean predicted pneumothorax area in pixels (at the network's grid) on "
    "the {n} test {unit}s without pneumothorax ({p} patients)",
    "hd_max": "largest Hausdorff distance over the test {unit}s with pneumothorax",
    # image-level diagnosis: each statistic over the group it is defined on
    "diag_spec": "share of the {neg} test {unit}s without pneumothorax ({neg_p} patients) that "
    "the diagnosis rule calls negative (image-level specificity)",
    "diag_sen": "share of the {pos} test {unit}s with pneumothorax ({pos_p} patients) that the "
    "diagnosis rule calls pneumothorax (image-level sensitivity)",
}


def _decimals(values: list[float]) -> int:
    """Decimals of a column from its largest |value|: 0 from 1000, 2 from 1.5, else 3."""
    finite = [abs(v) for v in values if v is not None and math.isfinite(v)]
    top = max(finite, default=0.0)
    return 0 if top >= 1000 else 2 if top >= 1.5 else 3


def _num(value: float, decimals: int) -> str:
    return f"{value:.{decimals}f}" if value is not None and math.isfinite(value) else "–"


def _paper(value: float) -> str:
    """A published number as printed (0.84, 99.77, 7764098)."""
    if not math.isfinite(value):
        return ""
    return str(int(value)) if value == int(value) else f"{value:g}"


def _tested(column: Column) -> bool:
    return column.source in ("image", "patient")


def _header(table: Table) -> list[tuple[str, str, Column]]:
    """(heading, kind, column) for each shown column; kind: ours, ci or paper."""
    out = []
    for column in table.sweep.columns:
        label = column.label + (" max (mean)" if column.format == "max_mean" else "")
        out.append((label, "ours", column))
        if _tested(column):
            out.append((f"{column.label} 95% CI", "ci", column))
        if any(column.key in cell.paper for cell in table.sweep.cells):
            out.append((f"{column.label} paper", "paper", column))
    return out


def _cell_text(row: dict, kind: str, column: Column, decimals: int, seeds: bool) -> str:
    k = column.key
    if kind == "paper":
        text = _paper(row[f"{k}_paper"])
        mean = row.get(f"{k}_paper_mean", float("nan"))
        return f"{text} ({_paper(mean)})" if text and math.isfinite(mean) else text
    if not row["seeds"]:
        return "–"
    if kind == "ci":
        return f"[{_num(row[f'{k}_ci_low'], decimals)}, {_num(row[f'{k}_ci_high'], decimals)}]"
    if column.format == "max_mean":
        text = f"{_num(row[f'{k}_max'], decimals)} ({_num(row[k], decimals)})"
    else:
        text = _num(row[k], decimals)
        if _tested(column):
            text += f" ({_num(row[f'{k}_sd'], decimals)})"
    spread = row.get(f"{k}_seed_sd", float("nan"))
    if row.get("folds", 0) > 1:  # k-fold: the spread over the folds' means
        spread, seeds = row.get(f"{k}_fold_sd", float("nan")), True
    if seeds and math.isfinite(spread):
        text += f" ±{_num(spread, decimals)}"
    return text + MARKS[row.get(f"{k}_sig", "")]


def _population_text(column: Column, table: Table) -> str:
    """Where a column's number comes from, with the population and its size."""
    unit = UNITS.get(table.sweep.modality, "image")
    sizes = table.populations
    n, p = sizes.get(column.population, (0, 0))
    if column.source == "patient":
        return (
            f"mean (sd) over the {sizes.get(mf.POSITIVE, (0, 0))[1]} test patients with "
            "pneumothorax of each patient's 3-D value (all its slices counted together)"
        )
    if column.source == "image":
        what = {
            mf.POSITIVE: f"the {n} test {unit}s with pneumothorax ({p} patients; an empty "
            "prediction scores 0 there)",
            mf.NEGATIVE: f"the {n} test {unit}s without pneumothorax ({p} patients)",
            mf.ALL: f"all {n} test {unit}s ({p} patients)",
        }[column.population]
        shape = "max (mean)" if column.format == "max_mean" else "mean (sd)"
        return f"{shape} of the per-{unit} values over {what}, undefined values left out"
    if column.source == "run":
        return "of the network as built (metrics.json)"
    default = f"set-level value over all {n} test {unit}s"
    if column.key.startswith("diag_"):
        default = f"image-level diagnosis over all {n} test {unit}s ({p} patients)"
    (pos, pos_p), (neg, neg_p) = (sizes.get(g, (0, 0)) for g in (mf.POSITIVE, mf.NEGATIVE))
    text = SET_TEXT.get(column.key, default)
    return text.format(n=n, p=p, unit=unit, pos=pos, pos_p=pos_p, neg=neg, neg_p=neg_p)


def _footnotes(table: Table, notes: list[str]) -> list[str]:
    sweep, rows = table.sweep, table.rows
    labels = {row["cell"]: row["label"] for row in rows}
    several = any(len(row["seeds"].split()) > 1 for row in rows)
    refs = sorted({row["reference"] for row in rows})
    out = [
        f"Runs: profile {', '.join(table.profiles) or 'none finished'}; data "
        f"{', '.join(table.data) or '–'}; seeds {', '.join(map(str, table.seeds))}. A cell "
        "without a finished run keeps its row with its status (not run, unfinished, failed, "
        "malformed)."
    ]
    groups: dict[str, list[str]] = {}
    for column in sweep.columns:
        groups.setdefault(_population_text(column, table), []).append(column.label)
    out += [f"{', '.join(names)}: {text}." for text, names in groups.items()]
    if table.folds > 1:
        out.append(
            f"{table.folds}-fold cross-validation (patient folds stratified by pneumothorax): "
            "each test image belongs to one fold, so the per-image statistics pool the "
            "folds' test images and the paired tests pair each image with the same image "
            f"of the reference, tested in the same fold; ± is the sd over the {table.folds} "
            "folds' means (seeds averaged first)."
        )
    if any(_tested(c) for c in sweep.columns):
        if several and table.folds <= 1:
            out.append(
                "Per-image values are averaged over a cell's seeds image by image first; ± is "
                "the sd of the seed means."
            )
        out.append(stats.test_note(", ".join(labels.get(r, r) for r in refs)))
        out.append(stats.ci_note(table.n_resamples, table.bootstrap_seed))
    if any(c.source == "set" for c in sweep.columns) and (several or table.folds > 1):
        over = "runs (± sd over folds)" if table.folds > 1 else "seeds (± sd over seeds)"
        out.append(f"Set-level values: mean over {over}.")
    if any(c.key.startswith("diag_") or c.key == "empty_fp_rate" for c in sweep.columns):
        out.append(f"Diagnosis rule: {'; '.join(table.rules) or 'none recorded'}.")
    if any(cell.paper for cell in sweep.cells):
        out.append(
            "paper: the published number (the paper's own data; for orientation, "
            "not a like-for-like comparison)."
        )
    return out + table.notes + notes


def render_markdown(table: Table, notes: list[str] = ()) -> str:
    """``table.md``: title, provenance, the table (one row per cell), numbered footnotes."""
    sweep = table.sweep
    header = _header(table)

    def shown(row: dict, c: Column) -> list:
        return [row[c.key], row.get(f"{c.key}_max"), row[f"{c.key}_paper"]]

    # the published numbers count too: a column of zeros stays "0.00" beside 73.66
    decimals = {
        c.key: _decimals([v for r in table.rows for v in shown(r, c)]) for c in sweep.columns
    }
    several = any(len(row["seeds"].split()) > 1 for row in table.rows)
    lines = [f"# {sweep.title}", ""]
    lines.append(f"Sweep `{sweep.name}`, run group `{sweep.group}`, paper {sweep.paper}.")
    if "quick" in table.profiles:
        lines += [
            "",
            "> **Profile quick:** these numbers are a pipeline check"
            + (" on the phantom" if table.data == ["phantom"] else "")
            + " (few epochs, small images), not the paper's experiment.",
        ]
    lines += ["", "| Method | Runs | " + " | ".join(h for h, _, _ in header) + " |"]
    lines.append("|---|---|" + "---:|" * len(header))
    references = {row["reference"] for row in table.rows}
    for row in table.rows:
        label = row["label"] + (" (ref.)" if row["cell"] in references else "")
        if row["predicts_nothing"] or row["segments_nothing"]:
            label += " (predicts nothing)" if row["predicts_nothing"] else " (segments nothing)"
        cells = [_cell_text(row, kind, c, decimals[c.key], several) for _, kind, c in header]
        lines.append(f"| {label} | {row['runs']} | " + " | ".join(cells) + " |")
    lines.append("")
    lines += [f"{i}. {note}" for i, note in enumerate(_footnotes(table, list(notes)), start=1)]
    return "\n".join(lines) + "\n"
