"""Enhanced (multi-frame) CT: one file whose frames carry their geometry in functional groups.

Each frame's plane position, plane orientation, pixel measures and pixel value
transformation (rescale) come from its item of the Per-Frame Functional Groups Sequence, or
else from the Shared Functional Groups Sequence, or else from the top level (as some
converters write them). They are copied into one classic-looking header per frame, so the
frames go through exactly the path of a classic series (``dicom_series.series_geometry``):
sorted along the normal, spacing from the positions, the same consistency checks and the
same affine. Frames that do not form one evenly spaced volume (several stacks or time
points, mixed orientations, a missing position) are refused naming the file and frame.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset

from datamodules.io.errors import DataError

# functional group -> the classic attributes it holds (DICOM PS3.3 C.7.6.16)
FRAME_GROUPS = {
    "PlanePositionSequence": ("ImagePositionPatient",),
    "PlaneOrientationSequence": ("ImageOrientationPatient",),
    "PixelMeasuresSequence": ("PixelSpacing", "SliceThickness", "SpacingBetweenSlices"),
    "PixelValueTransformationSequence": ("RescaleSlope", "RescaleIntercept"),
}
IMAGE_KEYWORDS = ("Rows", "Columns", "SeriesInstanceUID")


def is_multiframe(ds: pydicom.Dataset) -> bool:
    """An enhanced / multi-frame image (frames in one file), as opposed to a classic slice."""
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    return frames > 1 or "PerFrameFunctionalGroupsSequence" in ds


def _group_item(frame: Dataset | None, shared: Dataset | None, group: str) -> Dataset | None:
    for holder in (frame, shared):
        if holder is not None and holder.get(group):
            return holder.get(group)[0]
    return None


def frame_headers(ds: pydicom.Dataset, path: Path) -> tuple[list[Dataset], list[Path]]:
    """One classic header per frame (position, orientation, spacing, rescale, size, series)
    and a name per frame for error messages (``<file> frame <n>``, n from 1)."""
    n = int(ds.get("NumberOfFrames", 1) or 1)
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    if per_frame is not None and len(per_frame) != n:
        raise DataError(
            f"multi-frame file has {n} frames but {len(per_frame)} per-frame functional "
            "groups; re-export it",
            path=path,
        )
    shared_seq = ds.get("SharedFunctionalGroupsSequence")
    shared = shared_seq[0] if shared_seq else None
    headers, names = [], []
    for k in range(n):
        header = Dataset()
        for keyword in IMAGE_KEYWORDS:
            if keyword in ds:
                setattr(header, keyword, ds.data_element(keyword).value)
        frame = per_frame[k] if per_frame is not None else None
        for group, keywords in FRAME_GROUPS.items():
            item = _group_item(frame, shared, group)
            for keyword in keywords:
                source = item if item is not None and keyword in item else ds
                if keyword in source:
                    setattr(header, keyword, source.data_element(keyword).value)
        headers.append(header)
        names.append(Path(f"{path} frame {k + 1}"))
    return headers, names


def frame_pixels(ds: pydicom.Dataset, stored: np.ndarray, path: Path) -> np.ndarray:
    """The decoded frames as ``frames x rows x columns`` (pydicom drops the axis for one)."""
    n, rows, cols = int(ds.get("NumberOfFrames", 1) or 1), int(ds.Rows), int(ds.Columns)
    if stored.shape not in ((n, rows, cols), (rows, cols)) or (stored.ndim == 2 and n != 1):
        raise DataError(
            f"pixel data is {stored.shape} where the header says {n} frames of {rows} x {cols}",
            path=path,
        )
    return stored.reshape(n, rows, cols)
