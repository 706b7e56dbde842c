"""Every bad CT input raises DataError naming the culprit (file, manifest row or patient)."""

import numpy as np
import pytest
from ct_fixtures import lps_affine, nifti_patient, write_nifti, write_series

from datamodules import CTDataModule
from datamodules.io.errors import DataError
from datamodules.layouts.privacy import anonymous_key

SHAPE = (4, 4, 3)


def _patients(root, n=3):
    for index in range(n):
        nifti_patient(root / f"case{index}", np.full(SHAPE, -800), np.zeros(SHAPE))
    return root


def _setup(data_dir, tmp_path, **kwargs):
    kwargs = {"image_size": None, "split_fractions": (1, 1, 1), **kwargs}
    dm = CTDataModule(data_dir=str(data_dir), cache_dir=str(tmp_path / "cache"), **kwargs)
    dm.setup()
    return dm


def _missing_label(root):
    (root / "case1" / "label.nii.gz").unlink()
    return ["case1", anonymous_key("case1"), "no label.nii"]


def _no_slices(root):
    write_nifti(root / "empty" / "label.nii.gz", np.zeros(SHAPE, np.uint8), lps_affine())
    return ["empty", anonymous_key("empty"), "no DICOM slices"]


def _truncated_dicom(root):
    paths = write_series(root / "scan" / "series", np.full((3, 4, 4), -800.0))
    write_nifti(root / "scan" / "label.nii.gz", np.zeros(SHAPE, np.uint8), lps_affine())
    paths[1].write_bytes(paths[1].read_bytes()[:-11])
    return [paths[1].name, "truncated"]


def _label_on_other_grid(root):
    shifted = lps_affine(origin=(-10.0, -20.0, 35.0))  # two slices higher
    write_nifti(root / "case2" / "label.nii.gz", np.zeros(SHAPE, np.uint8), shifted)
    return [anonymous_key("case2"), "not on the image grid", "5.00 mm away"]


def _unreadable_nifti(root):
    (root / "case0" / "image.nii.gz").write_bytes(b"\x1f\x8b broken")
    return ["case0/image.nii.gz", "not a readable NIfTI"]


@pytest.mark.parametrize(
    "damage",
    [_missing_label, _no_slices, _truncated_dicom, _label_on_other_grid, _unreadable_nifti],
)
def test_bad_patient_is_named(tmp_path, damage):
    root = _patients(tmp_path / "data")
    expected = damage(root)
    with pytest.raises(DataError) as error:
        _setup(root, tmp_path)
    for text in expected:
        assert text in str(error.value)


def test_empty_data_set(tmp_path):
    (tmp_path / "data").mkdir()
    with pytest.raises(DataError, match="no CT patients found"):
        _setup(tmp_path / "data", tmp_path)


def test_missing_data_folder(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        _setup(tmp_path / "nowhere", tmp_path)


def test_empty_split(tmp_path):
    with pytest.raises(DataError, match="split is empty"):
        _setup(_patients(tmp_path / "data", n=2), tmp_path, split_fractions=(50, 4, 6))


def _manifest(root, rows, header="patient,image,label"):
    path = root / "manifest.csv"
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def test_manifest_names_files_anywhere(tmp_path):
    root = _patients(tmp_path / "data")
    paths = write_series(tmp_path / "elsewhere" / "ct", np.full((3, 4, 4), -800.0))
    write_nifti(tmp_path / "elsewhere" / "seg.nii", np.ones(SHAPE, np.uint8), lps_affine())
    rows = [f"MRN00{n},data/case{n}/image.nii.gz,data/case{n}/label.nii.gz" for n in range(3)]
    rows.append(f"MRN0042 , {paths[0].parent} , {tmp_path / 'elsewhere' / 'seg.nii'}")
    dm = _setup(root, tmp_path, manifest=str(_manifest(tmp_path, rows)))
    keys = {anonymous_key(f"MRN00{n}") for n in (0, 1, 2, 42)}
    assert set(dm.split["train"] + dm.split["val"] + dm.split["test"]) == keys
    datasets = (dm.train_dataset, dm.val_dataset, dm.test_dataset)
    dicom = next(ds for ds in datasets if anonymous_key("MRN0042") in ds.patients)
    assert dicom.positive.sum() == 3  # its label is all pneumothorax


def test_manifest_in_the_data_folder_is_used(tmp_path):
    root = _patients(tmp_path / "data")
    _manifest(root, [f"x{n},case{n}/image.nii.gz,case{n}/label.nii.gz" for n in range(3)])
    dm = _setup(root, tmp_path)
    assert sorted(dm.split["train"] + dm.split["val"] + dm.split["test"]) == sorted(
        anonymous_key(f"x{n}") for n in range(3)
    )


@pytest.mark.parametrize(
    ("rows", "header", "expected"),
    [
        (["a,case0/image.nii.gz,case0/label.nii.gz"], "id,image,mask", "manifest header"),
        (["a,case0/image.nii.gz,case0/nothing.nii.gz"], None, "row 2"),
        (
            ["a,case0/image.nii.gz,case0/label.nii.gz", "a,case1/image.nii.gz,case1/label.nii.gz"],
            None,
            "row 3",
        ),
        (["a,case0/missing.nii.gz,case0/label.nii.gz"], None, "does not exist"),
        (["a,,case0/label.nii.gz"], None, "empty field"),
    ],
)
def test_bad_manifest_rows_are_named(tmp_path, rows, header, expected):
    root = _patients(tmp_path / "data")
    path = _manifest(root, rows, header or "patient,image,label")
    with pytest.raises(DataError, match=expected) as error:
        _setup(root, tmp_path)
    assert str(path) in str(error.value)
