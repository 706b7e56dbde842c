"""``ptx check-data``: every case reported, a broken one named with its file, exit status 1;
the DataModules refuse the same case with the same message. Also the CLI's one-line input
errors (exit status 2, tracebacks only with --debug)."""

from __future__ import annotations

import re

import numpy as np
import pytest
from ct_fixtures import lps_affine, nifti_patient, write_nifti, write_series
from PIL import Image

from datamodules import CTDataModule, XRayDataModule
from datamodules.io.errors import DataError
from datamodules.layouts.privacy import anonymous_key
from experiments.cli import main

SHAPE = (6, 5, 4)
GRID = lps_affine(spacing=(0.6, 0.8, 2.5))  # the grid write_series puts the slices on


def _ct_folder(root):
    label = np.zeros(SHAPE, np.uint8)
    label[1:3, 1:3, 1:3] = 1  # 8 voxels on 2 slices
    hu = np.full(SHAPE, -700, np.int16)
    nifti_patient(root / "MRN00482913", hu, label)
    series = write_series(root / "case_dicom" / "dicom", np.full((4, 5, 6), -700.0))
    write_nifti(root / "case_dicom" / "label.nii.gz", np.zeros((6, 5, 4), np.uint8), GRID)
    broken = write_series(root / "case_broken", np.full((4, 5, 6), -700.0), seed=3)
    write_nifti(root / "case_broken" / "label.nii.gz", np.zeros((6, 5, 4), np.uint8), GRID)
    broken[2].write_bytes(broken[2].read_bytes()[:-30])  # a slice cut short
    return series, broken[2]


def test_check_data_names_the_broken_case_and_reports_the_others(tmp_path, capsys):
    root = tmp_path / "ct"
    _, cut = _ct_folder(root)
    (root / "case_nolabel").mkdir()  # a folder with neither label nor image
    assert main(["check-data", str(root)]) == 1
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0] == f"ct data in {root}: 4 cases"
    errors = [line for line in lines if "ERROR" in line]
    assert len(errors) == 2
    assert any(f"{cut}: pixel data is truncated" in line for line in errors)
    nolabel = r"case_nolabel: patient p[0-9a-f]{12}: patient folder has no label"
    assert any(re.search(nolabel, line) for line in errors)
    fine = [line for line in lines[1:] if "ERROR" not in line and line.startswith("  ")]
    assert len(fine) == 2
    nifti = next(line for line in fine if anonymous_key("MRN00482913") in line)
    assert "nifti" in nifti and "6 x 5 x 4" in nifti and "8 px in 2/4" in nifti
    assert "MRN00482913" not in out  # fine cases go by their keys
    dicom = next(line for line in fine if "dicom series" in line)
    assert "0.60 x 0.80 x 2.50 mm" in dicom and "0 px in 0/4" in dicom
    assert lines[-1] == "2 cases fine, 2 with errors"
    # the DataModule runs the same checks: it refuses the same folder with the same words
    dm = CTDataModule(data_dir=str(root), cache_dir=str(tmp_path / "c"), split_fractions=(1, 1, 1))
    with pytest.raises(DataError, match=nolabel):
        dm.setup()
    (root / "case_nolabel").rmdir()
    with pytest.raises(DataError, match="pixel data is truncated"):
        dm.setup()


def test_check_data_on_sound_xray_pngs_exits_0(tmp_path, capsys):
    root = tmp_path / "xr"
    rng = np.random.default_rng(0)
    for name, ptx in (("a", 0), ("b", 30), ("c", 0)):
        for folder in ("images", "masks"):
            (root / folder).mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (20, 24), dtype=np.uint8)).save(
            root / "images" / f"{name}.png"
        )
        mask = np.zeros((20, 24), np.uint8)
        mask[2:8, 3 : 3 + ptx // 6] = 255
        Image.fromarray(mask).save(root / "masks" / f"{name}.png")
    assert main(["check-data", str(root), "--modality", "xray"]) == 0
    out = capsys.readouterr().out
    assert "xray data in" in out and "3 cases fine, 0 with errors" in out
    assert "png + png" in out and "30 px in 1/1" in out and "20 x 24" in out
    Image.fromarray(np.zeros((20, 24), np.uint8)).save(root / "images" / "c.png")  # blank
    assert main(["check-data", str(root), "--quiet"]) == 1
    out = capsys.readouterr().out
    assert "c.png: the radiograph is blank" in out and out.count("  ") >= 1
    assert "2 cases fine, 1 with errors" in out
    dm = XRayDataModule(data_dir=str(root), cache_dir=str(tmp_path / "c"))
    with pytest.raises(DataError, match=r"c\.png: the radiograph is blank"):
        dm.setup()


def test_input_errors_are_one_line_with_status_2(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PTX_DEBUG", "0")  # restored after the test (--debug sets it)
    assert main(["check-data", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert err.strip() == f"ptx check-data: error: {tmp_path / 'missing'}: no such data folder"
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("data")
    assert main(["phantom", "ct", "--out", str(tmp_path / "full"), "--patients", "1"]) == 2
    err = capsys.readouterr().err
    assert "folder is not empty" in err and "Traceback" not in err and err.count("\n") == 1
    with pytest.raises(DataError, match="no such data folder"):
        main(["--debug", "check-data", str(tmp_path / "missing")])
