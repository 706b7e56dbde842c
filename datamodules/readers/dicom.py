"""Reading one DICOM file with errors a user can act on (shared by CT and X-ray readers)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError

from datamodules.io.errors import DataError

# Packages that decode compressed pixel data, by the error pydicom gives without them.
DECODER_HINT = (
    "install a pixel-data decoder: `pip install pylibjpeg pylibjpeg-libjpeg` "
    "(JPEG baseline/extended/lossless) or `pip install pillow`; "
    "for JPEG 2000 add pylibjpeg-openjpeg, for JPEG-LS pyjpegls"
)


def read_dicom(path: str | Path, *, header_only: bool = False) -> pydicom.Dataset:
    """Parse a DICOM file; an unreadable, truncated or non-DICOM file raises DataError."""
    path = Path(path)
    try:
        return pydicom.dcmread(path, stop_before_pixels=header_only)
    except (InvalidDicomError, EOFError, OSError, ValueError, KeyError) as err:
        raise DataError(
            f"not a readable DICOM file ({type(err).__name__}: {err}); "
            "re-export it or remove it from the data folder",
            path=path,
        ) from err


def pixel_array(ds: pydicom.Dataset, path: str | Path) -> np.ndarray:
    """Decoded stored pixel values (no rescale); missing decoders and truncation are named."""
    if "PixelData" not in ds:
        raise DataError("DICOM file has no pixel data", path=path)
    try:
        return ds.pixel_array
    except (RuntimeError, NotImplementedError) as err:
        syntax = getattr(ds.file_meta, "TransferSyntaxUID", None)
        if "plugin" in str(err).lower() or "decod" in str(err).lower():
            name = syntax.name if syntax is not None else "unknown"
            raise DataError(
                f"cannot decode compressed pixel data (transfer syntax {name}): {DECODER_HINT}",
                path=path,
            ) from err
        raise DataError(f"pixel data cannot be decoded ({err})", path=path) from err
    except (ValueError, EOFError) as err:
        raise DataError(
            f"pixel data is truncated or inconsistent with the header ({err})", path=path
        ) from err
