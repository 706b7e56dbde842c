"""``ptx predict`` on real vendor files, not the phantom: CT slices of a GE scanner (128 x 128,
axial) and of a tilted-gantry head CT (512 x 512, 13-bit JPEG 2000 lossless) from pydicom's
test files, each stacked into a series (headers and encodings as the scanner wrote them) and
also given as a NIfTI in another voxel order; CR radiographs from pydicom-data (MONOCHROME1,
15- and 10-bit, uncompressed and JPEG 2000 lossless) and a 16-bit JPEG lossless image.

No chest CT or SIIM radiograph is public, so these are the closest real files: they test the
geometry, the decoders and the writers, not what a model finds in them.
"""

from __future__ import annotations

import copy
import csv
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from ct_fixtures import check_dicom_seg, reoriented
from predict_fixtures import DARK, options, predictor
from pydicom.uid import generate_uid
from xray_fixtures import vendor_file

from datamodules.readers.dicom_series import read_dicom_series
from datamodules.readers.nifti import read_nifti_volume, to_canonical
from datamodules.readers.radiograph import read_mask_png, read_radiograph
from datamodules.readers.rle import read_rle_csv, rle_decode
from datamodules.transforms import lung_window
from experiments.cli import main as ptx
from experiments.predict_ct import find_volumes, predict_volume
from experiments.predict_xray import find_radiographs, predict_radiograph, write_submission
from lightning_modules.volumetry import voxel_volume_ml

PYDICOM_FILES = Path(pydicom.__file__).parent / "data" / "test_files"  # shipped with pydicom
VENDOR_CT = {"ge": "CT_small.dcm", "tilted": "J2K_pixelrep_mismatch.dcm"}
VENDOR_XRAY = ("RG1_UNCR.dcm", "RG1_J2KR.dcm", "RG3_UNCR.dcm", "RG3_J2KR.dcm", "JPEG-LL.dcm")
SLICES = 4
AIR = 0.45  # lung-windowed value below which the threshold network calls PTX: HU < -675


def vendor_series(name: str, folder: Path) -> list[Path]:
    """SLICES copies of one vendor slice, one slice thickness apart along its normal, as one
    series; uncompressed pixels are shifted 7 columns a slice so the slices differ."""
    source = pydicom.dcmread(PYDICOM_FILES / name)
    orientation = np.asarray(source.ImageOrientationPatient, dtype=float)
    normal = np.cross(orientation[:3], orientation[3:])
    origin = np.asarray(source.ImagePositionPatient, dtype=float)
    series = generate_uid()
    folder.mkdir(parents=True)
    paths = []
    for k in range(SLICES):
        ds = copy.deepcopy(source)
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.SeriesInstanceUID, ds.InstanceNumber = series, k + 1
        position = origin + k * float(source.SliceThickness) * normal
        ds.ImagePositionPatient = [round(float(v), 4) for v in position]
        if not ds.file_meta.TransferSyntaxUID.is_compressed:
            ds.PixelData = np.roll(source.pixel_array, 7 * k, axis=1).tobytes()
        paths.append(folder / f"{SLICES - k:02d}.dcm")  # file order opposite to slice order
        ds.save_as(paths[-1])
    return paths


@pytest.fixture(scope="module")
def vendor_ct(tmp_path_factory):
    """Each vendor series as DICOM and as a NIfTI whose voxel axes run superior-to-inferior,
    right-to-left, posterior-to-anterior (the series' run left, posterior, superior)."""
    root = tmp_path_factory.mktemp("vendor-ct")
    for key, name in VENDOR_CT.items():
        files = vendor_series(name, root / key)
        hu, affine = read_dicom_series(files)
        data, moved = reoriented(hu.astype(np.int16), affine, "IRA")
        nib.save(nib.Nifti1Image(data, moved), root / f"{key}.nii.gz")
    return root


def _input(volume):
    if volume.layout == "nifti":
        return read_nifti_volume(volume.files[0])
    return read_dicom_series(volume.files)


def test_vendor_ct_masks_lie_on_the_input_grid_voxel_for_voxel(vendor_ct, tmp_path):
    volumes = find_volumes(vendor_ct)
    assert sorted(v.layout for v in volumes) == ["dicom"] * 2 + ["nifti"] * 2
    shapes = set()
    for volume in volumes:
        row = predict_volume(predictor("ct", dark=AIR), volume, tmp_path, options())
        hu, affine = _input(volume)
        written = nib.load(tmp_path / row["mask"])
        assert written.shape == hu.shape and SLICES in written.shape
        np.testing.assert_allclose(written.affine, affine, atol=1e-4)
        expected = lung_window(hu) < AIR
        mask = np.asarray(written.dataobj).astype(bool)
        assert 0 < mask.sum() < mask.size and np.array_equal(mask, expected)
        assert row["volume_ml"] == pytest.approx(expected.sum() * voxel_volume_ml(affine))
        if volume.layout == "dicom":
            check_dicom_seg(tmp_path / row["dicom_seg"], volume.files, expected)
        shapes.add(hu.shape)
    assert len(shapes) == 4  # two sizes, each in two voxel orders


def test_a_trained_run_predicts_vendor_ct_the_same_in_either_file_format(
    ct_run, vendor_ct, tmp_path
):
    """``ptx predict`` with a run trained on the phantom: each mask on its input's grid, the
    DICOM SEG read back by highdicom frame for frame, volumes from the mask; the DICOM series
    and its NIfTI give the same mask once both are in one orientation; no patient name or id in
    any output."""
    out = tmp_path / "out"
    argv = ["--model", str(ct_run), "--input", str(vendor_ct), "--out", str(out)]
    assert ptx(["predict", *argv]) == 0
    with open(out / "predictions.csv", newline="") as fh:
        rows = {r["case"]: r for r in csv.DictReader(fh)}
    canonical = {}
    for volume in find_volumes(vendor_ct):
        row = rows[volume.name]
        hu, affine = _input(volume)
        written = nib.load(out / row["mask"])
        assert written.shape == hu.shape
        np.testing.assert_allclose(written.affine, affine, atol=1e-4)
        mask = np.asarray(written.dataobj)
        assert float(row["volume_ml"]) == pytest.approx(mask.sum() * voxel_volume_ml(affine))
        assert int(row["slices_total"]) == SLICES
        if volume.layout == "dicom":
            check_dicom_seg(out / row["dicom_seg"], volume.files, mask.astype(bool))
        key = next(k for k in VENDOR_CT if k in str(volume.files[0].relative_to(vendor_ct)))
        canonical.setdefault(key, []).append(to_canonical(mask, affine)[0])
    assert any(a.any() for a, _ in canonical.values())  # not a comparison of empty masks
    for key, (a, b) in canonical.items():
        assert np.array_equal(a, b), key
    names = " ".join(p.name for p in out.rglob("*")) + (out / "predictions.csv").read_text()
    for name in VENDOR_CT.values():
        source = pydicom.dcmread(PYDICOM_FILES / name)
        for keyword in ("PatientName", "PatientID"):
            value = str(source.get(keyword, "")).strip()
            assert not value or value not in names, keyword


@pytest.fixture(scope="module")
def vendor_radiographs(tmp_path_factory):
    root = tmp_path_factory.mktemp("vendor-xray")
    for name in VENDOR_XRAY:
        (root / name).write_bytes(vendor_file(name).read_bytes())
    return root


def test_vendor_radiographs_give_masks_of_their_size_and_a_submission_that_parses_back(
    vendor_radiographs, tmp_path
):
    items = find_radiographs(vendor_radiographs)
    assert sorted(i.path.name for i in items) == sorted(VENDOR_XRAY)
    rows = [predict_radiograph(predictor("xray"), i, tmp_path, options()) for i in items]
    write_submission(tmp_path / "submission.csv", items, rows)
    submitted = read_rle_csv(tmp_path / "submission.csv")
    assert sorted(submitted) == sorted(i.image_id for i in items)  # ids: stems
    for item, row in zip(items, rows, strict=True):
        ds = pydicom.dcmread(item.path)
        image = read_radiograph(item.path)
        mask = read_mask_png(tmp_path / "masks" / f"{item.name}.png")
        assert mask.shape == image.shape == (ds.Rows, ds.Columns)
        assert np.array_equal(mask.astype(bool), image < DARK), item.name
        assert row["area_px"] == mask.sum()
        spacing = ds.get("PixelSpacing") or ds.get("ImagerPixelSpacing")
        if spacing:
            mm2 = float(spacing[0]) * float(spacing[1])
            assert row["area_mm2"] == pytest.approx(mask.sum() * mm2), item.name
        decoded = np.zeros_like(mask)
        for rle in submitted[item.image_id]:
            if rle.encoded != "-1":
                decoded |= rle_decode(rle.encoded, *mask.shape)
        assert np.array_equal(decoded, mask if row["ptx"] else np.zeros_like(mask))
    assert any(r["ptx"] for r in rows)  # the comparison above is not of empty masks only
