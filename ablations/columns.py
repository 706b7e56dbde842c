"""The numbers behind one table column, from a cell's run records (``ablations/table.py``).

- ``image``: each run's per-image values from ``per_image.csv``, restricted to the column's
  population (the test images with pneumothorax for the overlap metrics, all of them for
  accuracy and specificity: ``lightning_modules.metric_functions.POPULATION``), averaged
  over a cell's seeds image by image.
- ``patient``: each run's per-patient 3-D Dice (IoU) from the summed counts of the patient's
  images in ``per_image.csv``, over the patients with pneumothorax, averaged over seeds.
- ``set``/``run``: one value per seed from ``metrics.json``.

Under k-fold cross-validation (``ptx sweep --folds N``) a cell has one run per (fold, seed);
each test image belongs to one fold, so pooling the runs' per-image values tests every image
once, and the paired tests pair an image with the same image (tested in the same fold) of
the reference. ``k_fold_sd`` is the sd over the folds' means.

Every statistic of an ``image``/``patient`` column is computed on that same population: mean
and sd, the patient bootstrap CI, the paired tests against the reference and the paper's
independent two-sample t-test.
"""

from __future__ import annotations

import numpy as np

from ablations import stats
from ablations.records import CellRuns, Run
from ablations.sweeps import Column
from lightning_modules import metric_functions as mf

NAN = float("nan")


def run_values(run: Run, column: Column) -> tuple[list[str], np.ndarray, list[str]]:
    """``(ids, values, groups)`` of one finished run for an image or patient column.

    Image columns: every test image id, its value (NaN outside the population or where
    undefined) and its patient. Patient columns: the keys of the patients with pneumothorax,
    their 3-D value, and the keys again (each patient is its own bootstrap group).
    """
    table = run.per_image
    if column.source == "patient":
        tp, fp, fn = table.counts()
        names, dice, iou, _, _, true_area = mf.group_dice(table.patients, tp, fp, fn)
        keep = true_area > 0
        values = {"dice_volume": dice, "iou_volume": iou}[column.key][keep]
        keys = names[keep].tolist()
        return keys, values, keys
    if table.has(column.key):
        values = table.column(column.key).copy()
    else:  # an older CSV without this column: all undefined (noted in the table)
        values = np.full(len(table.ids), NAN)
    values[~mf.in_population(table.true_area, column.population)] = NAN
    return table.ids, values, table.patients


def _pooled_mean(parts: list[tuple]) -> float:
    """Mean over the images of some runs' ``(ids, values, groups)``, seeds averaged first."""
    ids, values = stats.average_over_seeds([p[0] for p in parts], [p[1] for p in parts])
    return stats.mean_sd(values)[0]


def by(runs: list[Run], key: str) -> dict:
    """``{seed or fold: [runs]}`` in first-seen order."""
    out: dict = {}
    for run in runs:
        out.setdefault(getattr(run, key), []).append(run)
    return out


def aggregate(cell_runs: CellRuns, column: Column) -> dict | None:
    """Seed-averaged values (unscaled) of an image/patient column, pooled over folds, with
    ids, bootstrap groups, seed means and fold means; None without a finished run."""
    runs = cell_runs.finished
    if not runs:
        return None
    per_run = {id(r): run_values(r, column) for r in runs}
    parts = list(per_run.values())
    ids, values = stats.average_over_seeds([p[0] for p in parts], [p[1] for p in parts])
    group_of = {i: g for p in parts for i, g in zip(p[0], p[2], strict=True)}
    folds = by(runs, "fold")
    return {
        "ids": ids,
        "values": values,
        "groups": [group_of[i] for i in ids],
        "seed_means": [
            stats.mean_sd(np.concatenate([per_run[id(r)][1] for r in group]))[0]
            for group in by(runs, "seed").values()
        ],
        "fold_means": []
        if None in folds
        else [_pooled_mean([per_run[id(r)] for r in group]) for group in folds.values()],
    }


def fold_sd(cell_runs: CellRuns, values: list[float]) -> float:
    """sd over folds of one value per finished run (seeds averaged per fold); NaN unless
    k-fold with two or more folds."""
    value_of = {id(r): v for r, v in zip(cell_runs.finished, values, strict=True)}
    folds = by(cell_runs.finished, "fold")
    if None in folds or len(folds) < 2:
        return NAN
    means = [stats.mean_sd([value_of[id(r)] for r in group])[0] for group in folds.values()]
    return stats.mean_sd(means)[1]


def stat_cells(
    column: Column, agg: dict | None, ref: dict | None, is_ref: bool, n_resamples: int, seed: int
) -> dict:
    """The row's entries of an image/patient column (scaled), NaN where there is nothing.

    ``k``, ``k_sd``, ``k_seed_sd``, ``k_fold_sd`` (sd of the fold means), ``k_ci_low``,
    ``k_ci_high``, ``k_n`` (values in the population), ``k_max`` (for ``max_mean`` columns),
    and against the reference ``k_diff``,
    ``k_p_t``, ``k_p_wilcoxon``, ``k_n_pairs``, ``k_p_t_ind`` and ``k_sig`` (``better``,
    ``worse`` or empty).
    """
    k, s = column.key, column.scale
    names = (
        "",
        "_sd",
        "_seed_sd",
        "_fold_sd",
        "_ci_low",
        "_ci_high",
        "_diff",
        "_p_t",
        "_p_wilcoxon",
    )
    out = {f"{k}{n}": NAN for n in (*names, "_p_t_ind")}
    out.update({f"{k}_n": 0, f"{k}_n_pairs": 0, f"{k}_sig": ""})
    if column.format == "max_mean":
        out[f"{k}_max"] = NAN
    if agg is None:
        return out
    values = agg["values"]
    mean, sd = stats.mean_sd(values)
    low, high = stats.bootstrap_ci(values, agg["groups"], n_resamples, seed=seed)
    out.update({k: mean * s, f"{k}_sd": sd * s, f"{k}_ci_low": low * s, f"{k}_ci_high": high * s})
    out[f"{k}_seed_sd"] = stats.mean_sd(agg["seed_means"])[1] * s
    if len(agg["fold_means"]) > 1:
        out[f"{k}_fold_sd"] = stats.mean_sd(agg["fold_means"])[1] * s
    out[f"{k}_n"] = int(np.sum(~np.isnan(values)))
    if column.format == "max_mean" and out[f"{k}_n"]:
        out[f"{k}_max"] = float(np.nanmax(values)) * s
    if ref is not None and not is_ref:
        test = stats.paired_tests(agg["ids"], values, ref["ids"], ref["values"])
        out.update({f"{k}_diff": test.mean_diff * s, f"{k}_p_t": test.p_t})
        out.update({f"{k}_p_wilcoxon": test.p_wilcoxon, f"{k}_n_pairs": test.n})
        out[f"{k}_p_t_ind"] = stats.independent_t(values, ref["values"])
        out[f"{k}_sig"] = test.verdict(column.higher_is_better)
    return out


def seed_values(cell_runs: CellRuns, column: Column) -> list[float]:
    """One value per finished seed from ``metrics.json`` (test section or top level)."""
    out = []
    for run in cell_runs.finished:
        source = (run.metrics.get("test") or {}) if column.source == "set" else run.metrics
        value = source.get(column.key)
        out.append(NAN if value is None else float(value))
    return out


def empty_share(run: Run) -> float:
    """Share of the run's test images whose predicted mask is empty (NaN: not recorded)."""
    area = run.per_image.values.get("pred_area")
    return NAN if area is None else float(np.mean(np.nan_to_num(area) == 0))


def predicts_nothing(run: Run) -> bool:
    """True when the run's network left every test image empty (it has learnt nothing)."""
    return empty_share(run) == 1.0


def segments_nothing(run: Run) -> bool:
    """True when the run's network found no pneumothorax pixel on any test image that has one:
    every mask empty, or masks that never touch a pneumothorax (stray blobs elsewhere). Either
    way it has not learnt to segment, whatever its accuracy or specificity say."""
    if predicts_nothing(run):
        return True
    values = run.per_image.values
    if "tp" not in values or not {"true_area", "true_ptx"} & values.keys():
        return False  # an older record: only the all-empty test above applies
    positive = run.per_image.positive
    return bool(positive.any()) and not np.nan_to_num(values["tp"][positive]).any()


def population_sizes(runs: list[Run]) -> dict[str, tuple[int, int]]:
    """``{population: (images, patients)}`` of finished runs' pooled test sets (the folds of
    one seed: each image once)."""
    tables = [r.per_image for r in runs]
    patients = np.concatenate([np.asarray(t.patients, dtype=object) for t in tables])
    true_area = np.concatenate([t.true_area for t in tables])
    out = {}
    for population in (mf.POSITIVE, mf.NEGATIVE, mf.ALL):
        keep = mf.in_population(true_area, population)
        out[population] = (int(keep.sum()), len(set(patients[keep])))
    return out
