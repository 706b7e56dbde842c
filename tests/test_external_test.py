"""``ptx test --model RUN --data DIR --split all``: a trained run scored on another folder."""

from __future__ import annotations

import csv
import json

import pytest

from datamodules.phantom.ct import generate_ct_phantom
from experiments.cli import main as ptx
from lightning_modules import records


@pytest.fixture(scope="module")
def trained(ct_run, tmp_path_factory):
    external = tmp_path_factory.mktemp("external")
    generate_ct_phantom(external, patients=3, seed=11, size=80, slices=10)
    return ct_run, external


def test_every_case_of_an_external_folder_is_scored_and_the_run_is_untouched(trained, tmp_path):
    run, external = trained
    own = (run / records.METRICS).read_bytes()
    out = tmp_path / "hospital-b"
    argv = ["test", "--model", str(run), "--data", str(external), "--split", "all"]
    assert ptx([*argv, "--out", str(out)]) == 0
    record = records.read_metrics(out / records.METRICS)
    assert record["status"] == records.FINISHED and record["test_checkpoint"] == "best.ckpt"
    test = record["test"]
    assert test["n_patients"] == 3 and test["n_images"] == 30  # every slice of every case
    split = json.loads((out / records.SPLIT).read_text())
    assert len(split["test"]) == 3 and split["train"] == split["val"] == []
    with open(out / records.PER_IMAGE, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 30 and sum(r["true_ptx"] == "True" for r in rows) == test["n_positive"]
    assert record["diagnosis"] == records.read_metrics(run / records.METRICS)["diagnosis"]
    assert (run / records.METRICS).read_bytes() == own  # the trained run's record is its own


def test_the_default_record_folder_is_named_by_a_hash_and_the_test_split_works(trained):
    run, external = trained
    assert ptx(["test", "--model", str(run), "--data", str(external)]) == 0
    (folder,) = (run / "external").iterdir()
    assert folder.name.startswith("test-") and len(folder.name) == len("test-") + 12
    record = records.read_metrics(folder / records.METRICS)
    assert 0 < record["test"]["n_patients"] < 3  # the external folder's own test subset


def test_model_with_exp_or_a_missing_folder_is_refused_in_one_line(trained, capsys, tmp_path):
    run, _ = trained
    assert ptx(["test", "--model", str(run), "--exp", "ct/unet"]) == 2
    assert "drop --exp" in capsys.readouterr().err
    assert ptx(["test", "--model", str(run), "--data", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "nowhere: no such data folder" in err
