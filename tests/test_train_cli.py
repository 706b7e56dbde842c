"""End to end: `ptx fit` (which tests at the end) and `ptx test` on the phantom, quick profile.

The CT run logs to an offline W&B run (no API key) and is checked for every file of the run
record, the overlays and the per-image table; its test Dice must clearly beat what an empty
prediction scores on the same test images, computed with the same metric functions.
"""

from __future__ import annotations

import csv
import json
import os

import numpy as np
import pytest
import torch
import yaml

from experiments.train import fit_cli
from experiments.train import test_cli as ptx_test
from lightning_modules import SegmentationModule
from lightning_modules.metric_functions import image_metrics, set_metrics

CT = ["--exp", "ct/unet", "--profile", "quick"]
XRAY = ["--exp", "xray/vanilla_unet", "--profile", "quick"]
# The fast tests check the pipeline on a smaller phantom and a few batches; the quick
# profile's full runs (does it learn?) are in the slow set.
SHORT = [
    *("--data.phantom", "{patients: 8, size: 96, slices: 12}"),
    *("--trainer.max_epochs", "2", "--trainer.limit_train_batches", "3"),
]


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """One intra-op thread: these runs share 2 cores with other processes, where two OpenMP
    threads stall on each other (measured 6-10 s per U-Net step against 0.7 s with one)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _read_csv(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def empty_prediction_scores(rows) -> dict:
    """Set-level scores of an all-empty prediction on the test images of ``per_image.csv``."""
    true = np.array([int(r["true_area"]) for r in rows])
    pixels = np.array([sum(int(r[k]) for k in ("tp", "fp", "fn", "tn")) for r in rows])
    zero = np.zeros_like(true)
    values = image_metrics(zero, zero, true, pixels - true)
    nothing = np.zeros(len(rows), dtype=bool)
    return set_metrics(values, zero, zero, true, [r["patient"] for r in rows], nothing)


def assert_learned(test: dict, rows, margin: float) -> None:
    """Pooled Dice and the headline Dice (over the positive images) clearly above the empty
    prediction's, which is 0 on both. The all-image mean (``dice_kaggle``, SIIM convention)
    scores an empty prediction the share of negative images, so it is not asserted."""
    empty = empty_prediction_scores(rows)
    negatives = np.mean([int(r["true_area"]) == 0 for r in rows])
    assert empty["dice_kaggle"] == pytest.approx(negatives)
    assert empty["dice_global"] == 0 and empty["dice"] == 0
    assert test["dice_global"] > empty["dice_global"] + margin, test["dice_global"]
    assert test["dice"] > empty["dice"] + margin, test["dice"]


@pytest.fixture(scope="module")
def ct_run(tmp_path_factory):
    """One quick CT fit, logging to W&B offline without any API key."""
    runs = tmp_path_factory.mktemp("runs")
    home = tmp_path_factory.mktemp("home")  # no ~/.netrc there: no key
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WANDB_MODE", "offline")
        mp.setenv("HOME", str(home))
        mp.delenv("WANDB_API_KEY", raising=False)
        assert fit_cli([*CT, *SHORT, "--runs-dir", str(runs)]) == 0
    return runs / "ct" / "unet-resnet34-ce-s0"


def test_fit_writes_the_complete_run_record(ct_run):
    for name in ("config.yaml", "split.json", "metrics.json", "per_image.csv"):
        assert (ct_run / name).is_file(), name
    for name in ("best.ckpt", "last.ckpt"):
        assert (ct_run / "checkpoints" / name).is_file(), name
    record = json.loads((ct_run / "metrics.json").read_text())
    assert record["status"] == "finished"
    assert (record["name"], record["group"], record["experiment"]) == (
        "unet-resnet34-ce-s0",
        "ct",
        "ct/unet",
    )
    assert (record["model"], record["encoder"], record["loss"], record["seed"]) == (
        "unet",
        "resnet34",
        "ce",
        0,
    )
    assert record["params"] == 24_430_242
    assert record["gmacs"] == pytest.approx(7.76, rel=0.05)  # EFA paper Table 6
    assert record["device"] == "cpu x1" and record["wall_time_s"] > 0
    assert record["torch_threads"] == 1  # this module's fixture
    config = yaml.safe_load((ct_run / "config.yaml").read_text())
    assert record["epochs"] == config["trainer"]["max_epochs"]
    assert config["model"]["net"] == "unet" and config["run"]["name"] == record["name"]
    assert record["val_checkpoint"] == record["test_checkpoint"] == "best.ckpt"
    rows = _read_csv(ct_run / "per_image.csv")
    test = record["test"]
    assert len(rows) == test["n_images"] and test["n_positive"] > 0
    assert {"id", "patient", "dice", "hd95", "pred_area", "true_area", "pred_ptx"} <= set(rows[0])
    # the headline Dice is the mean over the test slices with pneumothorax; all: Kaggle's
    positive = [float(r["dice"]) for r in rows if float(r["true_area"]) > 0]
    assert np.mean(positive) == pytest.approx(test["dice"]) and len(positive) == test["n_positive"]
    assert np.mean([float(r["dice"]) for r in rows]) == pytest.approx(test["dice_kaggle"])
    assert record["record_version"] == 3
    assert record["diagnosis"]["rule"] == "paper" and record["diagnosis"]["min_area"] == 50
    split = json.loads((ct_run / "split.json").read_text())
    assert {r["patient"] for r in rows} == set(split["test"])
    assert {"dice", "dsc1", "dice_kaggle", "dice_volume", "empty_fp_rate"} <= set(record["val"])
    # one history row per epoch: that epoch's mean training loss and validation metrics
    history = record["history"]
    assert [row["epoch"] for row in history] == [1, 2]
    assert history[1]["step"] == 2 * history[0]["step"] > 0  # optimizer steps so far
    assert all(np.isfinite(row["train/loss"]) and "val/dice" in row for row in history)
    assert not any(key.endswith(("_step", "_sd")) for row in history for key in row)
    # the fixed test images of the report's overlay grid, positives first
    saved = np.load(ct_run / "predictions.npz")
    ids = saved["ids"].tolist()
    assert len(ids) == min(8, test["n_images"]) and set(ids) <= {r["id"] for r in rows}
    assert saved["image"].shape == saved["true"].shape == saved["pred"].shape == (len(ids), 64, 64)
    by_id = {r["id"]: r for r in rows}
    assert [int(m.sum()) for m in saved["true"]] == [int(by_id[i]["true_area"]) for i in ids]
    assert [int(m.sum()) for m in saved["pred"]] == [int(by_id[i]["pred_area"]) for i in ids]
    # chosen positives first (stored in dataset order)
    assert sum(int(by_id[i]["true_area"]) > 0 for i in ids) == min(8, test["n_positive"])


@pytest.mark.slow
def test_quick_ct_fit_learns_more_than_an_empty_prediction_scores(tmp_path):
    assert fit_cli([*CT, "--runs-dir", str(tmp_path)]) == 0
    run_dir = tmp_path / "ct" / "unet-resnet34-ce-s0"
    record = json.loads((run_dir / "metrics.json").read_text())
    config = yaml.safe_load((run_dir / "config.yaml").read_text())  # from ct/_quick.yaml
    assert record["status"] == "finished"
    assert record["epochs"] == config["trainer"]["max_epochs"] >= 5
    assert_learned(record["test"], _read_csv(run_dir / "per_image.csv"), margin=0.15)


def test_offline_wandb_run_holds_overlays_and_table(ct_run):
    runs = list((ct_run / "wandb").glob("offline-run-*"))
    assert len(runs) == 1, runs
    media = runs[0] / "files" / "media"
    names = [p.name for p in (media / "images").rglob("*.png")]
    assert any(n.startswith("val/overlays") or "overlays" in n for n in names), names
    for stage in ("val", "test"):
        assert list((media / "images" / stage).glob("overlays_*.png")), stage
    masks = list((media / "images" / "mask").rglob("*.png"))
    assert masks  # ground truth and prediction masks of the overlays
    tables = list((media / "table" / "test").glob("per_image_*.table.json"))
    assert len(tables) == 1
    table = json.loads(tables[0].read_text())
    record = json.loads((ct_run / "metrics.json").read_text())
    assert len(table["data"]) == record["test"]["n_images"]
    assert table["columns"][:2] == ["id", "patient"]


def test_checkpoints_load_weights_only_and_rebuild_the_model(ct_run):
    path = ct_run / "checkpoints" / "best.ckpt"
    checkpoint = torch.load(path, weights_only=True, map_location="cpu")
    assert checkpoint["hyper_parameters"]["net"] == "unet"
    module = SegmentationModule.load_from_checkpoint(path, weights_only=True, map_location="cpu")
    state = module.state_dict()
    assert state.keys() == checkpoint["state_dict"].keys()
    assert all(torch.equal(state[k], v) for k, v in checkpoint["state_dict"].items())


def test_retest_reproduces_the_test_metrics(ct_run):
    before = json.loads((ct_run / "metrics.json").read_text())
    runs = str(ct_run.parents[1])
    assert ptx_test([*CT, *SHORT, "--runs-dir", runs, "--ckpt_path", "best"]) == 0
    after = json.loads((ct_run / "metrics.json").read_text())
    assert after["status"] == "finished" and after["val"] == before["val"]
    assert after["wall_time_s"] == before["wall_time_s"]  # a re-test leaves the fit's time
    for key, value in before["test"].items():
        assert after["test"][key] == value or after["test"][key] == pytest.approx(value), key


def test_a_second_fit_refuses_to_overwrite_the_run(ct_run, capsys):
    runs = str(ct_run.parents[1])
    assert fit_cli([*CT, *SHORT, "--runs-dir", runs]) == 2  # an input error: one line
    err = capsys.readouterr().err
    assert "already holds a run" in err and "Traceback" not in err


def test_non_finite_loss_stops_the_run_without_checkpoints(tmp_path, capsys):
    # a learning rate of 1e30 blows the weights up after the first step: NaN at step 1
    argv = [*CT, *SHORT, "--runs-dir", str(tmp_path), "--model.optimizer.lr", "1e30"]
    assert fit_cli(argv) == 1
    err = capsys.readouterr().err
    assert "non-finite training loss" in err and "epoch 0, global step 1" in err
    run_dir = tmp_path / "ct" / "unet-resnet34-ce-s0"
    assert not list(run_dir.glob("checkpoints/*.ckpt"))
    record = json.loads((run_dir / "metrics.json").read_text())
    assert record["status"] == "failed" and "NonFiniteLossError" in record["error"]


@pytest.mark.slow
def test_xray_fit_and_test(tmp_path):
    assert fit_cli([*XRAY, "--runs-dir", str(tmp_path)]) == 0
    run_dir = tmp_path / "xray" / "vanilla_unet-swce-s0"
    record = json.loads((run_dir / "metrics.json").read_text())
    assert record["status"] == "finished" and record["params"] == 7_764_098
    assert (record["loss"], record["modality"]) == ("swce", "xray")
    rows = _read_csv(run_dir / "per_image.csv")
    assert len(rows) == record["test"]["n_images"]
    assert_learned(record["test"], rows, margin=0.1)
    for name in ("config.yaml", "split.json", "checkpoints/best.ckpt", "checkpoints/last.ckpt"):
        assert (run_dir / name).is_file(), name
    assert os.environ["WANDB_MODE"] == "disabled" and not (run_dir / "wandb").exists()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_bf16_and_channels_last_on_a_gpu(tmp_path):
    argv = [*CT, *SHORT, "--runs-dir", str(tmp_path), "--trainer.accelerator", "gpu"]
    argv += ["--trainer.precision", "bf16-mixed", "--model.channels_last", "true"]
    assert fit_cli(argv) == 0
    record = json.loads((tmp_path / "ct" / "unet-resnet34-ce-s0" / "metrics.json").read_text())
    assert record["status"] == "finished" and record["device"].startswith("cuda")
    assert record["precision"] == "bf16-mixed"
    assert 0 <= record["test"]["dice"] <= 1 and 0 <= record["val"]["acc"] <= 1


def test_tuned_diagnosis_rule_is_chosen_on_validation_and_reused_by_a_retest(tmp_path):
    runs = str(tmp_path)
    argv = [*CT, *SHORT, "--runs-dir", runs, "--model.diagnosis_rule", "tuned"]
    assert fit_cli(argv) == 0
    run_dir = tmp_path / "ct" / "unet-resnet34-ce-s0"
    record = json.loads((run_dir / "metrics.json").read_text())
    rule = record["diagnosis"]
    assert rule["rule"] == "tuned" and rule["tuned_on"] == "val"
    assert 0.1 <= rule["top_threshold"] <= 0.9 and 0.1 <= rule["pixel_threshold"] <= 0.9
    # the objective is the validation Kaggle Dice the tuned triplet reaches: at least what
    # the untuned rule gets on the same validation images
    assert rule["objective"] >= record["val"]["dice_kaggle"] - 1e-9
    calls = [r["pred_ptx"] == "True" for r in _read_csv(run_dir / "per_image.csv")]
    assert ptx_test([*CT, *SHORT, "--runs-dir", runs, "--model.diagnosis_rule", "tuned"]) == 0
    again = json.loads((run_dir / "metrics.json").read_text())
    assert again["diagnosis"] == rule  # the lone test applied the stored thresholds
    assert [r["pred_ptx"] == "True" for r in _read_csv(run_dir / "per_image.csv")] == calls
