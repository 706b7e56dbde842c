"""``ptx tune-postprocessing RUN``: the SIIM-ACR triplet chosen on a trained run's validation
split, stored in ``RUN/postprocessing.json`` and applied by predict, export and test."""

from __future__ import annotations

import json
import shutil

import pytest

from experiments.cli import main as ptx
from lightning_modules import records
from lightning_modules.bundle import export_bundle
from lightning_modules.diagnosis import DiagnosisRule
from lightning_modules.inference import Predictor
from lightning_modules.postprocessing import THRESHOLDS, candidate_min_areas


@pytest.fixture(scope="module")
def tuned(ct_run, tmp_path_factory):
    """A copy of the trained test run (the session's own stays untouched), tuned once."""
    run = tmp_path_factory.mktemp("tuned") / ct_run.name
    shutil.copytree(ct_run, run)
    own = (run / records.METRICS).read_bytes()
    assert ptx(["tune-postprocessing", str(run)]) == 0
    return run, own


def test_the_triplet_is_chosen_on_the_runs_validation_split(tuned):
    run, own = tuned
    stored = json.loads((run / records.POSTPROCESSING).read_text())
    rule = stored["diagnosis"]
    assert rule["rule"] == "tuned" and rule["tuned_on"] == "val"
    assert rule["top_threshold"] in THRESHOLDS and rule["pixel_threshold"] in THRESHOLDS
    image_size = records.read_config(run)["data"]["init_args"]["image_size"]
    assert rule["min_area"] in candidate_min_areas((image_size, image_size))
    assert stored["checkpoint"] == "best.ckpt"
    # the very validation patients of the fit, not a new draw
    fit_split = json.loads((run / records.SPLIT).read_text())
    tuning_split = json.loads((run / "tuning" / records.SPLIT).read_text())
    assert tuning_split["val"] == fit_split["val"] and len(fit_split["val"]) > 0
    # (0.5, 0 px, 0.5) is the argmax mask: the search can only match or beat the run's own
    # all-image validation Dice of the same checkpoint
    fit_val = records.read_metrics(run / records.METRICS)["val"]
    assert rule["objective"] >= fit_val["dice_kaggle"] - 1e-9
    assert stored["val"]["n_images"] == fit_val["n_images"]
    assert (run / records.METRICS).read_bytes() == own  # the run's own record is unchanged


def test_predict_export_and_test_apply_the_stored_triplet(tuned, tmp_path):
    run, _ = tuned
    stored = records.read_postprocessing(run)
    assert Predictor.load(run).rule == DiagnosisRule.from_dict(stored)
    config = export_bundle(run, tmp_path / "bundle", onnx=False)
    assert config["diagnosis"] == stored
    out = tmp_path / "external"
    assert ptx(["test", "--model", str(run), "--out", str(out)]) == 0
    assert records.read_metrics(out / records.METRICS)["diagnosis"] == stored


def test_a_folder_without_a_run_is_refused_in_one_line(tmp_path, capsys):
    assert ptx(["tune-postprocessing", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "no checkpoint there" in err and str(tmp_path) in err


def test_a_malformed_postprocessing_file_names_itself(tmp_path):
    (tmp_path / records.POSTPROCESSING).write_text('{"checkpoint": "best.ckpt"}')
    with pytest.raises(records.RecordError, match="postprocessing.json: holds no 'diagnosis'"):
        records.read_postprocessing(tmp_path)
    assert records.read_postprocessing(tmp_path / "elsewhere") is None
