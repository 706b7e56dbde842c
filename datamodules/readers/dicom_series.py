"""A CT volume from a folder of DICOM slices: Hounsfield units and the voxel-to-world affine.

Slices are ordered by ImagePositionPatient projected on the slice normal (the cross product
of the two ImageOrientationPatient directions), never by file name; without positions they
fall back to InstanceNumber. The volume is returned in NIfTI voxel order ``(i, j, k)`` =
(column, row, slice) with a 4 x 4 affine to RAS+ millimetres, the geometry ITK-SNAP gives a
label drawn on the series, so the label NIfTI can be checked against it voxel for voxel.
An Enhanced (multi-frame) CT file takes the same path, one header per frame
(``readers.dicom_enhanced``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom

from datamodules.io.errors import DataError
from datamodules.readers.dicom import pixel_array, read_dicom
from datamodules.readers.dicom_enhanced import frame_headers, frame_pixels, is_multiframe

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
SKIPPED_NAMES = {"DICOMDIR"}  # a media index, not a slice
ORIENTATION_TOL = 1e-3  # direction cosines equal within this
SPACING_TOL = 0.05  # slice gaps may differ by 5% (or 0.05 mm) before the series is refused


def series_files(folder: str | Path, exclude: Sequence[str | Path] = ()) -> list[Path]:
    """Every candidate slice file under ``folder`` (recursive), sorted by path.

    Hidden files, ``DICOMDIR`` and the paths in ``exclude`` (e.g. the label NIfTI) are left
    out; anything else must be a DICOM slice, so a stray file is reported, not skipped.
    """
    skip = {Path(p).resolve() for p in exclude}
    return sorted(
        p
        for p in Path(folder).rglob("*")
        if p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
        and p.name not in SKIPPED_NAMES
        and p.resolve() not in skip
    )


@dataclass(frozen=True)
class SeriesGeometry:
    """Slice order and geometry of a series.

    ``order``: indices into the given files, along the slice normal (ascending);
    ``affine``: 4 x 4 voxel (column, row, slice) -> RAS+ mm; ``sorted_by``:
    ``"position"`` or ``"instance_number"``.
    """

    order: list[int]
    affine: np.ndarray
    sorted_by: str


def _floats(
    headers: Sequence[pydicom.Dataset], files: Sequence[Path], keyword: str
) -> list[np.ndarray] | None:
    """``keyword`` of every slice as float arrays; None when no slice has it, DataError when
    only some do (they would be placed by different rules)."""
    values = [ds.get(keyword) for ds in headers]
    if all(v is None for v in values):
        return None
    for path, value in zip(files, values, strict=True):
        if value is None:
            raise DataError(
                f"slice has no {keyword} while other slices of the series have it; "
                "re-export the series or remove this file",
                path=path,
            )
    return [np.asarray([float(x) for x in v], dtype=float) for v in values]


def _same(values: list, files: Sequence[Path], what: str, tol: float | None = None) -> None:
    """Raise naming the first file whose ``what`` differs from the first slice's."""
    ref = values[0]
    for value, path in zip(values[1:], files[1:], strict=True):
        if tol is None:
            differs = value != ref
        else:
            differs = np.shape(value) != np.shape(ref) or not np.allclose(value, ref, atol=tol)
        if differs:
            raise DataError(
                f"{what} {value} differs from {ref} in {files[0].name}: the slices (or frames) "
                "do not form one volume; keep one series per patient folder (or name its "
                "folder in a manifest)",
                path=path,
            )


def series_geometry(headers: Sequence[pydicom.Dataset], files: Sequence[Path]) -> SeriesGeometry:
    """Order the slices and build the affine; inconsistent slices raise DataError."""
    _same([ds.get("SeriesInstanceUID") for ds in headers], files, "SeriesInstanceUID")
    _same([(int(ds.Rows), int(ds.Columns)) for ds in headers], files, "Rows x Columns")
    # no calibration: 1 mm, as ITK assumes
    spacing = _floats(headers, files, "PixelSpacing") or [np.ones(2)] * len(headers)
    _same(spacing, files, "PixelSpacing", tol=1e-4)
    orient = _floats(headers, files, "ImageOrientationPatient")
    orient = orient or [np.array([1.0, 0, 0, 0, 1, 0])] * len(headers)  # axial, as usual
    _same(orient, files, "ImageOrientationPatient", tol=ORIENTATION_TOL)
    row_dir, col_dir = orient[0][:3], orient[0][3:]
    normal = np.cross(row_dir, col_dir)
    positions = _floats(headers, files, "ImagePositionPatient")
    if positions is not None:
        along = np.array([p @ normal for p in positions])
        order = np.argsort(along, kind="stable").tolist()
        _check_gaps(along[order], [files[i] for i in order])
        first, last = positions[order[0]], positions[order[-1]]
        # the mean step between first and last keeps a tilted gantry's shear
        step = (last - first) / (len(order) - 1) if len(order) > 1 else None
        sorted_by = "position"
    else:
        numbers = [ds.get("InstanceNumber") for ds in headers]
        for path, number in zip(files, numbers, strict=True):
            if number is None:
                raise DataError(
                    "slice has neither ImagePositionPatient nor InstanceNumber, so its place "
                    "in the volume is unknown; re-export the series with geometry tags",
                    path=path,
                )
        order = np.argsort([int(n) for n in numbers], kind="stable").tolist()
        first = np.zeros(3)
        step, sorted_by = None, "instance_number"
    if step is None:
        step = normal * _thickness(headers[order[0]])
    lps = np.eye(4)
    lps[:3, 0] = row_dir * spacing[0][1]  # column index i runs along the row direction
    lps[:3, 1] = col_dir * spacing[0][0]  # row index j runs along the column direction
    lps[:3, 2] = step
    lps[:3, 3] = first
    return SeriesGeometry(order, LPS_TO_RAS @ lps, sorted_by)


def _thickness(ds: pydicom.Dataset) -> float:
    for keyword in ("SpacingBetweenSlices", "SliceThickness"):
        if ds.get(keyword) not in (None, ""):
            return abs(float(ds.get(keyword))) or 1.0
    return 1.0


def _check_gaps(along: np.ndarray, files: Sequence[Path]) -> None:
    """Refuse duplicated slices and uneven gaps (a missing slice would shift the label)."""
    if len(along) < 2:
        return
    gaps = np.diff(along)
    typical = float(np.median(gaps))
    for n, gap in enumerate(gaps):
        if gap < 1e-3:
            raise DataError(
                f"two slices at the same position ({along[n]:.2f} mm along the normal, also "
                f"{files[n].name}): duplicated files, two series in one folder, or several "
                "stacks or time points in one multi-frame file; keep one volume",
                path=files[n + 1],
            )
        if abs(gap - typical) > max(SPACING_TOL * typical, 0.05):
            raise DataError(
                f"slice gap of {gap:.2f} mm before this slice where the series has "
                f"{typical:.2f} mm: a slice is missing or belongs to another series; "
                "re-export the complete series",
                path=files[n + 1],
            )


def rescale_hu(stored: np.ndarray, header: pydicom.Dataset) -> np.ndarray:
    """Hounsfield units, float32: stored x RescaleSlope + RescaleIntercept of ``header``.

    Signed and unsigned PixelRepresentation are both decoded by pydicom into the stored values.
    """
    slope = float(header.get("RescaleSlope", 1.0) or 1.0)
    intercept = float(header.get("RescaleIntercept", 0.0) or 0.0)
    return stored.astype(np.float32) * np.float32(slope) + np.float32(intercept)


def slice_hu(ds: pydicom.Dataset, path: str | Path) -> np.ndarray:
    """Hounsfield units of one classic slice, rows x columns float32."""
    return rescale_hu(pixel_array(ds, path), ds)


def read_series_headers(files: Sequence[Path]) -> list[pydicom.Dataset]:
    """Parse every slice (pixels included); a file without pixel data raises DataError."""
    if not files:
        raise DataError("no DICOM slices given: the series is empty")
    datasets = []
    for path in files:
        ds = read_dicom(path)
        if "PixelData" not in ds or "Rows" not in ds or "Columns" not in ds:
            raise DataError(
                "DICOM file has no image (no pixel data or size): it is truncated or not a "
                "CT slice; re-export it or remove it from the patient folder",
                path=path,
            )
        datasets.append(ds)
    return datasets


def read_dicom_series(files: Sequence[str | Path]) -> tuple[np.ndarray, np.ndarray]:
    """Read a series: HU volume (columns x rows x slices, float32) and its RAS+ affine (4 x 4).

    Slices are sorted along the normal whatever the file names; each slice's own
    RescaleSlope/Intercept applies. Unreadable, truncated or inconsistent files raise
    :class:`DataError` naming the file.
    """
    files = [Path(f) for f in files]
    return series_volume(read_series_headers(files), files)


def series_volume(
    datasets: Sequence[pydicom.Dataset], files: Sequence[Path]
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`read_dicom_series` from datasets already read (``read_series_headers``), so a
    caller that needs the headers too (``ptx predict``'s DICOM SEG) reads each file once."""
    enhanced = [path for path, ds in zip(files, datasets, strict=True) if is_multiframe(ds)]
    if enhanced and len(files) == 1:
        return read_enhanced_volume(datasets[0], files[0])
    if enhanced:
        raise DataError(
            f"a multi-frame (enhanced) file among {len(files)} files: a patient folder holds "
            "either the slices of one classic series or one enhanced file; remove the others",
            path=enhanced[0],
        )
    geometry = series_geometry(datasets, files)
    rows, cols = int(datasets[0].Rows), int(datasets[0].Columns)
    volume = np.empty((cols, rows, len(files)), dtype=np.float32)
    for k, index in enumerate(geometry.order):
        hu = slice_hu(datasets[index], files[index])
        if hu.shape != (rows, cols):
            raise DataError(
                f"pixel data is {hu.shape} where the header says {rows} x {cols}",
                path=files[index],
            )
        volume[:, :, k] = hu.T
    return volume, geometry.affine


def read_enhanced_volume(ds: pydicom.Dataset, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """An Enhanced (multi-frame) CT file as :func:`read_dicom_series` reads a series: HU
    volume (columns x rows x frames, float32, sorted along the normal) and RAS+ affine."""
    headers, names = frame_headers(ds, path)
    geometry = series_geometry(headers, names)
    frames = frame_pixels(ds, pixel_array(ds, path), path)
    rows, cols = int(ds.Rows), int(ds.Columns)
    volume = np.empty((cols, rows, len(headers)), dtype=np.float32)
    for k, index in enumerate(geometry.order):
        volume[:, :, k] = rescale_hu(frames[index], headers[index]).T
    return volume, geometry.affine
