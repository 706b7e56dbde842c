import numpy as np
import pytest
from ct_fixtures import lps_affine, write_series, write_slice

from datamodules.io.errors import DataError
from datamodules.readers.dicom_series import (
    read_dicom_series,
    read_series_headers,
    series_files,
    series_geometry,
)
from datamodules.readers.nifti import to_canonical

ROWS, COLS, SLICES = 3, 4, 5


def _volume() -> np.ndarray:
    """slices x rows x columns; every voxel says where it is: 100 k + 10 row + column - 600."""
    k, r, c = np.meshgrid(*map(np.arange, (SLICES, ROWS, COLS)), indexing="ij")
    return (100 * k + 10 * r + c - 600).astype(np.float32)


def test_shuffled_series_is_ordered_by_position_not_name_or_number(tmp_path):
    hu = _volume()
    paths = write_series(tmp_path, hu, instance_numbers=[5, 4, 3, 2, 1])  # numbers disagree
    files = series_files(tmp_path)
    assert [files.index(p) for p in paths] != list(range(SLICES))  # names are not in order
    volume, affine = read_dicom_series(files)
    assert volume.shape == (COLS, ROWS, SLICES) and volume.dtype == np.float32
    np.testing.assert_array_equal(volume, hu.transpose(2, 1, 0))
    # voxel (i, j, k) sits at origin + i * column spacing + j * row spacing + k * 2.5 mm
    np.testing.assert_allclose(affine, lps_affine((0.6, 0.8, 2.5), (-10, -20, 30)), atol=1e-6)


def test_feet_first_series_reorients_to_the_head_first_volume(tmp_path):
    hu = _volume()
    write_series(tmp_path / "hfs", hu)
    # the same body scanned feet first: rows run to the patient's right, slices downwards
    ffs = hu[::-1, :, ::-1]
    origin = np.array([-10.0, -20.0, 30.0]) + [(COLS - 1) * 0.6, 0, (SLICES - 1) * 2.5]
    write_series(tmp_path / "ffs", ffs, origin=origin, orientation=(-1, 0, 0, 0, 1, 0))
    hfs_volume, hfs_affine = to_canonical(*read_dicom_series(series_files(tmp_path / "hfs")))
    ffs_volume, ffs_affine = to_canonical(*read_dicom_series(series_files(tmp_path / "ffs")))
    np.testing.assert_array_equal(ffs_volume, hfs_volume)
    np.testing.assert_allclose(ffs_affine, hfs_affine, atol=1e-6)


@pytest.mark.parametrize(
    ("dtype", "slope", "intercept", "hu"),
    [
        (np.uint16, 1.0, -1024.0, [-1024, 0, 1000, 2000]),  # unsigned, stored 0..3024
        (np.int16, 2.0, 0.0, [-2000, -2, 0, 1000]),  # signed, negative stored values
        (np.int16, 1.0, -1024.0, [-3024, -1000, 40, 3000]),  # padding far below air
    ],
)
def test_hounsfield_units_from_signed_and_unsigned_pixels(tmp_path, dtype, slope, intercept, hu):
    plane = np.array([hu, hu[::-1], hu], dtype=np.float32)  # 3 x 4
    paths = write_series(
        tmp_path, np.stack([plane, plane]), dtype=dtype, slope=slope, intercept=intercept
    )
    volume, _ = read_dicom_series(paths)
    np.testing.assert_array_equal(volume[:, :, 0], plane.T)


def test_instance_number_orders_slices_without_positions(tmp_path):
    numbers = [3, 1, 2]
    paths = [
        write_slice(tmp_path / f"x{n}.dcm", np.full((2, 2), 10 * n, np.int16), InstanceNumber=n)
        for n in numbers
    ]
    headers = read_series_headers(paths)
    geometry = series_geometry(headers, paths)
    assert geometry.sorted_by == "instance_number"
    volume, _ = read_dicom_series(paths)
    assert volume[0, 0].tolist() == [10, 20, 30]


def test_series_files_skip_hidden_dicomdir_and_the_label(tmp_path):
    write_series(tmp_path / "a", _volume()[:2])
    (tmp_path / "DICOMDIR").write_bytes(b"index")
    (tmp_path / ".DS_Store").write_bytes(b"mac")
    (tmp_path / "label.nii.gz").write_bytes(b"label")
    files = series_files(tmp_path, exclude=[tmp_path / "label.nii.gz"])
    assert len(files) == 2 and all(p.parent.name == "a" for p in files)


def _truncate(paths):
    data = paths[1].read_bytes()
    paths[1].write_bytes(data[: len(data) - 7])  # cut inside the pixel data
    return paths[1].name, "truncated"


def _not_dicom(paths):
    (paths[0].parent / "notes.txt").write_text("scan notes")
    return "notes.txt", "not a readable DICOM"


def _other_size(paths):
    write_slice(
        paths[0].parent / "odd.dcm",
        np.zeros((5, 5), np.int16),
        ImagePositionPatient=[-10, -20, 0],
        ImageOrientationPatient=[1, 0, 0, 0, 1, 0],
        PixelSpacing=[0.8, 0.6],
    )
    return "odd.dcm", "Rows x Columns"


def _duplicate(paths):
    (paths[0].parent / "copy.dcm").write_bytes(paths[2].read_bytes())
    return paths[2].name, "same position"


def _gap(paths):
    paths[2].unlink()  # the third of five slices is missing
    return paths[3].name, "slice gap of 5.00 mm"


def _no_position(paths):
    write_slice(
        paths[0].parent / "bare.dcm",
        np.zeros((ROWS, COLS), np.int16),
        ImageOrientationPatient=[1, 0, 0, 0, 1, 0],
        PixelSpacing=[0.8, 0.6],
    )
    return "bare.dcm", "no ImagePositionPatient"


@pytest.mark.parametrize(
    "damage", [_truncate, _not_dicom, _other_size, _duplicate, _gap, _no_position]
)
def test_bad_series_raise_data_error_naming_the_file(tmp_path, damage):
    paths = write_series(tmp_path, _volume(), SeriesInstanceUID=None)
    culprit, reason = damage(paths)
    with pytest.raises(DataError) as error:
        read_dicom_series(series_files(tmp_path))
    assert culprit in str(error.value) and reason in str(error.value)


def test_two_series_in_one_folder_are_refused(tmp_path):
    write_series(tmp_path, _volume()[:2], seed=1)
    write_series(tmp_path, _volume()[:2], origin=(0, 0, 100), seed=2)
    with pytest.raises(DataError, match="SeriesInstanceUID"):
        read_dicom_series(series_files(tmp_path))


def test_empty_series_is_refused():
    with pytest.raises(DataError, match="no DICOM slices"):
        read_dicom_series([])
