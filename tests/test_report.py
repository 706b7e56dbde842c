"""`ptx report`: a sweep's table, figures and files, rebuilt from hand-written run records.

The records are written as the runner leaves them (docs/design.md, "Run records"): metrics
from the project's own formulas on hand-picked confusion counts, so every expected number
below is worked out by hand. Six test images of three patients (two each) on a 10 x 10 grid;
images 2 and 5 are negative, so the headline (positive-image) columns average images 0, 1,
3 and 4.
"""

from __future__ import annotations

import json
import math
import statistics

import numpy as np
import pytest
import yaml
from matplotlib.image import imread
from report_fixtures import (
    COUNTS,
    IDS,
    OTHER_POS,
    PATIENTS,
    REF_POS,
    read_csv_rows,
    write_run,
    write_sweep,
)
from scipy import stats as sps

from ablations.records import load_sweep_runs
from ablations.report import cli, write_report
from ablations.sweeps import load_sweep
from experiments.cli import main as ptx
from lightning_modules.records import RecordError, read_metrics, read_per_image


@pytest.fixture
def sweep_runs(tmp_path):
    """Sweep YAML and runs: ref and other finished (2 seeds), gone missing, broken failed."""
    return write_sweep(tmp_path)


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


def test_diagnosis_columns_name_the_group_each_statistic_is_over(sweep_runs, tmp_path):
    sweep_file, runs = sweep_runs
    sweep = yaml.safe_load(sweep_file.read_text())
    sweep["columns"] += [
        {"key": "diag_spec", "label": "Non-PTX specificity", "source": "set"},
        {"key": "diag_sen", "label": "PTX sensitivity", "source": "set"},
    ]
    sweep_file.write_text(yaml.safe_dump(sweep, sort_keys=False))
    folder = write_report(str(sweep_file), runs, tmp_path / "out", wandb=False).folder
    markdown = (folder / "table.md").read_text()
    # images 2 and 5 (patients pBBB, pCCC) are the negatives; 0, 1, 3, 4 the positives
    specificity = (
        "share of the 2 test slices without pneumothorax (2 patients) that the diagnosis rule "
        "calls negative (image-level specificity)"
    )
    sensitivity = (
        "share of the 4 test slices with pneumothorax (3 patients) that the diagnosis rule "
        "calls pneumothorax"
    )
    assert specificity in markdown and sensitivity in markdown
    assert "image-level diagnosis over all 6" not in markdown


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


def test_a_data_error_reaches_the_report_as_its_kind_only(sweep_runs, tmp_path):
    """A data error names the file to fix: a folder such as an MRN, a stem such as a UID."""
    sweep_file, runs = sweep_runs
    metrics = next(runs.rglob("broken-s0/metrics.json"))
    record = json.loads(metrics.read_text())
    record["error"] = "DataError: /data/MRN0042/1.2.840.99.7.dcm: pixel data is truncated"
    metrics.write_text(json.dumps(record))
    folder = write_report(str(sweep_file), runs, tmp_path / "out", wandb=False).folder
    markdown = (folder / "table.md").read_text()
    assert "Crashed net s0 failed: DataError (bad input data" in markdown
    assert "MRN0042" not in markdown and "1.2.840.99.7" not in markdown


def test_a_finished_record_of_an_older_version_is_refused_saying_why(sweep_runs):
    _, runs = sweep_runs
    path = next(runs.rglob("metrics.json"))
    record = json.loads(path.read_text())
    for version, why in ((2, "recorded radiograph ids as their file stems"), (1, "averaged Dice")):
        path.write_text(json.dumps({**record, "record_version": version, "modality": "xray"}))
        with pytest.raises(
            RecordError, match=rf"record version {version} {why}.*\(this ptx-seg: 3"
        ):
            read_metrics(path)
    # version 2 differs from 3 only in radiograph ids: a CT record of version 2 is read
    path.write_text(json.dumps({**record, "record_version": 2, "modality": "ct"}))
    assert read_metrics(path)["record_version"] == 2


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
    # nothing on the pneumothoraces, a stray pixel on each image without one
    stray = [(0, 0 if t else 1, t) for t in true_area]
    monkeypatch.setitem(COUNTS, ("stray", 0), stray)
    sweep = {
        "title": "predicts nothing",
        "paper": "efa-net",
        "reference": "noisy",
        "columns": [
            {"key": "dice", "label": "Dice (%)", "scale": 100},
            {"key": "acc", "label": "Accuracy (%)", "scale": 100},
        ],
        "cells": [
            {"id": c, "label": c.title(), "exp": "ct/unet"}
            for c in ("ref", "empty", "noisy", "stray")
        ],
    }
    sweep_file = tmp_path / "empty.yaml"
    sweep_file.write_text(yaml.safe_dump(sweep, sort_keys=False))
    for cell in ("ref", "empty", "noisy", "stray"):
        write_run(tmp_path / "runs" / "empty" / f"{cell}-s0", cell, 0)
    folder = write_report(str(sweep_file), tmp_path / "runs", tmp_path / "out", wandb=False).folder
    rows = read_csv_rows(folder / "table.csv")
    ranking = sorted(rows, key=lambda c: -float(rows[c]["dice"]))
    assert set(ranking[-2:]) == {"empty", "stray"} and float(rows["empty"]["dice"]) == 0.0
    assert rows["empty"]["predicts_nothing"] == "True" and float(rows["empty"]["pred_empty"]) == 1
    assert rows["empty"]["dice_sig"] == "worse" and rows["ref"]["dice_sig"] == "better"
    # more accurate than the noisy reference on every image, but not "better"
    assert float(rows["empty"]["acc_diff"]) > 0 and float(rows["empty"]["acc_p_t"]) < 0.05
    assert rows["empty"]["acc_sig"] == ""
    markdown = (folder / "table.md").read_text()
    assert "Empty (predicts nothing)" in markdown and "predicted no pneumothorax" in markdown
    # masks that never touch a pneumothorax: not empty, yet it segments nothing either
    assert (rows["stray"]["predicts_nothing"], rows["stray"]["segments_nothing"]) == (
        "False",
        "True",
    )
    assert float(rows["stray"]["dice"]) == 0.0 and rows["stray"]["dice_sig"] == "worse"
    assert float(rows["stray"]["acc_diff"]) > 0 and float(rows["stray"]["acc_p_t"]) < 0.05
    assert rows["stray"]["acc_sig"] == ""
    assert (
        rows["noisy"]["segments_nothing"] == "False" and rows["ref"]["segments_nothing"] == "False"
    )
    assert "Stray (segments nothing)" in markdown and "found no pneumothorax pixel" in markdown
