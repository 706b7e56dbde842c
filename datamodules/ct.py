"""Chest CT pneumothorax data (EFA-Net paper): one sample per axial slice.

Default layout, one folder per patient (the folder name is hashed into the patient key)::

    <data_dir>/<patient>/image.nii.gz      a NIfTI volume (or image.nii), or else
    <data_dir>/<patient>/**/<any name>     the DICOM slices of one series, in any sub-folders,
                                           or one Enhanced (multi-frame) CT file
    <data_dir>/<patient>/label.nii.gz      the pneumothorax label (or label.nii)

or a manifest CSV (``<data_dir>/manifest.csv``, or ``manifest=``) with the header
``patient,image,label``: ``image`` is a NIfTI file or a folder of DICOM slices, ``label`` a
NIfTI file; relative paths are relative to the CSV. See ``docs/data.md`` ("CT").
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from datamodules.base import Case, SegmentationDataModule
from datamodules.cache import CaseArrays
from datamodules.errors import DataError
from datamodules.privacy import anonymous_key
from datamodules.readers.dicom_series import read_dicom_series, series_files
from datamodules.readers.nifti import aligned_label, axial_slices, read_nifti_volume, to_canonical
from datamodules.splits import Split, split_patients

log = logging.getLogger("ptx.data.ct")

READER_VERSION = 2  # bump when reading changes the cached arrays (orientation, HU, labels)
NIFTI_SUFFIXES = (".nii.gz", ".nii")
MANIFEST_COLUMNS = ("patient", "image", "label")


def lung_window(
    hu: np.ndarray, width: float = 1500.0, level: float = -600.0, out: np.ndarray | None = None
) -> np.ndarray:
    """HU -> [0, 1] float32: ``level - width/2`` maps to 0, ``level + width/2`` to 1, clipped.

    With the paper's lung window (1500, -600): -1350 HU -> 0, -600 -> 0.5, +150 -> 1.
    ``out`` (float32, same shape; may be ``hu`` itself) saves a volume-sized copy.
    """
    hu = np.asarray(hu, dtype=np.float32)
    out = np.empty_like(hu) if out is None else out
    np.subtract(hu, np.float32(level - width / 2.0), out=out)
    np.divide(out, np.float32(width), out=out)
    return np.clip(out, 0.0, 1.0, out=out)


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


class CTDataModule(SegmentationDataModule):
    """Chest CT volumes -> lung-windowed axial slices in [0, 1] with pneumothorax masks.

    Args:
        window_width, window_level: the display window in HU mapped to [0, 1] (paper: lung
            window 1500 / -600); part of the preprocessing settings, so changing it rebuilds
            the cache.
        manifest: CSV ``patient,image,label`` to read instead of the folder layout (relative
            to ``data_dir`` if given, else its folder becomes ``data_dir``);
            ``<data_dir>/manifest.csv`` is used when present.
        **kwargs: the common keywords of :class:`SegmentationDataModule` (``data_dir``,
            ``image_size``, ``batch_size``, ``seed``, ``split_file``, ``folds``, ``phantom``, ...).

    Every axial slice is one sample with id ``<patient key>-z<slice index>`` (slices counted
    from inferior); patients are split 50/4/6 (the paper) unless ``split_fractions``,
    ``folds`` or ``split_file`` say otherwise. Without ``data_dir`` a moderate phantom is
    generated (``DEFAULT_PHANTOM``, overridden key by key by ``phantom``).
    """

    modality = "ct"
    native_size = 512
    default_fractions = (50, 4, 6)
    DEFAULT_PHANTOM = {"patients": 14, "size": 160, "slices": 40}

    def __init__(
        self,
        data_dir: str | None = None,
        *,
        window_width: float = 1500.0,
        window_level: float = -600.0,
        manifest: str | None = None,
        **kwargs,
    ) -> None:
        if manifest is not None and data_dir is None:  # the manifest alone names the data
            manifest = str(Path(manifest).resolve())
            data_dir = str(Path(manifest).parent)
        super().__init__(data_dir, **kwargs)
        if window_width <= 0:
            raise ValueError(f"window_width must be positive HU, got {window_width}")
        self.window_width = float(window_width)
        self.window_level = float(window_level)
        self.manifest = manifest
        self.phantom = {**self.DEFAULT_PHANTOM, **self.phantom}

    def preprocessing_settings(self) -> dict:
        return {
            **super().preprocessing_settings(),
            "window_width": self.window_width,
            "window_level": self.window_level,
            "ct_reader": READER_VERSION,
        }

    # ---- discovery ----------------------------------------------------------------------
    def _manifest_path(self, root: Path) -> Path | None:
        if self.manifest is not None:
            path = Path(self.manifest)
            return path if path.is_absolute() else root / path
        default = root / "manifest.csv"
        return default if default.is_file() else None

    def discover_entries(self, root: Path) -> tuple[list[Case], list[DataError]]:
        manifest = self._manifest_path(root)
        if manifest:
            cases, errors = self._manifest_cases(manifest)
        else:
            cases, errors = self._folder_cases(root)
        if not cases and not errors:
            raise DataError(
                "no CT patients found: expected one folder per patient holding a DICOM series "
                "or image.nii.gz plus label.nii.gz, or a manifest.csv (patient,image,label)",
                path=manifest or root,
            )
        return cases, errors

    def _folder_cases(self, root: Path) -> tuple[list[Case], list[DataError]]:
        cases, errors = [], []
        for folder in sorted(p for p in root.iterdir() if p.is_dir() and p.name[0] != "."):
            try:
                cases.append(self._folder_case(folder))
            except DataError as err:
                errors.append(err)
        return cases, errors

    @staticmethod
    def _folder_case(folder: Path) -> Case:
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

    def _manifest_cases(self, path: Path) -> tuple[list[Case], list[DataError]]:
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
                cases.append(self._manifest_case(path, number, row, seen))
            except DataError as err:
                errors.append(err)
        return cases, errors

    @staticmethod
    def _manifest_case(path: Path, number: int, row: dict, seen: dict) -> Case:
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

    # ---- decoding -----------------------------------------------------------------------
    def load_case(self, case: Case) -> CaseArrays:
        label_path, image_files = case.files[0], case.files[1:]
        if case.meta["format"] == "nifti":
            hu, affine = read_nifti_volume(image_files[0])
            layout = "nifti"
        else:
            hu, affine = read_dicom_series(image_files)
            layout = "enhanced dicom" if len(image_files) == 1 else "dicom series"
        hu, affine = to_canonical(hu, affine)
        info = {
            "layout": layout,
            "shape": hu.shape,  # canonical (left, posterior, superior) voxel axes
            "spacing": tuple(float(v) for v in np.linalg.norm(affine[:3, :3], axis=0)),
        }
        mask = aligned_label(label_path, hu.shape, affine, patient=case.patient)
        slices = axial_slices(hu)  # float32, ours: windowed in place (volumes are large)
        images = lung_window(slices, self.window_width, self.window_level, out=slices)
        masks = axial_slices(mask)
        ids = [f"{case.patient}-z{k:04d}" for k in range(len(images))]
        log.debug(
            "patient %s: %d slices (%d with pneumothorax) from %s",
            case.patient,
            len(ids),
            int(masks.any(axis=(1, 2)).sum()),
            case.meta["format"],
        )
        return CaseArrays(images=images, masks=masks, ids=ids, info=info)

    def split_cases(self, cases: Sequence[Case]) -> Split:
        return split_patients([c.patient for c in cases], self.split_fractions, seed=self.seed)

    def generate_phantom(self, out: Path) -> None:
        from datamodules.phantom_ct import generate_ct_phantom

        generate_ct_phantom(out, **{"seed": self.seed, **self.phantom})
