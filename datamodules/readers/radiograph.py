"""One radiograph (DICOM or PNG) as a float32 ``H x W`` image in [0, 1], bright = dense.

DICOM: stored values -> modality rescale (slope/intercept) -> the file's VOI window when it has
one, else the full range its bit depth allows -> [0, 1]; MONOCHROME1 (bright = air) is inverted
so every image reads like MONOCHROME2. PNG: 8-bit over 255, 16-bit over 65535, colour to grey.
The grid is kept as stored (non-square too): the DataModule resizes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from datamodules.errors import DataError
from datamodules.readers.dicom import pixel_array, read_dicom

# Bump when the intensity conversion below changes, so cached arrays are rebuilt.
READER_VERSION = 1


def is_dicom(path: Path) -> bool:
    """By suffix, or by the ``DICM`` magic at byte 128 for files without one."""
    if path.suffix.lower() in (".dcm", ".dicom"):
        return True
    if path.suffix.lower() in (".png", ".jpg", ".jpeg", ".tif", ".tiff"):
        return False
    with open(path, "rb") as fh:
        return fh.read(132)[128:132] == b"DICM"


def read_radiograph(path: str | Path) -> np.ndarray:
    """The image of a DICOM or PNG radiograph: float32 ``H x W`` in [0, 1]."""
    path = Path(path)
    if not path.is_file():
        raise DataError("image file not found; restore it or remove its CSV row", path=path)
    return read_dicom_radiograph(path) if is_dicom(path) else read_png_radiograph(path)


def _first(value) -> float | None:
    """A DICOM number that may be multi-valued (e.g. several windows): the first one."""
    if value is None:
        return None
    try:
        return float(value[0])
    except TypeError:
        return float(value)


def stored_range(ds) -> tuple[float, float]:
    """The smallest and largest stored value the header's bit depth allows."""
    bits = int(ds.get("BitsStored", ds.get("BitsAllocated", 8)))
    if int(ds.get("PixelRepresentation", 0)) == 1:
        return -(2.0 ** (bits - 1)), 2.0 ** (bits - 1) - 1
    return 0.0, 2.0**bits - 1


def to_unit_range(stored: np.ndarray, ds) -> np.ndarray:
    """Stored pixel values -> float32 [0, 1] with the header's rescale and window."""
    slope = _first(ds.get("RescaleSlope", 1)) or 1.0
    intercept = _first(ds.get("RescaleIntercept", 0)) or 0.0
    values = stored.astype(np.float64) * slope + intercept
    center, width = _first(ds.get("WindowCenter")), _first(ds.get("WindowWidth"))
    if center is not None and width is not None and width >= 1:
        # DICOM PS3.3 C.11.2.1.2 linear VOI function, output scaled to [0, 1]
        out = (values - (center - 0.5)) / max(width - 1.0, 1.0) + 0.5
    else:
        low, high = (v * slope + intercept for v in stored_range(ds))
        low, high = min(low, high), max(low, high)
        out = (values - low) / max(high - low, 1.0)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def read_dicom_radiograph(path: Path) -> np.ndarray:
    """A single-frame DICOM radiograph as float32 ``H x W`` in [0, 1] (MONOCHROME2 sense)."""
    ds = read_dicom(path)
    stored = pixel_array(ds, path)
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    if int(ds.get("NumberOfFrames", 1) or 1) > 1:
        raise DataError(
            f"DICOM holds {ds.NumberOfFrames} frames; a radiograph has one: export the frame",
            path=path,
        )
    if photometric.startswith(("RGB", "YBR")) or stored.ndim == 3:
        # a colour secondary capture: luminance, already display values
        rgb = np.asarray(stored, dtype=np.float64)
        if stored.ndim != 3 or rgb.shape[-1] != 3:
            raise DataError(f"unexpected pixel array shape {stored.shape}", path=path)
        top = 2.0 ** int(ds.get("BitsStored", 8)) - 1
        grey = (rgb @ np.array([0.299, 0.587, 0.114])) / top
        return np.clip(grey, 0, 1).astype(np.float32)
    if not photometric.startswith("MONOCHROME"):
        raise DataError(
            f"unsupported PhotometricInterpretation {photometric!r}; expected MONOCHROME1/2",
            path=path,
        )
    image = to_unit_range(stored, ds)
    return 1.0 - image if photometric == "MONOCHROME1" else image


def read_png_radiograph(path: Path) -> np.ndarray:
    """An 8- or 16-bit grey (or colour) PNG radiograph as float32 ``H x W`` in [0, 1]."""
    with _open_image(path) as img:
        if img.mode in ("I;16", "I;16B", "I;16L", "I"):
            values = np.asarray(img, dtype=np.float64)
            top = 65535.0 if img.mode.startswith("I;16") or values.max() > 255 else 255.0
            return np.clip(values / top, 0, 1).astype(np.float32)
        grey = img.convert("L") if img.mode != "L" else img
        return np.asarray(grey, dtype=np.float32) / 255.0


def read_mask_png(path: str | Path) -> np.ndarray:
    """A mask PNG (0/255 or 0/1, any colour mode) as uint8 ``H x W`` in {0, 1}."""
    path = Path(path)
    with _open_image(path) as img:
        values = np.asarray(img)
    if values.ndim == 3:
        values = values.max(axis=-1)
    return (values > 0).astype(np.uint8)


def image_shape(path: str | Path) -> tuple[int, int]:
    """``(height, width)`` of an image from its header alone (no pixel decoding)."""
    path = Path(path)
    if is_dicom(path):
        ds = read_dicom(path, header_only=True)
        return int(ds.Rows), int(ds.Columns)
    with _open_image(path, decode=False) as img:
        return img.height, img.width


def _open_image(path: Path, decode: bool = True) -> Image.Image:
    try:
        img = Image.open(path)
        if decode:
            img.load()
        return img
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise DataError(
            f"not a readable image ({type(err).__name__}: {err}); re-export or remove it",
            path=path,
        ) from err
