"""Hand-made CT files for the tests: DICOM slices and NIfTI volumes written from scratch with
pydicom and nibabel, independently of the phantom's writers, so a reader bug cannot hide
behind a matching writer bug."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.orientations import apply_orientation, axcodes2ornt, inv_ornt_aff, ornt_transform
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)  # head-first supine: rows to the left, columns posterior
# what highdicom requires of a classic CT slice beyond its geometry (to convert it to an
# enhanced image, or to reference it from a SEG)
HIGHDICOM_HEADER = {
    "PatientID": "12345678",
    "PatientName": "DOE^JANE",
    "StudyDate": "20240101",
    "StudyTime": "120000",
    "Manufacturer": "TEST",
    "SeriesNumber": 1,
}


def write_slice(path: Path, stored: np.ndarray, **tags) -> Path:
    """One CT Image Storage file holding ``stored`` (rows x columns) and the given tags.

    ``PixelRepresentation`` follows the array's dtype (int16: 1, uint16: 0).
    """
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.Modality = "CT"
    ds.Rows, ds.Columns = stored.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
    ds.PixelRepresentation = 1 if stored.dtype == np.int16 else 0
    for keyword, value in tags.items():
        if value is not None:
            setattr(ds, keyword, value)
    ds.PixelData = np.ascontiguousarray(stored).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def write_series(
    folder: Path,
    hu: np.ndarray,
    *,
    origin: Sequence[float] = (-10.0, -20.0, 30.0),
    orientation: Sequence[float] = AXIAL,
    spacing: tuple[float, float] = (0.8, 0.6),
    step: float = 2.5,
    intercept: float = -1024.0,
    slope: float = 1.0,
    dtype=np.int16,
    instance_numbers: Sequence[int] | None = None,
    seed: int = 0,
    **tags,
) -> list[Path]:
    """Write ``hu`` (slices x rows x columns, slice 0 first along the normal) as a series.

    File names are random, so their order says nothing; slice ``k`` sits at ``origin + k *
    step * normal`` (LPS mm). Returns the paths in slice order.
    """
    rng = np.random.default_rng(seed)
    normal = np.cross(orientation[:3], orientation[3:])
    tags.setdefault("SeriesInstanceUID", generate_uid())
    numbers = instance_numbers or rng.permutation(len(hu)) + 1  # shuffled unless given
    paths = []
    for k, (plane, name) in enumerate(zip(hu, rng.permutation(10**6)[: len(hu)], strict=True)):
        stored = np.round((plane - intercept) / slope).astype(dtype)
        position = np.asarray(origin) + k * step * normal
        paths.append(
            write_slice(
                folder / f"{name:06d}.dcm",
                stored,
                ImagePositionPatient=[float(x) for x in position],
                ImageOrientationPatient=list(orientation),
                PixelSpacing=list(spacing),
                SliceThickness=step,
                RescaleIntercept=intercept,
                RescaleSlope=slope,
                InstanceNumber=int(numbers[k]),
                **tags,
            )
        )
    return paths


def lps_affine(spacing=(0.6, 0.8, 2.5), origin=(-10.0, -20.0, 30.0)) -> np.ndarray:
    """RAS+ affine of a volume stored in LPS voxel order (i left, j posterior, k superior)."""
    lps = np.diag([*spacing, 1.0])
    lps[:3, 3] = origin
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps


def reoriented(data: np.ndarray, affine: np.ndarray, axcodes) -> tuple[np.ndarray, np.ndarray]:
    """The same physical volume, given in LPS voxel order, stored in orientation ``axcodes``."""
    transform = ornt_transform(axcodes2ornt(("L", "P", "S")), axcodes2ornt(tuple(axcodes)))
    return apply_orientation(data, transform), affine @ inv_ornt_aff(transform, data.shape)


def write_nifti(path: Path, data: np.ndarray, affine: np.ndarray, slope=None, inter=None):
    """Save ``data`` as is (its dtype) with an optional scl_slope/scl_inter."""
    image = nib.Nifti1Image(np.asarray(data), affine)
    if slope is not None:
        image.header.set_slope_inter(slope, inter)
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(image, path)
    return path


def nifti_patient(folder: Path, hu: np.ndarray, label: np.ndarray, affine=None, axcodes="LPS"):
    """A patient folder with image.nii.gz (int16 HU) and label.nii.gz (uint8), both given in
    LPS voxel order and stored in orientation ``axcodes``."""
    affine = lps_affine() if affine is None else affine
    image, image_affine = reoriented(np.asarray(hu, dtype=np.int16), affine, axcodes)
    mask, mask_affine = reoriented(np.asarray(label, dtype=np.uint8), affine, axcodes)
    write_nifti(folder / "image.nii.gz", image, image_affine)
    write_nifti(folder / "label.nii.gz", mask, mask_affine)
    return folder


def write_enhanced(
    path: Path,
    stored: np.ndarray,
    positions: Sequence[Sequence[float]],
    intercepts: Sequence[float],
    *,
    orientation: Sequence[float] = AXIAL,
    spacing: tuple[float, float] = (0.8, 0.6),
    per_frame_orientation: Sequence[Sequence[float]] | None = None,
) -> Path:
    """An Enhanced CT file written by hand: frames ``stored`` (frames x rows x columns, int16)
    in the given order, each with its position and RescaleIntercept in per-frame functional
    groups; orientation and pixel measures shared (or orientation per frame when given)."""
    from pydicom.sequence import Sequence as DicomSequence
    from pydicom.uid import EnhancedCTImageStorage

    def item(**attributes) -> Dataset:
        ds = Dataset()
        for keyword, value in attributes.items():
            setattr(ds, keyword, value)
        return ds

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = EnhancedCTImageStorage
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = EnhancedCTImageStorage
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = "CT"
    ds.NumberOfFrames = len(stored)
    ds.Rows, ds.Columns = stored.shape[1:]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    shared = item(PixelMeasuresSequence=DicomSequence([item(PixelSpacing=list(spacing))]))
    if per_frame_orientation is None:
        shared.PlaneOrientationSequence = DicomSequence(
            [item(ImageOrientationPatient=list(orientation))]
        )
    ds.SharedFunctionalGroupsSequence = DicomSequence([shared])
    frames = []
    for k, (position, intercept) in enumerate(zip(positions, intercepts, strict=True)):
        frame = item(
            PlanePositionSequence=DicomSequence(
                [item(ImagePositionPatient=[float(v) for v in position])]
            ),
            PixelValueTransformationSequence=DicomSequence(
                [item(RescaleIntercept=intercept, RescaleSlope=1.0, RescaleType="HU")]
            ),
        )
        if per_frame_orientation is not None:
            frame.PlaneOrientationSequence = DicomSequence(
                [item(ImageOrientationPatient=list(per_frame_orientation[k]))]
            )
        frames.append(frame)
    ds.PerFrameFunctionalGroupsSequence = DicomSequence(frames)
    ds.PixelData = np.ascontiguousarray(stored.astype(np.int16)).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def check_dicom_seg(path, files, expected):
    """highdicom reads the SEG back: it references the source series, one frame per slice
    with pneumothorax, each equal to the mask of its source slice."""
    import highdicom as hd
    import pydicom

    seg = hd.seg.segread(path)
    sources = {ds.SOPInstanceUID: ds for ds in map(pydicom.dcmread, files)}
    series = {ds.SeriesInstanceUID for ds in sources.values()}
    referenced = {item.SeriesInstanceUID for item in seg.ReferencedSeriesSequence}
    assert referenced == series and seg.Modality == "SEG"
    assert seg.NumberOfFrames == int(expected.any(axis=(0, 1)).sum())
    frames = seg.pixel_array.reshape(int(seg.NumberOfFrames), seg.Rows, seg.Columns)
    positions = [float(ds.ImagePositionPatient[2]) for ds in sources.values()]
    for frame, item in zip(frames, seg.PerFrameFunctionalGroupsSequence, strict=True):
        uid = item.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        z = float(sources[uid].ImagePositionPatient[2])
        k = sorted(positions).index(z)  # read_dicom_series sorts slices along the normal
        assert np.array_equal(frame.astype(bool), expected[:, :, k].T)
