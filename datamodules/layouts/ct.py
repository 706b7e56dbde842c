"""Finding chest CT data on disk: patient folders or a manifest CSV.

Default layout, one folder per patient (the folder name is hashed into the patient key)::

    <data_dir>/<patient>/image.nii.gz      a NIfTI volume (or image.nii), or else
    <data_dir>/<patient>/**/<any name>     the DICOM slices of one series, in any sub-folders,
                                           or one Enhanced (multi-frame) CT file
    <data_dir>/<patient>/label.nii.gz      the pneumothorax label (or label.nii)

or a manifest CSV (``<data_dir>/manifest.csv``, or ``manifest=``) with the header
``patient,image,label``: ``image`` is a NIfTI file or a folder of DICOM slices, ``label`` a
NIfTI file; relative paths are relative to the CSV. See ``docs/data.md`` ("CT").

Each case's ``files[0]`` is its label, the rest its image file(s); ``meta["format"]`` is
``"nifti"`` or ``"dicom"``.
"""

from __future__ import annotations

import csv
from pathlib import Path

from datamodules.io.errors import DataError
from datamodules.layouts import Case
from datamodules.layouts.privacy import anonymous_key
from datamodules.readers.dicom_series import series_files

NIFTI_SUFFIXES = (".nii.gz", ".nii")
MANIFEST_COLUMNS = ("patient", "image", "label")


def discover_ct(root: Path, manifest: str | None = None) -> tuple[list[Case], list[DataError]]:
    """Every patient under ``root`` (from ``manifest``, else ``root/manifest.csv`` when there,
    else the patient folders), and a DataError for each one that cannot be a case. Finding
    nothing at all raises."""
    path = manifest_path(root, manifest)
    cases, errors = manifest_cases(path) if path else folder_cases(root)
    if not cases and not errors:
        raise DataError(
            "no CT patients found: expected one folder per patient holding a DICOM series "
            "or image.nii.gz plus label.nii.gz, or a manifest.csv (patient,image,label)",
            path=path or root,
        )
    return cases, errors


def manifest_path(root: Path, manifest: str | None = None) -> Path | None:
    """The manifest read: ``manifest`` (relative to ``root`` unless absolute), else
    ``root/manifest.csv`` if it exists, else None (the folder layout)."""
    if manifest is not None:
        path = Path(manifest)
        return path if path.is_absolute() else root / path
    default = root / "manifest.csv"
    return default if default.is_file() else None


def _find(folder: Path, stem: str) -> Path | None:
    """``<stem>.nii.gz`` or ``<stem>.nii`` in ``folder``, if there."""
    for suffix in NIFTI_SUFFIXES:
        if (folder / f"{stem}{suffix}").is_file():
            return folder / f"{stem}{suffix}"
    return None


def _image_case(patient: str, image: Path, label: Path, row: tuple[Path, int] | None) -> Case:
    """A case from an image (NIfTI file or DICOM folder) and a label; ``files[0]`` is the label.

    ``row`` is (manifest, row number) when the case comes from a manifest: errors name it.
    """
    where = {"path": row[0], "row": row[1]} if row else {"path": image}
    if image.is_dir():
        slices = series_files(image, exclude=[label])
        if not slices:
            raise DataError(
                f"no DICOM slices and no image.nii[.gz] in {image}; add the patient's volume "
                "or remove the patient",
                patient=patient,
                **where,
            )
        return Case(patient, (label, *slices), meta={"format": "dicom"})
    if not image.is_file():
        raise DataError(f"image {image} does not exist", patient=patient, **where)
    return Case(patient, (label, image), meta={"format": "nifti"})


def folder_cases(root: Path) -> tuple[list[Case], list[DataError]]:
    """One case per patient folder of ``root`` (hidden folders left out), sorted by name."""
    cases, errors = [], []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and p.name[0] != "."):
        try:
            cases.append(folder_case(folder))
        except DataError as err:
            errors.append(err)
    return cases, errors


def folder_case(folder: Path) -> Case:
    """The case of one patient folder: its label and its NIfTI volume or DICOM series."""
    patient = anonymous_key(folder.name)
    label = _find(folder, "label")
    if label is None:
        raise DataError(
            "patient folder has no label.nii[.gz]; add the pneumothorax label (an "
            "empty label for a patient without pneumothorax) or remove the folder",
            path=folder,
            patient=patient,
        )
    return _image_case(patient, _find(folder, "image") or folder, label, None)


def manifest_cases(path: Path) -> tuple[list[Case], list[DataError]]:
    """One case per row of the manifest CSV; a malformed CSV or header raises."""
    try:
        with open(path, newline="") as fh:
            reader = csv.DictReader(fh, skipinitialspace=True)
            rows = list(reader)
            header = [c.strip() for c in reader.fieldnames or []]
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise DataError(f"cannot read the manifest ({err})", path=path) from err
    if sorted(header) != sorted(MANIFEST_COLUMNS):
        raise DataError(
            f"manifest header is {header}; expected exactly {','.join(MANIFEST_COLUMNS)}",
            path=path,
        )
    cases, errors, seen = [], [], {}
    for number, row in enumerate(rows, start=2):  # row 1 is the header
        try:
            cases.append(manifest_case(path, number, row, seen))
        except DataError as err:
            errors.append(err)
    return cases, errors


def manifest_case(path: Path, number: int, row: dict, seen: dict) -> Case:
    """The case of manifest row ``number``; ``seen`` (patient key -> row) catches repeats."""
    values = {k.strip(): (v or "").strip() for k, v in row.items() if k}
    if not all(values.get(c) for c in MANIFEST_COLUMNS):
        raise DataError(
            "manifest row has an empty field; give patient, image and label",
            path=path,
            row=number,
        )
    patient = anonymous_key(values["patient"])
    if patient in seen:
        raise DataError(
            f"patient listed twice (also row {seen[patient]}): one volume per patient",
            path=path,
            row=number,
        )
    seen[patient] = number
    image, label = (path.parent / values[c] for c in ("image", "label"))
    if not label.is_file():
        raise DataError(
            f"label file {label} does not exist", path=path, row=number, patient=patient
        )
    return _image_case(patient, image, label, (path, number))
