"""A sweep reuses a finished run only when it is the run the cell asks for, and runs every
cell on every fold of a k-fold; the table pools the folds' test images."""

from __future__ import annotations

import csv
import json
import statistics

import numpy as np
import pytest
import yaml
from report_fixtures import COUNTS, IDS, SWEEP, write_run

from ablations.plan import DONE, START, plan, requested_config
from ablations.report import write_report
from ablations.runner import cli as sweep_cli
from ablations.sweeps import SweepError, load_sweep
from datamodules.layouts.privacy import id_fingerprint
from experiments.run_config import config_hash
from lightning_modules.metric_functions import RECORD_VERSION, image_metrics


def _finished_as(sweep, job, runs_root, extra):
    """Make ``job``'s folder a finished run of the config ``extra`` gives the cell."""
    config = requested_config(sweep, job, "quick", None, runs_root, None, extra)
    job.run_dir.mkdir(parents=True)
    (job.run_dir / "config.yaml").write_text(yaml.safe_dump(config))
    record = {"status": "finished", "experiment": job.cell.exp, "profile": "quick"}
    record["record_version"] = RECORD_VERSION
    record.update(config_hash=config_hash(config), id_fingerprint=id_fingerprint())
    (job.run_dir / "metrics.json").write_text(json.dumps(record))


def test_a_finished_run_with_other_settings_is_refused_not_reused(tmp_path):
    sweep = load_sweep("ablation-efa")
    only = ["unet-resnet34"]
    (job,) = plan(sweep, tmp_path, [0], "quick", None, only=only)
    _finished_as(sweep, job, tmp_path, ["--trainer.max_epochs", "3"])
    same = plan(sweep, tmp_path, [0], "quick", None, only=only, extra=["--trainer.max_epochs", "3"])
    assert same[0].action == DONE
    with pytest.raises(SweepError) as refused:
        plan(sweep, tmp_path, [0], "quick", None, only=only)
    message = str(refused.value)
    assert "trainer.max_epochs 3 (this sweep: 8)" in message and "--force" in message
    with pytest.raises(SweepError, match="data.init_args.batch_size 8 .this sweep: 4."):
        plan(
            sweep,
            tmp_path,
            [0],
            "quick",
            None,
            only=only,
            extra=["--trainer.max_epochs", "3", "--data.batch_size", "4"],
        )
    forced = plan(sweep, tmp_path, [0], "quick", None, force=True, only=only)
    assert forced[0].action == START


def test_kfold_sweep_plans_every_cell_on_every_fold(tmp_path, capsys):
    argv = ["ablation-encoders", "--folds", "5", "--dry-run", "--runs-dir", str(tmp_path)]
    assert sweep_cli([*argv, "--profile", "quick"]) == 0
    out = capsys.readouterr().out
    planned = [line.split()[1] for line in out.splitlines() if line.startswith("  start")]
    assert len(planned) == 50 and len(set(planned)) == 50
    assert "unet-resnet34-f0-s0" in planned and "unet-efficientnet-b5-f4-s0" in planned
    assert "50 runs (0 finished, 0 to resume, 50 to start)" in out
    assert "5-fold cross-validation" in out
    sweep = load_sweep("ablation-encoders")
    jobs = plan(sweep, tmp_path, [0], "quick", None, folds=5)
    args = requested_config(sweep, jobs[-1], "quick", None, tmp_path, None, [])
    assert (args["data"]["init_args"]["folds"], args["data"]["init_args"]["fold"]) == (5, 4)
    assert sweep_cli(["ablation-encoders", "--folds", "1", "--dry-run"]) == 2


def _only(run_dir, keep):
    """Keep the per-image rows of the images ``keep`` (a fold's test set)."""
    path = run_dir / "per_image.csv"
    with open(path, newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["id"] in keep]
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def test_kfold_table_pools_folds_and_gives_their_spread(tmp_path):
    spec = {**SWEEP, "cells": SWEEP["cells"][:2]}
    sweep_file = tmp_path / "two-methods.yaml"
    sweep_file.write_text(yaml.safe_dump(spec, sort_keys=False))
    runs = tmp_path / "runs"
    folds = [IDS[:4], IDS[4:]]  # patients AAA, BBB in fold 0; CCC in fold 1
    for cell in ("ref", "other"):
        for fold, keep in enumerate(folds):
            run_dir = runs / "two-methods" / f"{cell}-f{fold}-s0"
            write_run(run_dir, cell, 0)
            _only(run_dir, keep)
    write_report(str(sweep_file), runs_dir=runs, out_dir=tmp_path / "out")
    folder = tmp_path / "out" / "two-methods"
    with open(folder / "table.csv", newline="") as fh:
        rows = {r["cell"]: r for r in csv.DictReader(fh)}
    tp, fp, fn = (np.array(c) for c in zip(*COUNTS[("other", 0)], strict=True))
    dice = image_metrics(tp, fp, fn, 100 - tp - fp - fn)["dice"]
    positive = [0, 1, 3, 4]  # images 2 and 5 have no pneumothorax
    other = rows["other"]
    assert float(other["dice"]) == pytest.approx(100 * np.mean(dice[positive]))
    assert int(other["dice_n"]) == 4 and int(other["dice_n_pairs"]) == 4
    fold_means = [np.mean(dice[[0, 1, 3]]), dice[4]]
    assert float(other["dice_fold_sd"]) == pytest.approx(100 * statistics.stdev(fold_means))
    assert other["runs"] == "2 folds x s0" and other["folds"] == "2"
    markdown = (folder / "table.md").read_text()
    assert "2-fold cross-validation" in markdown and "same fold" in markdown
    summary = json.loads((folder / "table.json").read_text())
    assert summary["runs"]["folds"] == 2
    assert summary["test_set"]["positive"] == {"images": 4, "patients": 3}
