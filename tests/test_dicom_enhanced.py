"""Enhanced (multi-frame) CT is read into the same volume and geometry as the classic series
it came from; frames that do not form one volume are refused naming the file and frame."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from ct_fixtures import HIGHDICOM_HEADER, lps_affine, nifti_patient, write_enhanced, write_series
from pydicom.uid import generate_uid
from xray_fixtures import vendor_file

from datamodules import CTDataModule
from datamodules.io.errors import DataError
from datamodules.readers.dicom_series import read_dicom_series

OBLIQUE = (0.0, 1.0, 0.0, 0.0, 0.0, -1.0)  # a sagittal-like plane: normal along -x


def _hu(shape=(6, 5, 7), seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(-1000, 400, shape).astype(float)


@pytest.mark.parametrize("orientation", [None, OBLIQUE], ids=["axial", "oblique"])
def test_highdicom_legacy_conversion_gives_the_same_volume_and_affine(tmp_path, orientation):
    from highdicom.legacy import LegacyConvertedEnhancedCTImage

    hu = _hu()
    extra = {} if orientation is None else {"orientation": orientation}
    paths = write_series(
        tmp_path / "classic",
        hu,
        StudyInstanceUID=generate_uid(),
        FrameOfReferenceUID=generate_uid(),
        **extra,
        **HIGHDICOM_HEADER,
    )
    shuffled = [pydicom.dcmread(p) for p in np.random.default_rng(1).permutation(paths)]
    enhanced = LegacyConvertedEnhancedCTImage(shuffled, generate_uid(), 2, generate_uid(), 1)
    assert enhanced.NumberOfFrames == len(hu)
    enhanced.save_as(tmp_path / "enhanced.dcm")
    volume, affine = read_dicom_series(paths)
    volume_e, affine_e = read_dicom_series([tmp_path / "enhanced.dcm"])
    assert volume.shape == (7, 5, 6)  # columns x rows x slices
    np.testing.assert_array_equal(volume_e, volume)
    np.testing.assert_allclose(affine_e, affine, atol=1e-6)


def _by_hand(tmp_path, hu, order, **kwargs):
    """``hu`` (slices x rows x columns, slice k at z = 30 + 2.5 k) as an enhanced file whose
    frames come in ``order``, each with its own RescaleIntercept."""
    intercepts = [-1024.0 - 10 * k for k in range(len(hu))]
    positions = [(-10.0, -20.0, 30.0 + 2.5 * k) for k in range(len(hu))]
    return write_enhanced(
        tmp_path / "enh.dcm",
        np.stack([hu[k] - intercepts[k] for k in order]),
        [positions[k] for k in order],
        [intercepts[k] for k in order],
        **kwargs,
    )


def test_per_frame_rescale_and_shuffled_frames(tmp_path):
    hu = _hu(seed=2)
    order = [3, 0, 5, 1, 4, 2]
    volume, affine = read_dicom_series([_by_hand(tmp_path, hu, order)])
    np.testing.assert_array_equal(volume, hu.transpose(2, 1, 0))  # sorted along the normal
    expected = lps_affine(spacing=(0.6, 0.8, 2.5))  # column step 0.6, row step 0.8, 2.5 mm
    np.testing.assert_allclose(affine, expected, atol=1e-6)
    classic, classic_affine = read_dicom_series(write_series(tmp_path / "classic", hu))
    np.testing.assert_array_equal(volume, classic)
    np.testing.assert_allclose(affine, classic_affine, atol=1e-6)


def test_inconsistent_frames_are_refused_naming_the_file_and_frame(tmp_path):
    hu = _hu(seed=3)
    orientations = [list((1.0, 0.0, 0.0, 0.0, 1.0, 0.0))] * len(hu)
    orientations[2] = [1.0, 0.0, 0.0, 0.0, 0.9, 0.4359]  # one tilted frame
    path = _by_hand(tmp_path, hu, range(len(hu)), per_frame_orientation=orientations)
    with pytest.raises(DataError, match=r"enh\.dcm frame 3: ImageOrientationPatient .* differs"):
        read_dicom_series([path])
    # two stacks (or time points) in one file: frames share positions
    intercepts = [-1024.0] * 4
    stacked = write_enhanced(
        tmp_path / "stacks.dcm",
        np.zeros((4, 5, 7)),
        [(0, 0, 0), (0, 0, 2.5), (0, 0, 0), (0, 0, 2.5)],
        intercepts,
    )
    with pytest.raises(DataError, match=r"stacks\.dcm frame \d: two slices at the same posit"):
        read_dicom_series([stacked])
    gap = write_enhanced(
        tmp_path / "gap.dcm",
        np.zeros((4, 5, 7)),
        [(0, 0, 0), (0, 0, 2.5), (0, 0, 5), (0, 0, 10)],
        intercepts,
    )
    with pytest.raises(DataError, match=r"gap\.dcm frame 4: slice gap of 5\.00 mm"):
        read_dicom_series([gap])
    classic = write_series(tmp_path / "classic", hu[:2])
    with pytest.raises(DataError, match=r"enh\.dcm: a multi-frame \(enhanced\) file among 3"):
        read_dicom_series([*classic, path])


def test_a_patient_folder_may_hold_one_enhanced_file(tmp_path):
    hu = _hu(shape=(4, 5, 7), seed=4)
    label = np.zeros((7, 5, 4), np.uint8)  # i (columns), j (rows), k (slices), LPS
    label[1:3, 2:4, 1:3] = 1
    for name in ("classic", "enhanced"):
        folder = tmp_path / "data" / name
        nifti_patient(folder, np.zeros((7, 5, 4)), label, affine=lps_affine((0.6, 0.8, 2.5)))
        (folder / "image.nii.gz").unlink()  # keep the label: the image is DICOM
    write_series(tmp_path / "data" / "classic" / "dicom", hu)
    _by_hand(tmp_path / "data" / "enhanced", hu, [2, 0, 3, 1])
    dm = CTDataModule(data_dir=str(tmp_path / "data"), cache_dir=str(tmp_path / "c"))
    cases = dm.discover_cases(tmp_path / "data")
    classic, enhanced = (dm.load_case(c) for c in cases)
    np.testing.assert_array_equal(enhanced.images, classic.images)
    np.testing.assert_array_equal(enhanced.masks, classic.masks)
    assert enhanced.masks.sum() == 8 and enhanced.info["layout"] == "enhanced dicom"
    assert classic.info["layout"] == "dicom series"
    np.testing.assert_allclose(enhanced.info["spacing"], (0.6, 0.8, 2.5))


def test_the_vendor_enhanced_ct_sample(tmp_path):
    """pydicom-data's eCT_Supplemental.dcm: 2 frames of 512 x 512, 10 mm apart, frame 1 the
    more caudal one along its normal (orientation -x, +y)."""
    path = vendor_file("eCT_Supplemental.dcm")
    volume, affine = read_dicom_series([path])
    assert volume.shape == (512, 512, 2)
    np.testing.assert_allclose(np.linalg.norm(affine[:3, :3], axis=0), [0.388672, 0.388672, 10])
    stored = pydicom.dcmread(path).pixel_array.astype(np.float32) - 1024  # intercept -1024
    np.testing.assert_array_equal(volume[:, :, 0], stored[1].T)  # z -149 is first along -z
    np.testing.assert_array_equal(volume[:, :, 1], stored[0].T)
    np.testing.assert_allclose(affine[:3, 3], [-99.5, 301.5, -149.0])  # LPS -> RAS
