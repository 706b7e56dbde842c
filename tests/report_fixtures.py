"""Hand-written run records for the report tests, as the runner leaves them (docs/design.md,
"Run records"): metrics from the project's own formulas on hand-picked confusion counts, so
every expected number of the tests is worked out by hand. Six test images of three patients
(two each) on a 10 x 10 grid; images 2 and 5 are negative."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import yaml

from lightning_modules.metric_functions import RECORD_VERSION, image_metrics

IDS = ["pAAA-z0", "pAAA-z1", "pBBB-z0", "pBBB-z1", "pCCC-z0", "pCCC-z1"]
PATIENTS = ["pAAA", "pAAA", "pBBB", "pBBB", "pCCC", "pCCC"]
# (tp, fp, fn) per image -> Dice 2tp / (2tp + fp + fn); (0, 0, 0) = 1, (0, 5, 0) = 0
COUNTS = {
    ("ref", 0): [(9, 1, 1), (4, 1, 1), (0, 0, 0), (7, 3, 3), (3, 2, 2), (0, 0, 0)],
    ("ref", 1): [(4, 1, 1), (4, 1, 1), (0, 0, 0), (9, 1, 1), (3, 2, 2), (0, 0, 0)],
    ("other", 0): [(1, 1, 1), (3, 2, 2), (0, 0, 0), (2, 3, 3), (1, 4, 4), (0, 5, 0)],
    ("other", 1): [(7, 3, 3), (2, 3, 3), (0, 0, 0), (3, 2, 2), (2, 3, 3), (0, 5, 0)],
}
REF_DICE = [0.85, 0.8, 1.0, 0.8, 0.6, 1.0]  # per image, mean of the two seeds
OTHER_DICE = [0.6, 0.5, 1.0, 0.5, 0.3, 0.0]
POSITIVE = [0, 1, 3, 4]
REF_POS, OTHER_POS = ([d[i] for i in POSITIVE] for d in (REF_DICE, OTHER_DICE))
SWEEP = {
    "title": "Test table: two methods",
    "paper": "efa-net",
    "reference": "ref",
    "columns": [
        {"key": "dice", "label": "Dice (%)", "scale": 100},
        {"key": "sen", "label": "SE (%)", "scale": 100},
        {"key": "acc", "label": "Accuracy (%)", "scale": 100},
        {"key": "dice_volume", "label": "3-D Dice (%)", "scale": 100, "source": "patient"},
        {"key": "dice_kaggle", "label": "Dice Kaggle (%)", "scale": 100, "source": "set"},
        {"key": "params", "label": "Param (M)", "scale": 1.0e-6, "source": "run"},
    ],
    "cells": [
        {"id": "ref", "label": "Reference net", "exp": "ct/efa_net", "paper": {"dice": 90.03}},
        {"id": "other", "label": "Other net", "exp": "ct/unet", "paper": {"dice": 83.46}},
        {"id": "gone", "label": "Never ran", "exp": "ct/unet"},
        {"id": "broken", "label": "Crashed net", "exp": "ct/fpn", "paper": {"params": 23.15}},
    ],
}


def write_run(run_dir, cell, seed, status="finished", nan_as="nan", shuffle=False, preds=None):
    """A run record as `ptx fit` leaves it: metrics.json, config.yaml, per_image.csv, npz."""
    run_dir.mkdir(parents=True)
    history = [
        {"epoch": e, "step": 4 * e, "train/loss": 1.0 / e, "val/dice_global": 0.2 * e + seed / 10}
        for e in (1, 2, 3)
    ]
    metrics = {"name": run_dir.name, "seed": seed, "profile": "quick", "status": status}
    metrics["record_version"] = RECORD_VERSION
    metrics["diagnosis"] = {"rule": "paper", "min_area": 50}
    metrics.update({"params": 430000 if cell == "ref" else 24430242, "gmacs": 1.5})
    metrics["history"] = history
    if status == "failed":
        metrics["error"] = "RuntimeError: out of memory on pBBB-z1 of patient pBBB\ntraceback"
    else:
        kaggle = {("ref", 0): 0.75, ("ref", 1): 0.77}.get((cell, seed), 0.4)
        metrics["test"] = {"dice_kaggle": kaggle}
    (run_dir / "metrics.json").write_text(json.dumps(metrics))
    config = {"data": {"init_args": {"data_dir": None}}, "run": {"profile": "quick"}}
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
    if status != "finished":
        return
    tp, fp, fn = (np.array(c) for c in zip(*COUNTS[(cell, seed)], strict=True))
    tn = 100 - tp - fp - fn
    values = image_metrics(tp, fp, fn, tn)
    rows = []
    for i in range(6):
        row = {"id": IDS[i], "patient": PATIENTS[i]}
        row.update({k: values[k][i] for k in ("acc", "dice", "iou", "sen", "spec", "mpa", "dsc")})
        row.update({"hd": math.nan, "hd95": math.nan, "pred_area": tp[i] + fp[i]})
        row.update({"true_area": tp[i] + fn[i], "pred_ptx": tp[i] + fp[i] > 0})
        row.update({"true_ptx": tp[i] + fn[i] > 0, "tp": tp[i], "fp": fp[i], "fn": fn[i]})
        row["tn"] = tn[i]
        rows.append(
            {k: nan_as if isinstance(v, float) and math.isnan(v) else v for k, v in row.items()}
        )
    if shuffle:  # the CSV order is not the pairing: ids are
        rows = rows[::-1]
    with open(run_dir / "per_image.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    if preds is not None:
        ids = [IDS[i] for i in preds]
        true = np.zeros((len(ids), 16, 16), np.uint8)
        true[:, 4:9, 3:8] = 1
        pred = np.roll(true, seed + 1, axis=1)
        image = np.full((len(ids), 16, 16), 90, np.uint8)
        np.savez(run_dir / "predictions.npz", ids=np.array(ids), image=image, true=true, pred=pred)


def write_sweep(tmp_path):
    """Sweep YAML and runs: ref and other finished (2 seeds), gone missing, broken failed.
    Returns (sweep file, runs root)."""
    sweep_file = tmp_path / "two-methods.yaml"
    sweep_file.write_text(yaml.safe_dump(SWEEP, sort_keys=False))
    group = tmp_path / "runs" / "two-methods"
    for seed in (0, 1):
        write_run(group / f"ref-s{seed}", "ref", seed, preds=[0, 1, 2, 3])
        write_run(
            group / f"other-s{seed}",
            "other",
            seed,
            nan_as="",
            shuffle=seed == 1,
            preds=[1, 2, 3, 4],
        )
    write_run(group / "broken-s0", "broken", 0, status="failed")
    write_run(group / "broken-s1", "broken", 1, status="running")
    return sweep_file, tmp_path / "runs"


def read_csv_rows(path):
    with open(path, newline="") as fh:
        return {row["cell"]: row for row in csv.DictReader(fh)}
