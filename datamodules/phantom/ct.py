"""Synthetic chest CT with pneumothorax, written as DICOM series and NIfTI pairs.

Each patient is a chest volume in Hounsfield units (air, subcutaneous fat, muscle, ribs,
sternum, spine, lungs with vessel-like texture, heart, mediastinum, great vessels, trachea,
diaphragm domes) drawn slice by slice in the LPS voxel order of ``readers.nifti`` (x to
the patient's left, y posterior, z superior). A pneumothorax is an air pocket without
vessels between the chest wall and a partly collapsed lung with a visible pleural line,
over a run of slices. Deterministic by seed; the anatomy lives in ``phantom.ct_anatomy``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.orientations import apply_orientation, axcodes2ornt, inv_ornt_aff, ornt_transform
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from datamodules.phantom.ct_anatomy import PatientAnatomy, draw_patient
from datamodules.readers.dicom_series import LPS_TO_RAS
from datamodules.readers.nifti import CANONICAL

FAMILY = ["OKAFOR", "LINDQVIST", "TANAKA", "MORETTI", "KOWALSKA", "NGUYEN", "HALVORSEN"]
GIVEN = ["ADAEZE", "BENEDIKT", "CHIYO", "DARIO", "EWA", "PHUONG", "SIGRID", "TOMAS"]
DICOM_ORIENTATIONS = [("L", "P", "S"), ("R", "P", "I")]  # head first, feet first supine
# (image orientation, label orientation, how HU are stored, file suffix)
NIFTI_VARIANTS = [
    (("R", "A", "S"), ("R", "A", "S"), "int16", ".nii.gz"),
    (("L", "P", "S"), ("R", "A", "S"), "scaled", ".nii.gz"),  # label re-saved by another tool
    (("L", "A", "S"), ("L", "A", "S"), "float32", ".nii"),
    (("R", "A", "I"), ("A", "R", "S"), "int16", ".nii.gz"),  # label axes swapped and flipped
]


def _identity(rng: np.random.Generator, index: int) -> dict:
    """Fake but realistic identifiers: the privacy tests look for them in every output."""
    mrn = f"{rng.integers(10**7, 10**8)}"
    return {
        "PatientName": f"{FAMILY[rng.integers(len(FAMILY))]}^{GIVEN[rng.integers(len(GIVEN))]}",
        "PatientID": mrn,
        "PatientBirthDate": f"{rng.integers(1935, 2004)}{rng.integers(1, 13):02d}"
        f"{rng.integers(1, 29):02d}",
        "AccessionNumber": f"A{rng.integers(10**8, 10**9)}",
        # real folder names are often the MRN: keep some that way
        "folder": [mrn, f"MRN{mrn}", f"chest_ct_{index:03d}"][index % 3],
    }


def _reorient(volume: np.ndarray, affine: np.ndarray, axcodes: tuple[str, ...]):
    """An LPS-ordered (i, j, k) array stored in another orientation: (array, affine)."""
    transform = ornt_transform(axcodes2ornt(CANONICAL), axcodes2ornt(axcodes))
    out = apply_orientation(volume, transform)
    return np.ascontiguousarray(out), affine @ inv_ornt_aff(transform, volume.shape)


def _save_nifti(path: Path, data: np.ndarray, affine: np.ndarray, storage: str) -> None:
    if storage == "scaled":  # stored = HU + 1024, scl_inter = -1024, as some converters write
        image = nib.Nifti1Image(np.round(data + 1024).astype(np.int16), affine)
        image.header.set_slope_inter(1.0, -1024.0)
    elif storage == "int16":
        image = nib.Nifti1Image(np.round(data).astype(np.int16), affine)
    else:
        image = nib.Nifti1Image(data.astype(np.dtype(storage)), affine)
    image.set_qform(affine, code=1)  # scanner-anatomical, as ITK-SNAP writes
    image.set_sform(affine, code=1)
    nib.save(image, path)


def _dicom_base(ident: dict, uid: Callable[[str], str], shape: tuple[int, int]) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = CTImageStorage
    ds.Modality, ds.Manufacturer, ds.BodyPartExamined = "CT", "PHANTOM", "CHEST"
    for keyword in ("PatientName", "PatientID", "PatientBirthDate", "AccessionNumber"):
        setattr(ds, keyword, ident[keyword])
    ds.PatientSex, ds.StudyDate, ds.StudyTime = "O", "20240312", "101500"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = uid("study"), uid("series")
    ds.FrameOfReferenceUID = uid("frame")
    ds.SeriesNumber, ds.SeriesDescription = 3, "CHEST LUNG"
    ds.KVP, ds.ConvolutionKernel = 120, "LUNG"
    ds.Rows, ds.Columns = shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = -1024, 1, "HU"
    ds.WindowCenter, ds.WindowWidth = -600, 1500
    return ds


def _write_dicom_series(
    folder: Path, hu: np.ndarray, affine: np.ndarray, ident: dict, rng, uid
) -> None:
    """One CT Image Storage file per slice k of an (i, j, k) HU array, names shuffled."""
    folder.mkdir(parents=True, exist_ok=True)
    lps = LPS_TO_RAS @ affine
    spacing = np.linalg.norm(lps[:3, :3], axis=0)
    ds = _dicom_base(ident, uid, (hu.shape[1], hu.shape[0]))
    directions = np.concatenate([lps[:3, 0] / spacing[0], lps[:3, 1] / spacing[1]])
    ds.ImageOrientationPatient = [round(float(v), 6) for v in directions]
    ds.PixelSpacing = [round(float(spacing[1]), 6), round(float(spacing[0]), 6)]
    ds.SliceThickness = round(float(spacing[2]), 6)
    stored = np.clip(np.round(hu) + 1024, -32768, 32767).astype(np.int16)
    names = rng.permutation(10**6)[: hu.shape[2]]
    suffix = ".dcm" if rng.random() < 0.5 else ""
    instance_order = rng.permutation(2)[0]  # scanners number slices either way along z
    for k in range(hu.shape[2]):
        position = lps @ np.array([0.0, 0.0, k, 1.0])
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = uid(f"slice{k}")
        ds.InstanceNumber = k + 1 if instance_order == 0 else hu.shape[2] - k
        ds.ImagePositionPatient = [round(float(v), 4) for v in position[:3]]
        ds.SliceLocation = round(float(position[2]), 4)
        ds.PixelData = np.ascontiguousarray(stored[:, :, k].T).tobytes()
        ds.save_as(folder / f"IM{names[k]:06d}{suffix}", enforce_file_format=True)


def simulate_patient(seed: int, index: int, size: int, slices: int):
    """Patient ``index`` of the phantom drawn with ``seed``: (anatomy, HU, label, affine,
    identifiers). HU (float32) and label (uint8: 0, 1 right, 2 left side) are in LPS voxel
    order (i, j, k); the affine maps them to RAS+ mm. Files are written from exactly these."""
    rng = np.random.default_rng([seed, index])
    anatomy = PatientAnatomy.draw(rng, index)
    hu, label, affine = draw_patient(anatomy, size, slices, rng)
    return anatomy, hu, label, affine, _identity(rng, index)


def _write_patient(out: Path, seed: int, p: int, size: int, slices: int, as_dicom: bool):
    anatomy, hu, label, affine, ident = simulate_patient(seed, p, size, slices)
    rng = np.random.default_rng([seed, p, 1])  # file names and numbering
    folder = out / ident["folder"]
    folder.mkdir()
    if as_dicom:
        axcodes = DICOM_ORIENTATIONS[(p // 2) % len(DICOM_ORIENTATIONS)]
        image, image_affine = _reorient(hu, affine, axcodes)
        series = folder if p % 4 < 2 else folder / "DICOM" / "S0003"

        def uid(what: str) -> str:
            return generate_uid(entropy_srcs=[str(seed), str(p), what])

        _write_dicom_series(series, image, image_affine, ident, rng, uid)
        label_axcodes, suffix = axcodes, ".nii.gz"  # ITK-SNAP saves the image's geometry
    else:
        image_axcodes, label_axcodes, storage, suffix = NIFTI_VARIANTS[
            (p // 2) % len(NIFTI_VARIANTS)
        ]
        image, image_affine = _reorient(hu, affine, image_axcodes)
        _save_nifti(folder / f"image{suffix}", image, image_affine, storage)
    # label values as tools write them: one per side where both are affected, else 1 or 255
    values = (0, 1, 2) if len(anatomy.ptx) == 2 else [(0, 1, 1), (0, 255, 255)][(p // 2) % 2]
    label = np.asarray(values, dtype=np.uint8)[label]
    lab, lab_affine = _reorient(label, affine, label_axcodes)
    _save_nifti(folder / f"label{suffix}", lab, lab_affine, "uint8")


def generate_ct_phantom(
    out: Path,
    *,
    patients: int = 8,
    seed: int = 0,
    size: int = 512,
    slices: int = 64,
    formats: str = "mixed",
) -> None:
    """Write ``patients`` chest CTs (``slices`` axial slices of ``size`` x ``size`` pixels)
    with pneumothorax labels into ``out``, one folder per patient.

    ``formats``: "mixed" (even patients as DICOM series, odd as NIfTI), "dicom" or "nifti".
    Every patient folder holds ``label.nii.gz`` (or ``.nii``) aligned with its image in
    physical space; DICOM slices have shuffled names and carry fake identifiers.
    """
    if formats not in ("mixed", "dicom", "nifti"):
        raise ValueError(f"formats must be 'mixed', 'dicom' or 'nifti', got {formats!r}")
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise ValueError(f"{out} is not empty; write the phantom into a new folder")
    out.mkdir(parents=True, exist_ok=True)
    for p in range(patients):
        as_dicom = formats == "dicom" or (formats == "mixed" and p % 2 == 0)
        _write_patient(out, seed, p, size, slices, as_dicom)
