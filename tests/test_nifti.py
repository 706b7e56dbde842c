import gzip

import nibabel as nib
import numpy as np
import pytest
from ct_fixtures import lps_affine, reoriented, write_nifti

from datamodules.io.errors import DataError
from datamodules.readers.nifti import (
    aligned_label,
    axial_slices,
    read_nifti_label,
    read_nifti_volume,
    to_canonical,
)

SHAPE = (6, 5, 4)  # i (to the left), j (posterior), k (superior): all different on purpose


def _body():
    """A volume in LPS voxel order whose every voxel value says where it is."""
    i, j, k = np.meshgrid(*map(np.arange, SHAPE), indexing="ij")
    return (100 * k + 10 * j + i).astype(np.int16)


def _lesion():
    """An asymmetric label: a corner at left, anterior, superior plus one voxel beside it."""
    label = np.zeros(SHAPE, np.uint8)
    label[4:6, 0:2, 3] = 1
    label[3, 0, 3] = 1
    return label


@pytest.mark.parametrize("image_axcodes", ["RAS", "LPS"])
@pytest.mark.parametrize("label_axcodes", ["LPS", "RAS", "LAS", "ARS", "PLI", "SRA"])
def test_label_aligns_with_image_whatever_either_orientation(
    tmp_path, image_axcodes, label_axcodes
):
    affine = lps_affine()
    image, image_affine = reoriented(_body(), affine, image_axcodes)
    label, label_affine = reoriented(_lesion(), affine, label_axcodes)
    write_nifti(tmp_path / "image.nii.gz", image, image_affine)
    write_nifti(tmp_path / "label.nii.gz", label, label_affine)
    volume, canonical_affine = to_canonical(*read_nifti_volume(tmp_path / "image.nii.gz"))
    mask = aligned_label(tmp_path / "label.nii.gz", volume.shape, canonical_affine, patient="p1")
    np.testing.assert_array_equal(volume, _body())  # back in LPS voxel order
    np.testing.assert_allclose(canonical_affine, affine, atol=1e-5)
    assert sorted(volume[mask == 1].tolist()) == [303, 304, 305, 314, 315]


def test_axial_slices_show_anterior_up_and_patient_right_on_the_left():
    slices = axial_slices(_body())
    assert slices.shape == (4, 5, 6)  # slices (inferior first) x rows x columns
    assert slices[3, 0, 5] == 305  # superior slice, top row (anterior), last column (left)


def test_scl_slope_and_inter_give_hounsfield_units(tmp_path):
    stored = np.array([0, 512, 1024, 2048], np.int16).reshape(2, 2, 1)
    path = write_nifti(tmp_path / "ct.nii.gz", stored, np.eye(4), slope=2.0, inter=-1024.0)
    volume, _ = read_nifti_volume(path)
    assert volume.dtype == np.float32
    assert volume.ravel().tolist() == [-1024.0, 0.0, 1024.0, 3072.0]


@pytest.mark.parametrize("values", [(0, 255), (0, 1, 2, 7), (0, -1)])
def test_any_nonzero_label_value_is_pneumothorax(tmp_path, values):
    raw = np.array(values * 3, dtype=np.int16)[:6].reshape(1, 2, 3)
    path = write_nifti(tmp_path / "label.nii", raw, np.eye(4))
    mask, _ = read_nifti_label(path)
    assert mask.dtype == np.uint8
    np.testing.assert_array_equal(mask, (raw != 0).astype(np.uint8))


def test_four_d_label_with_one_volume_is_read_as_three_d(tmp_path):
    path = write_nifti(tmp_path / "label.nii.gz", _lesion()[..., None], lps_affine())
    mask, _ = read_nifti_label(path)
    assert mask.shape == SHAPE


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda a, d: (a @ _shift(2, 0, 0), d), "mm away"),  # two voxels off
        (lambda a, d: (a @ np.diag([1, 1, 2, 1]), d), "mm away"),  # other slice spacing
        (lambda a, d: (a, d[:, :, :3]), "differs from the image's"),  # fewer slices
    ],
)
def test_label_on_another_grid_is_refused_naming_the_patient(tmp_path, change, reason):
    affine, data = change(lps_affine(), _lesion())
    write_nifti(tmp_path / "label.nii.gz", data, affine)
    with pytest.raises(DataError, match=f"patient p7.*{reason}"):
        aligned_label(tmp_path / "label.nii.gz", SHAPE, lps_affine(), patient="p7")


def _shift(*voxels):
    out = np.eye(4)
    out[:3, 3] = voxels
    return out


def test_truncated_or_foreign_files_raise_data_error_naming_them(tmp_path):
    good = write_nifti(tmp_path / "image.nii.gz", _body(), lps_affine())
    cut = tmp_path / "cut.nii.gz"
    cut.write_bytes(gzip.compress(gzip.decompress(good.read_bytes())[:400]))
    text = tmp_path / "notes.nii"
    text.write_text("not an image")
    for path in (cut, text, tmp_path / "missing.nii.gz"):
        with pytest.raises(DataError, match=path.name):
            read_nifti_volume(path)


def test_scaled_label_is_read_through_its_scaling(tmp_path):
    # a label written as float with a scale factor: 0.5 * 2 = 1, 0 * 2 = 0
    image = nib.Nifti1Image(np.array([[[0, 1]]], np.uint8), np.eye(4))
    image.header.set_slope_inter(0.5, 0.0)
    nib.save(image, tmp_path / "label.nii.gz")
    mask, _ = read_nifti_label(tmp_path / "label.nii.gz")
    assert mask.ravel().tolist() == [0, 1]
