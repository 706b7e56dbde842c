"""`ptx report`: a sweep's table, figures and files, rebuilt from hand-written run records.

The records are written as the runner leaves them (docs/design.md, "Run records"): metrics
from the project's own formulas on hand-picked confusion counts, so every expected number
below is worked out by hand. Six test images of three patients (two each) on a 10 x 10 grid;
images 2 and 5 are negative, so the headline (positive-image) columns average images 0, 1,
3 and 4.
"""

from __future__ import annotations

import csv
import json
import math
import statistics

import numpy as np
import pytest
import yaml
from matplotlib.image import imread
from scipy import stats as sps

from ablations.records import load_sweep_runs
from ablations.report import cli, write_report
from ablations.sweeps import load_sweep
from experiments.cli import main as ptx
from lightning_modules.metric_functions import image_metrics
from lightning_modules.records import RecordError, read_per_image

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
    metrics["record_version"] = 2
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


@pytest.fixture
def sweep_runs(tmp_path):
    """Sweep YAML and runs: ref and other finished (2 seeds), gone missing, broken failed."""
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


def test_table_numbers_equal_hand_computed_values(sweep_runs, tmp_path):
    sweep_file, runs = sweep_runs
    folder = write_report(str(sweep_file), runs, tmp_path / "results", wandb=False).folder
    assert folder == tmp_path / "results" / "two-methods"
    rows = read_csv_rows(folder / "table.csv")
    assert list(rows) == ["ref", "other", "gone", "broken"]  # every cell, in the sweep's order
    ref, other = rows["ref"], rows["other"]
    # Dice over the four test images with pneumothorax (images 2 and 5 have none)
    assert float(ref["dice"]) == pytest.approx(100 * 3.05 / 4)  # 76.25
    assert float(other["dice"]) == pytest.approx(100 * 1.9 / 4)  # 47.5
    assert int(ref["dice_n"]) == int(other["dice_n"]) == 4
    assert float(other["dice_sd"]) == pytest.approx(100 * statistics.stdev(OTHER_POS))
    # seed means of other over the positives: 1.7 / 4 and 2.1 / 4 -> sd 0.1 / sqrt(2)
    assert float(other["dice_seed_sd"]) == pytest.approx(100 * 0.1 / math.sqrt(2))
    # accuracy over all six images: (tp + tn) / 100 per image, seeds averaged
    acc = [
        np.mean([1 - (fp + fn) / 100 for _, fp, fn in (COUNTS[("other", s)][i] for s in (0, 1))])
        for i in range(6)
    ]
    assert float(other["acc"]) == pytest.approx(100 * np.mean(acc))
    assert int(other["acc_n"]) == 6
    # sen: positives only (images 0, 1, 3, 4); other s0 1/2 3/5 2/5 1/5, s1 7/10 2/5 3/5 2/5
    sen = [(0.5 + 0.7) / 2, (0.6 + 0.4) / 2, (0.4 + 0.6) / 2, (0.2 + 0.4) / 2]
    assert float(other["sen"]) == pytest.approx(100 * np.mean(sen))
    assert int(other["sen_n"]) == 4
    # paired tests on the seed-averaged per-image values of the same population (positives)
    expected = sps.ttest_rel(OTHER_POS, REF_POS)
    assert float(other["dice_p_t"]) == pytest.approx(expected.pvalue, rel=1e-9)
    diff = np.subtract(OTHER_POS, REF_POS)
    wilcoxon = sps.wilcoxon(diff, zero_method="wilcox").pvalue
    assert float(other["dice_p_wilcoxon"]) == pytest.approx(wilcoxon, rel=1e-9)
    assert int(other["dice_n_pairs"]) == 4
    assert float(other["dice_diff"]) == pytest.approx(100 * diff.mean())
    assert expected.pvalue < 0.05 and other["dice_sig"] == "worse"  # direction, not just *
    independent = sps.ttest_ind(OTHER_POS, REF_POS, equal_var=True).pvalue  # the papers' test
    assert float(other["dice_p_t_ind"]) == pytest.approx(independent, rel=1e-9)
    assert ref["dice_p_t"] == "" and ref["dice_sig"] == ""  # the reference is not tested
    # 3-D Dice per patient from the summed counts (all three patients have pneumothorax),
    # averaged over the seeds patient by patient: ref A (26/30, 16/20), B (14/20, 18/20),
    # C (6/10, 6/10)
    ref_3d = [(26 / 30 + 16 / 20) / 2, (14 / 20 + 18 / 20) / 2, 0.6]
    assert float(ref["dice_volume"]) == pytest.approx(100 * np.mean(ref_3d))
    assert int(ref["dice_volume_n"]) == 3
    other_3d = [(8 / 14 + 18 / 30) / 2, (4 / 10 + 6 / 10) / 2, (2 / 15 + 4 / 15) / 2]
    assert float(other["dice_volume"]) == pytest.approx(100 * np.mean(other_3d))
    p_3d = sps.ttest_rel(other_3d, ref_3d).pvalue
    assert float(other["dice_volume_p_t"]) == pytest.approx(p_3d, rel=1e-9)
    low, high = float(other["dice_ci_low"]), float(other["dice_ci_high"])
    assert 0 <= low < float(other["dice"]) < high <= 100
    # set and run columns: mean over seeds, scaled
    assert float(ref["dice_kaggle"]) == pytest.approx(76.0)
    assert float(ref["dice_kaggle_seed_sd"]) == pytest.approx(100 * 0.02 / math.sqrt(2))
    assert (ref["predicts_nothing"], float(ref["pred_empty"])) == ("False", pytest.approx(2 / 6))
    assert float(ref["params"]) == pytest.approx(0.43)
    # the paper's numbers beside ours
    assert float(ref["dice_paper"]) == 90.03 and float(other["dice_paper"]) == 83.46
    assert float(rows["broken"]["params_paper"]) == 23.15 and ref["params_paper"] == ""
    # statuses
    assert (rows["gone"]["status"], rows["gone"]["runs"]) == ("not run", "not run")
    assert rows["broken"]["status"] == "failed" and rows["broken"]["dice"] == ""
    assert (ref["status"], ref["seeds"]) == ("finished", "0 1")


def test_markdown_json_and_privacy(sweep_runs, tmp_path):
    sweep_file, runs = sweep_runs
    folder = write_report(str(sweep_file), runs, tmp_path / "out", wandb=False).folder
    markdown = (folder / "table.md").read_text()
    assert markdown.startswith("# Test table: two methods")
    lines = {line.split("|")[1].strip(): line for line in markdown.splitlines() if "|" in line}
    assert "| not run |" in lines["Never ran"]
    assert "| failed |" in lines["Crashed net"]
    assert "76.25 (" in lines["Reference net (ref.)"] and "90.03" in lines["Reference net (ref.)"]
    assert "47.50 (" in lines["Other net"] and "±7.07▼" in lines["Other net"]
    assert "Profile quick" in markdown and "phantom" in markdown
    assert "paired t-test" in markdown and "two independent samples" in markdown
    # every column's population is named with its size
    assert "the 4 test slices with pneumothorax (3 patients" in markdown
    assert "all 6 test slices (3 patients)" in markdown
    assert "3 test patients with pneumothorax" in markdown
    assert "never a headline" in markdown
    assert "out of memory" in markdown  # the failed run's error, scrubbed of ids
    assert "showing the 3 common" in markdown  # overlay ids differ between the two methods
    text = (folder / "table.json").read_text() + (folder / "table.csv").read_text()
    for secret in [*IDS, *PATIENTS]:
        assert secret not in markdown and secret not in text
    payload = json.loads((folder / "table.json").read_text())
    assert payload["sweep"]["reference"] == "ref" and payload["runs"]["seeds"] == [0, 1]
    assert [row["cell"] for row in payload["rows"]] == ["ref", "other", "gone", "broken"]
    assert payload["rows"][2]["dice"] is None
    assert payload["rows"][1]["dice"] == pytest.approx(100 * 1.9 / 4)
    assert payload["test_set"]["positive"] == {"images": 4, "patients": 3}


def test_figures_are_valid_pngs(sweep_runs, tmp_path):
    sweep_file, runs = sweep_runs
    folder = write_report(str(sweep_file), runs, tmp_path / "out", wandb=False).folder
    for name in ("dice_histogram", "overlays", "training_curves"):
        path = folder / f"{name}.png"
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        pixels = imread(path)
        assert pixels.ndim == 3 and min(pixels.shape[:2]) > 200
        assert pixels.std() > 0.01  # something is drawn


def test_cli_exit_codes_and_stdout(sweep_runs, tmp_path, capsys, monkeypatch):
    sweep_file, runs = sweep_runs
    out = tmp_path / "res"
    rc = ptx(["report", str(sweep_file), "--runs-dir", str(runs), "--out", str(out), "--no-wandb"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "| Other net |" in printed and str(out / "two-methods") in printed
    assert (out / "two-methods" / "table.csv").is_file()
    # --group reads another folder: nothing finished there -> rc 1, table of "not run" rows
    rc = cli([str(sweep_file), "--runs-dir", str(runs), "--out", str(out), "--group", "elsewhere"])
    assert rc == 1
    captured = capsys.readouterr()
    assert "no finished run" in captured.err and "elsewhere" in captured.err
    assert read_csv_rows(out / "elsewhere" / "table.csv")["ref"]["status"] == "not run"
    assert cli(["no-such-sweep", "--no-wandb"]) == 2
    assert "unknown sweep" in capsys.readouterr().err


def test_malformed_record_names_the_file_and_keeps_the_row(sweep_runs, tmp_path):
    sweep_file, runs = sweep_runs
    bad = runs / "two-methods" / "other-s1" / "per_image.csv"
    text = bad.read_text().splitlines()
    text[3] = text[3].replace("True", "maybe", 1)
    bad.write_text("\n".join(text) + "\n")
    with pytest.raises(RecordError, match=r"other-s1/per_image\.csv, line 4: column \w+: 'maybe'"):
        read_per_image(bad)
    cells = load_sweep_runs(load_sweep(str(sweep_file)), runs)
    other = next(c for c in cells if c.cell.id == "other")
    assert [r.status for r in other.runs] == ["finished", "malformed"]
    assert other.status == "partial"
    folder = write_report(str(sweep_file), runs, tmp_path / "out", wandb=False).folder
    row = read_csv_rows(folder / "table.csv")["other"]
    assert row["runs"] == "s0; s1 malformed" and row["seeds"] == "0"
    # one seed left: the positive images' values are seed 0's (0.5 0.6 0.4 0.2)
    assert float(row["dice"]) == pytest.approx(100 * 1.7 / 4)
    assert "per_image.csv, line 4" in (folder / "table.md").read_text()


def test_wandb_summary_run_offline(sweep_runs, tmp_path, monkeypatch):
    sweep_file, runs = sweep_runs
    monkeypatch.setenv("WANDB_MODE", "offline")  # what a machine without a key gets
    folder = write_report(str(sweep_file), runs, tmp_path / "out").folder
    (run_dir,) = (folder / "wandb").glob("offline-run-*")
    media = run_dir / "files" / "media"
    logged = sorted(p.name.split("_0_")[0] for p in (media / "images").glob("*.png"))
    assert logged == ["dice_histogram", "overlays", "training_curves"]
    (table_file,) = (media / "table").glob("table_*.table.json")
    table = json.loads(table_file.read_text())
    cell = table["columns"].index("cell")
    assert [row[cell] for row in table["data"]] == ["ref", "other", "gone", "broken"]
    assert table["data"][1][table["columns"].index("dice")] == pytest.approx(100 * 1.9 / 4)
    assert "W&B" not in (folder / "table.md").read_text()


def test_wandb_failure_never_fails_the_report(sweep_runs, tmp_path, monkeypatch, capsys):
    sweep_file, runs = sweep_runs
    monkeypatch.setenv("WANDB_MODE", "no-such-mode")  # wandb.init refuses it
    rc = cli([str(sweep_file), "--runs-dir", str(runs), "--out", str(tmp_path / "out")])
    assert rc == 0
    markdown = (tmp_path / "out" / "two-methods" / "table.md").read_text()
    assert "W&B summary run failed" in markdown
    assert (tmp_path / "out" / "two-methods" / "table.csv").is_file()


def test_a_network_that_predicts_nothing_scores_zero_ranks_last_and_is_never_better(
    tmp_path, monkeypatch
):
    """Regression: the per-image mean with empty/empty = 1 once put an all-background network
    on top of the encoder table. On the headline population it scores 0 and ranks last; its
    accuracy beats a noisy reference (few PTX pixels to miss), yet it is never marked better."""
    true_area = [tp + fn for tp, _, fn in COUNTS[("ref", 0)]]
    monkeypatch.setitem(COUNTS, ("empty", 0), [(0, 0, t) for t in true_area])  # nothing
    monkeypatch.setitem(COUNTS, ("noisy", 0), [(t, 30, 0) for t in true_area])  # + 30 FP px
    sweep = {
        "title": "predicts nothing",
        "paper": "efa-net",
        "reference": "noisy",
        "columns": [
            {"key": "dice", "label": "Dice (%)", "scale": 100},
            {"key": "acc", "label": "Accuracy (%)", "scale": 100},
        ],
        "cells": [
            {"id": c, "label": c.title(), "exp": "ct/unet"} for c in ("ref", "empty", "noisy")
        ],
    }
    sweep_file = tmp_path / "empty.yaml"
    sweep_file.write_text(yaml.safe_dump(sweep, sort_keys=False))
    for cell in ("ref", "empty", "noisy"):
        write_run(tmp_path / "runs" / "empty" / f"{cell}-s0", cell, 0)
    folder = write_report(str(sweep_file), tmp_path / "runs", tmp_path / "out", wandb=False).folder
    rows = read_csv_rows(folder / "table.csv")
    ranking = sorted(rows, key=lambda c: -float(rows[c]["dice"]))
    assert ranking[-1] == "empty" and float(rows["empty"]["dice"]) == 0.0
    assert rows["empty"]["predicts_nothing"] == "True" and float(rows["empty"]["pred_empty"]) == 1
    assert rows["empty"]["dice_sig"] == "worse" and rows["ref"]["dice_sig"] == "better"
    # more accurate than the noisy reference on every image, but not "better"
    assert float(rows["empty"]["acc_diff"]) > 0 and float(rows["empty"]["acc_p_t"]) < 0.05
    assert rows["empty"]["acc_sig"] == ""
    markdown = (folder / "table.md").read_text()
    assert "Empty (predicts nothing)" in markdown and "predicted no pneumothorax" in markdown
