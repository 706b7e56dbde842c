"""Hand-made radiograph files for the X-ray tests: uncompressed DICOM of any bit depth."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid


def write_dicom(
    path: Path,
    stored: np.ndarray,
    *,
    bits_stored: int | None = None,
    photometric: str = "MONOCHROME2",
    **attributes,
) -> Path:
    """Write ``stored`` (uint8, uint16 or int16, H x W) as an Explicit VR Little Endian CR.

    ``attributes`` are set on the dataset as given (e.g. ``RescaleSlope=2``,
    ``WindowCenter=2048``, ``PatientID="X"``).
    """
    stored = np.asarray(stored)
    allocated = stored.dtype.itemsize * 8
    sop = generate_uid()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = sop
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = SecondaryCaptureImageStorage, sop, "CR"
    ds.Rows, ds.Columns = stored.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
    ds.BitsAllocated = allocated
    ds.BitsStored = bits_stored or allocated
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = int(np.issubdtype(stored.dtype, np.signedinteger))
    for name, value in attributes.items():
        setattr(ds, name, value)
    ds.PixelData = np.ascontiguousarray(stored.astype(stored.dtype.newbyteorder("<"))).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


_PHANTOMS: dict[tuple, Path] = {}


def xray_phantom(tmp_path_factory, **kwargs) -> Path:
    """The X-ray phantom written once per test session for each set of ``kwargs``."""
    from datamodules.phantom.xray import generate_xray_phantom

    key = tuple(sorted(kwargs.items()))
    if key not in _PHANTOMS:
        out = tmp_path_factory.mktemp("xray-phantom")
        generate_xray_phantom(out, **kwargs)
        _PHANTOMS[key] = out
    return _PHANTOMS[key]


def vendor_file(name: str) -> Path:
    """A real vendor DICOM from pydicom-data (the dev extra), found on disk, never fetched."""
    import pytest

    data_store = pytest.importorskip("data_store", reason="pip install pydicom-data")
    path = Path(data_store.__file__).parent / "data" / name
    if not path.is_file():
        pytest.skip(f"{name} is not in this pydicom-data")
    return path
