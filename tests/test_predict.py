"""``ptx predict``: masks on the input's grid, the SIIM submission round trip, volumes in mL,
resuming; end to end from a trained run folder.

The geometry tests use a network with known output (PTX wherever the input is darker than a
threshold) at the input's own size, so every output pixel can be checked against the input.
"""

from __future__ import annotations

import csv
import json
import logging
import re

import nibabel as nib
import numpy as np
import pytest
import torch
from ct_fixtures import check_dicom_seg
from predict_fixtures import DARK, options, predictor
from torch import nn

from datamodules.phantom.ct import generate_ct_phantom
from datamodules.phantom.xray import generate_xray_phantom
from datamodules.readers.dicom_series import read_dicom_series
from datamodules.readers.nifti import read_nifti_volume
from datamodules.readers.radiograph import read_mask_png, read_radiograph
from datamodules.readers.rle import read_rle_csv, rle_decode
from datamodules.transforms import lung_window
from experiments.cli import main as ptx
from experiments.predict_ct import find_volumes, predict_volume
from experiments.predict_xray import find_radiographs, predict_radiograph, write_submission
from lightning_modules.bundle import BundleError, load_bundle, project_version
from lightning_modules.diagnosis import DiagnosisRule
from lightning_modules.inference import ModelError, Predictor
from lightning_modules.volumetry import voxel_volume_ml


@pytest.fixture(scope="module")
def ct_scans(tmp_path_factory):
    root = tmp_path_factory.mktemp("ct")
    generate_ct_phantom(root, patients=2, size=48, slices=6)  # one DICOM series, one NIfTI
    return root


def test_ct_inputs_are_one_series_and_one_nifti_with_keyed_names(ct_scans):
    volumes = find_volumes(ct_scans)
    assert sorted(v.layout for v in volumes) == ["dicom", "nifti"]
    folders = {p.name for p in ct_scans.iterdir()}
    for volume in volumes:
        assert volume.name.startswith("c") and len(volume.name) == 13
        assert not any(folder in volume.name for folder in folders)  # MRN-like names stay out
        assert all(not f.name.startswith("label") for f in volume.files)


def test_ct_mask_lies_on_the_input_grid_voxel_for_voxel(ct_scans, tmp_path):
    for volume in find_volumes(ct_scans):
        row = predict_volume(predictor("ct"), volume, tmp_path, options())
        if volume.layout == "nifti":
            hu, affine = read_nifti_volume(volume.files[0])
        else:
            hu, affine = read_dicom_series(volume.files)
        written = nib.load(tmp_path / row["mask"])
        assert written.shape == hu.shape
        np.testing.assert_allclose(written.affine, affine, atol=1e-4)
        expected = lung_window(hu) < DARK  # the network's rule, in the input's voxel order
        mask = np.asarray(written.dataobj)
        assert mask.sum() > 0 and np.array_equal(mask.astype(bool), expected)
        assert row["volume_ml"] == pytest.approx(expected.sum() * voxel_volume_ml(affine))
        assert row["volume_right_ml"] + row["volume_left_ml"] == pytest.approx(row["volume_ml"])
        assert row["slices"] == int(expected.any(axis=(0, 1)).sum())
        if volume.layout == "dicom":
            check_dicom_seg(tmp_path / row["dicom_seg"], volume.files, expected)
        else:
            assert row["dicom_seg"] is None


class LeftHeavy(nn.Module):
    """PTX logit = 8 * (x - column / width): not mirror-symmetric, so hflip TTA shows."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ramp = torch.linspace(0, 1, x.shape[-1])
        ptx = 8.0 * (x[:, :1] - ramp)
        return torch.cat([torch.zeros_like(ptx), ptx], dim=1)


def test_hflip_tta_is_the_mean_of_image_and_mirror():
    images = np.random.default_rng(0).random((2, 16, 16)).astype(np.float32)
    config = {"data": {"init_args": {}}}
    got = {
        tta: Predictor(LeftHeavy(), None, 1, DiagnosisRule(), config, tta=tta)
        .probabilities(images)
        .grid
        for tta in ("none", "hflip")
    }
    ramp = np.linspace(0, 1, 16, dtype=np.float32)
    plain = 1 / (1 + np.exp(-8 * (images - ramp)))
    mirrored = 1 / (1 + np.exp(-8 * (images - ramp[::-1])))  # f(flip(x)), flipped back
    np.testing.assert_allclose(got["none"], plain, atol=1e-5)
    np.testing.assert_allclose(got["hflip"], (plain + mirrored) / 2, atol=1e-5)
    assert np.abs(got["hflip"] - got["none"]).max() > 0.1


@pytest.fixture(scope="module")
def radiographs(tmp_path_factory):
    root = tmp_path_factory.mktemp("xray")
    generate_xray_phantom(root, patients=3, size=64, layout="siim")
    return root


def test_xray_masks_overlays_and_submission_round_trip(radiographs, tmp_path):
    items = find_radiographs(radiographs)
    assert len(items) >= 3 and all(i.path.suffix == ".dcm" for i in items)
    rows = [predict_radiograph(predictor("xray"), i, tmp_path, options()) for i in items]
    write_submission(tmp_path / "submission.csv", items, rows)
    submitted = read_rle_csv(tmp_path / "submission.csv")
    assert sorted(submitted) == sorted(i.image_id for i in items)  # ids: stems
    for item, row in zip(items, rows, strict=True):
        image = read_radiograph(item.path)
        mask = read_mask_png(tmp_path / "masks" / f"{item.name}.png")
        assert mask.shape == image.shape
        assert np.array_equal(mask.astype(bool), image < DARK)
        assert row["area_px"] == mask.sum() and row["ptx"] == (row["grid_area_px"] > 50)
        assert row["area_mm2"] > 0 if row["area_px"] else row["area_mm2"] == 0
        decoded = np.zeros_like(mask)
        for rle in submitted[item.image_id]:
            if rle.encoded != "-1":
                decoded |= rle_decode(rle.encoded, *mask.shape)
        assert np.array_equal(decoded, mask if row["ptx"] else np.zeros_like(mask))
        assert (tmp_path / "overlays" / f"{item.name}.png").is_file()
        assert row["case"] == item.name and item.image_id not in json.dumps(row)
    # outputs are named by keys: no file stem (a SOP Instance UID here) in any name
    names = [p.name for p in tmp_path.rglob("*")]
    assert all(re.fullmatch(r"i[0-9a-f]{12}\.png", n) for n in names if n.endswith(".png"))
    assert not any(item.image_id in n for item in items for n in names)


def test_xray_predict_cli_names_nothing_by_file_stem_and_resumes(
    radiographs, tmp_path, monkeypatch, caplog
):
    """Every output and log line carries the images' keys; submission.csv alone holds the
    stems (SOP Instance UIDs here), the same after a resume as in one go."""
    monkeypatch.setattr(Predictor, "load", staticmethod(lambda *a: predictor("xray")))
    out = tmp_path / "out"
    argv = ["predict", "--model", "any", "--input", str(radiographs), "--out", str(out)]
    with caplog.at_level(logging.INFO, logger="ptx.predict"):
        assert ptx(argv) == 0
    items = find_radiographs(radiographs)
    first = (out / "submission.csv").read_text()
    assert sorted(read_rle_csv(out / "submission.csv")) == sorted(i.image_id for i in items)
    written = [p for p in out.rglob("*") if p.name != "submission.csv"]
    exposed = [caplog.text, *(p.name for p in written)]
    exposed += [p.read_bytes().decode("latin-1") for p in written if p.is_file()]
    for item in items:
        assert not any(item.image_id in text for text in exposed), item.image_id
    (out / "cases" / f"{items[0].name}.json").unlink()  # as if killed before the last case
    (out / "submission.csv").unlink()
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="ptx.predict"):
        assert ptx(argv) == 0
    assert caplog.text.count("done before, kept") == len(items) - 1
    assert (out / "submission.csv").read_text() == first


def test_predict_cli_from_a_run_folder_writes_every_case_and_resumes(
    ct_run, ct_scans, tmp_path, caplog
):
    out = tmp_path / "out"
    argv = ["predict", "--model", str(ct_run), "--input", str(ct_scans), "--out", str(out)]
    assert ptx([*argv, "--tta", "hflip", "--save-probabilities"]) == 0
    with open(out / "predictions.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 2 and {r["layout"] for r in rows} == {"dicom", "nifti"}
    for row in rows:
        mask = nib.load(out / row["mask"])
        probabilities = np.asarray(nib.load(out / f"{row['case']}_probabilities.nii.gz").dataobj)
        assert mask.shape == probabilities.shape and 0 <= probabilities.min() <= 1
        ml = voxel_volume_ml(mask.affine)
        assert float(row["volume_ml"]) == pytest.approx(np.asarray(mask.dataobj).sum() * ml)
    settings = json.loads((out / "predictions.json").read_text())
    assert settings["tta"] == "hflip" and settings["image_size"] == 64
    stamp = (out / rows[0]["mask"]).stat().st_mtime_ns
    caplog.clear()
    assert ptx(argv) == 0  # a second run keeps what is done
    assert caplog.text.count("done before, kept") == 2
    assert (out / rows[0]["mask"]).stat().st_mtime_ns == stamp


def test_predict_refuses_a_folder_without_scans_in_one_line(ct_run, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    argv = ["--model", str(ct_run), "--input", str(tmp_path / "empty"), "--out", str(tmp_path)]
    assert ptx(["predict", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no ct scans found" in err and "empty" in err


def _masks(folder, rows):
    return {r["case"]: np.asarray(nib.load(folder / r["mask"]).dataobj) for r in rows}


def test_export_bundle_onnx_parity_and_the_same_masks_through_each_backend(
    ct_run, ct_scans, tmp_path
):
    bundle = tmp_path / "bundle"
    assert ptx(["export", "--model", str(ct_run), "--out", str(bundle)]) == 0
    config = json.loads((bundle / "config.json").read_text())
    assert (config["net"], config["net_kwargs"], config["image_size"]) == (
        "unet",
        {"encoder_name": "resnet34"},
        64,
    )
    assert config["data"]["window_level"] == -600 and config["diagnosis"]["rule"] == "paper"
    assert config["onnx_max_abs_difference"] <= 1e-3
    masks = {}
    for name, model, backend in (
        ("run", ct_run, "torch"),
        ("bundle", bundle, "torch"),
        ("onnx", bundle, "onnx"),
    ):
        out = tmp_path / name
        argv = ["--model", str(model), "--input", str(ct_scans), "--out", str(out)]
        assert ptx(["predict", *argv, "--backend", backend]) == 0
        rows = json.loads((out / "predictions.json").read_text())["cases"]
        masks[name] = _masks(out, rows)
    for case, mask in masks["run"].items():
        assert 0.001 < mask.mean() < 0.5, mask.mean()  # a real mask: the comparison can fail
        assert np.array_equal(masks["bundle"][case], mask)  # same weights, same network
        both = (masks["onnx"][case] & mask).sum()
        dice = 2 * both / (masks["onnx"][case].sum() + mask.sum())
        assert dice >= 0.99


def test_a_bundle_whose_weights_do_not_fit_its_architecture_is_refused(ct_run, tmp_path):
    bundle = tmp_path / "bundle"
    assert ptx(["export", "--model", str(ct_run), "--out", str(bundle), "--no-onnx"]) == 0
    config = json.loads((bundle / "config.json").read_text())
    config["net_kwargs"]["encoder_name"] = "resnet18"
    (bundle / "config.json").write_text(json.dumps(config))
    with pytest.raises(BundleError, match=r"does not fit unet .*resnet18"):
        load_bundle(bundle)


def test_a_bad_scan_is_listed_in_failures_and_the_others_are_written(ct_run, ct_scans, tmp_path):
    import shutil

    scans = tmp_path / "scans"
    shutil.copytree(ct_scans, scans)
    (scans / "broken.nii.gz").write_bytes(b"not a NIfTI file at all")
    out = tmp_path / "out"
    assert ptx(["predict", "--model", str(ct_run), "--input", str(scans), "--out", str(out)]) == 1
    with open(out / "failures.csv", newline="") as fh:
        failures = list(csv.DictReader(fh))
    assert len(failures) == 1 and "broken.nii.gz" in failures[0]["error"]
    with open(out / "predictions.csv", newline="") as fh:
        assert len(list(csv.DictReader(fh))) == 2


def test_load_model_is_the_python_api_of_predict(ct_run):
    from lightning_modules import load_model

    model = load_model(ct_run)
    prediction = model.probabilities(np.zeros((2, 96, 80), dtype=np.float32))
    assert prediction.grid.shape == (2, 64, 64) and prediction.native.shape == (2, 96, 80)


def test_checkpoints_load_weights_only_and_foreign_ones_are_refused_naming_what_differs(
    ct_run, tmp_path
):
    import functools
    import re
    import shutil

    checkpoint = torch.load(ct_run / "checkpoints" / "best.ckpt", weights_only=True)
    assert checkpoint["ptx_seg_version"] == project_version()
    run = tmp_path / "run"
    shutil.copytree(ct_run, run, ignore=shutil.ignore_patterns("wandb"))
    target = run / "checkpoints" / "best.ckpt"
    torch.save({**checkpoint, "hook": functools.partial(print, "ran")}, target)
    refused = r"best\.ckpt: refused by torch\.load\(weights_only=True\)"
    with pytest.raises(ModelError, match=refused):
        Predictor.load(run)
    state = dict(checkpoint["state_dict"])
    conv = next(k for k, v in state.items() if k.startswith("net.") and v.ndim == 4)
    state[conv] = torch.zeros(3, 3, 3, 3)
    dropped = next(k for k in reversed(state) if k.startswith("net."))
    del state[dropped]
    torch.save({**checkpoint, "state_dict": state, "ptx_seg_version": "0.0.1"}, target)
    with pytest.raises(ModelError) as refused:
        Predictor.load(run)
    message = str(refused.value)
    assert "\n" not in message and "written by ptx-seg 0.0.1" in message
    assert re.search(rf"missing \['{re.escape(dropped[4:])}'\]", message)
    assert f"{conv[4:]} (3, 3, 3, 3) vs" in message
