"""One radiograph (DICOM or PNG) as a float32 ``H x W`` image in [0, 1], bright = dense.

DICOM: stored values -> Modality LUT (RescaleSlope/Intercept, or a Modality LUT Sequence) ->
the file's VOI LUT (a VOI LUT Sequence, else the first WindowCenter/WindowWidth, DICOM's
linear function) when it has one -> [0, 1]. Without a VOI LUT the image is normalised by its
own robust range (``transforms.robust_range``): the 0.5 and 99.5 percentiles of the pixels
inside the image (those not at its extreme values nor equal to PixelPaddingValue) map to 0
and 1, clipped; so a 16-bit image whose values span 0-278 fills [0, 1] like an 8-bit one
instead of landing in 0.500-0.504 of its bit depth's range. ``intensity="bit_depth"`` keeps
the old rule (the range BitsStored allows). MONOCHROME1 (bright = air) is inverted so every
image reads like MONOCHROME2. PNG: always without a window, so the same robust range (or
8-bit / 255, 16-bit / 65535 by bit depth). A radiograph that is (nearly) constant after all
that is an error naming the file: the network would see a blank image. The grid is kept as
stored (non-square too): the DataModule resizes.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError
from pydicom.pixels import apply_modality_lut, apply_voi

from datamodules.io.errors import DataError
from datamodules.readers.dicom import pixel_array, read_dicom
from datamodules.transforms import robust_range, to_unit

# Bump when the intensity conversion below changes, so cached arrays are rebuilt.
READER_VERSION = 2
INTENSITY_RULES = ("percentiles", "bit_depth")  # for images without a VOI LUT / window
DEFAULT_PERCENTILES = (0.5, 99.5)
MIN_SD = 0.01  # sd of the [0, 1] image below which it counts as blank


def is_dicom(path: Path) -> bool:
    """By suffix, or by the ``DICM`` magic at byte 128 for files without one."""
    if path.suffix.lower() in (".dcm", ".dicom"):
        return True
    if path.suffix.lower() in (".png", ".jpg", ".jpeg", ".tif", ".tiff"):
        return False
    with open(path, "rb") as fh:
        return fh.read(132)[128:132] == b"DICM"


def read_radiograph(
    path: str | Path,
    intensity: str = "percentiles",
    percentiles: Sequence[float] = DEFAULT_PERCENTILES,
) -> np.ndarray:
    """The image of a DICOM or PNG radiograph: float32 ``H x W`` in [0, 1].

    ``intensity`` is the rule for images without a VOI LUT or window: ``"percentiles"``
    (``percentiles`` of the pixels -> 0 and 1) or ``"bit_depth"`` (the stored range).
    Raises DataError for an unreadable file or a (nearly) blank result.
    """
    path = Path(path)
    if intensity not in INTENSITY_RULES:
        raise ValueError(f"intensity must be one of {INTENSITY_RULES}, got {intensity!r}")
    if not path.is_file():
        raise DataError("image file not found; restore it or remove its CSV row", path=path)
    if is_dicom(path):
        image, how = read_dicom_radiograph(path, intensity, percentiles)
    else:
        image, how = read_png_radiograph(path, intensity, percentiles)
    sd = float(image.std())
    if not sd >= MIN_SD:
        raise DataError(
            f"the radiograph is blank after intensity normalisation ({how}; sd {sd:.4f} of "
            "the [0, 1] range): check its pixel data and window, or remove it",
            path=path,
        )
    return image


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


def modality_values(stored: np.ndarray, ds) -> np.ndarray:
    """Stored values -> Modality LUT output (float64): the LUT Sequence, else slope/intercept."""
    if "ModalityLUTSequence" in ds:
        return np.asarray(apply_modality_lut(stored, ds), dtype=np.float64)
    slope = _first(ds.get("RescaleSlope", 1)) or 1.0
    intercept = _first(ds.get("RescaleIntercept", 0)) or 0.0
    return stored.astype(np.float64) * slope + intercept


def to_unit_range(
    stored: np.ndarray,
    ds,
    intensity: str = "percentiles",
    percentiles: Sequence[float] = DEFAULT_PERCENTILES,
) -> tuple[np.ndarray, str]:
    """Stored pixel values -> (float32 [0, 1], how it was done) by the rules above."""
    if "VOILUTSequence" in ds:
        bits = int(ds.VOILUTSequence[0].LUTDescriptor[2])
        return to_unit(apply_voi(stored, ds), 0, 2.0**bits - 1), "VOI LUT"
    values = modality_values(stored, ds)
    center, width = _first(ds.get("WindowCenter")), _first(ds.get("WindowWidth"))
    if center is not None and width is not None and width >= 1:
        # DICOM PS3.3 C.11.2.1.2 linear VOI function, output scaled to [0, 1]
        low = center - 0.5 - (width - 1.0) / 2
        return to_unit(values, low, low + max(width - 1.0, 1.0)), f"window {center}/{width}"
    if intensity == "bit_depth":
        low, high = sorted(float(v) for v in modality_values(np.array(stored_range(ds)), ds))
        return to_unit(values, low, high), f"bit depth range {low:g}-{high:g}"
    padding = ds.get("PixelPaddingValue")
    low, high = robust_range(values, percentiles, None if padding is None else stored == padding)
    p_low, p_high = percentiles
    return to_unit(values, low, high), f"no window; {p_low}-{p_high} percentiles {low:g}-{high:g}"


def read_dicom_radiograph(
    path: Path, intensity: str = "percentiles", percentiles=DEFAULT_PERCENTILES
) -> tuple[np.ndarray, str]:
    """A single-frame DICOM radiograph: (float32 ``H x W`` in [0, 1], MONOCHROME2 sense;
    how it was normalised)."""
    ds = read_dicom(path)
    stored = pixel_array(ds, path)
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    if int(ds.get("NumberOfFrames", 1) or 1) > 1:
        raise DataError(
            f"DICOM holds {ds.NumberOfFrames} frames; a radiograph has one: export the frame",
            path=path,
        )
    if photometric.startswith(("RGB", "YBR")) or stored.ndim == 3:
        # a colour secondary capture: luminance, already display values (no window)
        rgb = np.asarray(stored, dtype=np.float64)
        if stored.ndim != 3 or rgb.shape[-1] != 3:
            raise DataError(f"unexpected pixel array shape {stored.shape}", path=path)
        grey = rgb @ np.array([0.299, 0.587, 0.114])
        top = 2.0 ** int(ds.get("BitsStored", 8)) - 1
        return _without_window(grey, top, intensity, percentiles)
    if not photometric.startswith("MONOCHROME"):
        raise DataError(
            f"unsupported PhotometricInterpretation {photometric!r}; expected MONOCHROME1/2",
            path=path,
        )
    image, how = to_unit_range(stored, ds, intensity, percentiles)
    return (1.0 - image if photometric == "MONOCHROME1" else image), how


def _without_window(values, top: float, intensity: str, percentiles) -> tuple[np.ndarray, str]:
    """Display values without a window (PNG, colour): robust range or ``0..top``."""
    if intensity == "bit_depth":
        return to_unit(values, 0.0, top), f"bit depth range 0-{top:g}"
    low, high = robust_range(values, percentiles)
    return to_unit(values, low, high), f"{percentiles[0]}-{percentiles[1]} percentiles"


def read_png_radiograph(
    path: Path, intensity: str = "percentiles", percentiles=DEFAULT_PERCENTILES
) -> tuple[np.ndarray, str]:
    """An 8- or 16-bit grey (or colour) PNG radiograph: (float32 ``H x W`` in [0, 1], how)."""
    with _open_image(path) as img:
        if img.mode in ("I;16", "I;16B", "I;16L", "I"):
            values = np.asarray(img, dtype=np.float64)
            top = 65535.0 if img.mode.startswith("I;16") or values.max() > 255 else 255.0
        else:
            grey = img.convert("L") if img.mode != "L" else img
            values, top = np.asarray(grey, dtype=np.float64), 255.0
    return _without_window(values, top, intensity, percentiles)


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
