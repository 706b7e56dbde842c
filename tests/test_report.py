"""`ptx report`: a sweep's table, figures and files, rebuilt from hand-written run records.

The records are written as the runner leaves them (docs/design.md, "Run records"): metrics
from the project's own formulas on hand-picked confusion counts, so every expected number
below is worked out by hand. Six test images of three patients (two each) on a 10 x 10 grid;
images 2 and 5 are negative.
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

from ablations.records import RecordError, load_sweep_runs, read_per_image
from ablations.report import cli, write_report
from ablations.sweeps import load_sweep
from experiments.cli import main as ptx
from lightning_modules.metric_functions import image_metrics

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
SWEEP = {
    "title": "Test table: two methods",
    "paper": "efa-net",
    "reference": "ref",
    "columns": [
        {"key": "dice", "label": "Dice (%)", "scale": 100},
        {"key": "sen", "label": "SE (%)", "scale": 100},
        {"key": "dice_pos", "label": "Dice pos (%)", "scale": 100, "source": "set"},
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
    metrics.update({"params": 430000 if cell == "ref" else 24430242, "gmacs": 1.5})
    metrics["history"] = history
    if status == "failed":
        metrics["error"] = "RuntimeError: out of memory on pBBB-z1 of patient pBBB\ntraceback"
    else:
        metrics["test"] = {"dice_pos": {("ref", 0): 0.75, ("ref", 1): 0.77}.get((cell, seed), 0.4)}
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
    folder = write_report(str(sweep_file), runs, tmp_path / "results", wandb=False)
    assert folder == tmp_path / "results" / "two-methods"
    rows = read_csv_rows(folder / "table.csv")
    assert list(rows) == ["ref", "other", "gone", "broken"]  # every cell, in the sweep's order
    ref, other = rows["ref"], rows["other"]
    assert float(ref["dice"]) == pytest.approx(100 * sum(REF_DICE) / 6)  # 84.1667
    assert float(other["dice"]) == pytest.approx(100 * 2.9 / 6)  # 48.3333
    assert float(other["dice_sd"]) == pytest.approx(100 * statistics.stdev(OTHER_DICE))
    # seed means of other: 2.7 / 6 and 3.1 / 6 -> sd |0.45 - 0.51667| / sqrt(2)
    assert float(other["dice_seed_sd"]) == pytest.approx(100 * (0.4 / 6) / math.sqrt(2))
    # sen: positives only (images 0, 1, 3, 4); other s0 1/2 3/5 2/5 1/5, s1 7/10 2/5 3/5 2/5
    sen = [(0.5 + 0.7) / 2, (0.6 + 0.4) / 2, (0.4 + 0.6) / 2, (0.2 + 0.4) / 2]
    assert float(other["sen"]) == pytest.approx(100 * np.mean(sen))
    assert int(other["sen_n"]) == 4
    # paired tests on the seed-averaged per-image values, against the reference row
    expected = sps.ttest_rel(OTHER_DICE, REF_DICE)
    assert float(other["dice_p_t"]) == pytest.approx(expected.pvalue, rel=1e-9)
    diff = np.subtract(OTHER_DICE, REF_DICE)
    wilcoxon = sps.wilcoxon(diff, zero_method="wilcox").pvalue
    assert float(other["dice_p_wilcoxon"]) == pytest.approx(wilcoxon, rel=1e-9)
    assert int(other["dice_n_pairs"]) == 6
    assert float(other["dice_diff"]) == pytest.approx(100 * diff.mean())
    assert other["dice_sig"] == ("*" if expected.pvalue < 0.05 else "")
    assert ref["dice_p_t"] == "" and ref["dice_sig"] == ""  # the reference is not tested
    low, high = float(other["dice_ci_low"]), float(other["dice_ci_high"])
    assert 0 <= low < float(other["dice"]) < high <= 100
    # set and run columns: mean over seeds, scaled
    assert float(ref["dice_pos"]) == pytest.approx(76.0)
    assert float(ref["dice_pos_seed_sd"]) == pytest.approx(100 * 0.02 / math.sqrt(2))
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
    folder = write_report(str(sweep_file), runs, tmp_path / "out", wandb=False)
    markdown = (folder / "table.md").read_text()
    assert markdown.startswith("# Test table: two methods")
    lines = {line.split("|")[1].strip(): line for line in markdown.splitlines() if "|" in line}
    assert "| not run |" in lines["Never ran"]
    assert "| failed |" in lines["Crashed net"]
    assert "84.17 (" in lines["Reference net (ref.)"] and "90.03" in lines["Reference net (ref.)"]
    assert "48.33 (" in lines["Other net"] and "±4.71*" in lines["Other net"]
    assert "Profile quick" in markdown and "phantom" in markdown
    assert "paired t-test" in markdown and "two independent samples" in markdown
    assert "out of memory" in markdown  # the failed run's error, scrubbed of ids
    assert "showing the 3 common" in markdown  # overlay ids differ between the two methods
    text = (folder / "table.json").read_text() + (folder / "table.csv").read_text()
    for secret in [*IDS, *PATIENTS]:
        assert secret not in markdown and secret not in text
    payload = json.loads((folder / "table.json").read_text())
    assert payload["sweep"]["reference"] == "ref" and payload["runs"]["seeds"] == [0, 1]
    assert [row["cell"] for row in payload["rows"]] == ["ref", "other", "gone", "broken"]
    assert payload["rows"][2]["dice"] is None
    assert payload["rows"][1]["dice"] == pytest.approx(100 * 2.9 / 6)


def test_figures_are_valid_pngs(sweep_runs, tmp_path):
    sweep_file, runs = sweep_runs
    folder = write_report(str(sweep_file), runs, tmp_path / "out", wandb=False)
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
    folder = write_report(str(sweep_file), runs, tmp_path / "out", wandb=False)
    row = read_csv_rows(folder / "table.csv")["other"]
    assert row["runs"] == "s0; s1 malformed" and row["seeds"] == "0"
    # one seed left: the per-image values are seed 0's (0.5 0.6 1 0.4 0.2 0)
    assert float(row["dice"]) == pytest.approx(100 * 2.7 / 6)
    assert "per_image.csv, line 4" in (folder / "table.md").read_text()


def test_wandb_summary_run_offline(sweep_runs, tmp_path, monkeypatch):
    sweep_file, runs = sweep_runs
    monkeypatch.setenv("WANDB_MODE", "offline")  # what a machine without a key gets
    folder = write_report(str(sweep_file), runs, tmp_path / "out")
    (run_dir,) = (folder / "wandb").glob("offline-run-*")
    media = run_dir / "files" / "media"
    logged = sorted(p.name.split("_0_")[0] for p in (media / "images").glob("*.png"))
    assert logged == ["dice_histogram", "overlays", "training_curves"]
    (table_file,) = (media / "table").glob("table_*.table.json")
    table = json.loads(table_file.read_text())
    cell = table["columns"].index("cell")
    assert [row[cell] for row in table["data"]] == ["ref", "other", "gone", "broken"]
    assert table["data"][1][table["columns"].index("dice")] == pytest.approx(100 * 2.9 / 6)
    assert "W&B" not in (folder / "table.md").read_text()


def test_wandb_failure_never_fails_the_report(sweep_runs, tmp_path, monkeypatch, capsys):
    sweep_file, runs = sweep_runs
    monkeypatch.setenv("WANDB_MODE", "no-such-mode")  # wandb.init refuses it
    rc = cli([str(sweep_file), "--runs-dir", str(runs), "--out", str(tmp_path / "out")])
    assert rc == 0
    markdown = (tmp_path / "out" / "two-methods" / "table.md").read_text()
    assert "W&B summary run failed" in markdown
    assert (tmp_path / "out" / "two-methods" / "table.csv").is_file()
