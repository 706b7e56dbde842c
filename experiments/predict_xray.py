"""``ptx predict`` for chest radiographs: find them, segment each, write masks, overlays and
the SIIM-ACR submission. Outputs are named by each image's key (``image_key`` of its file
stem, which may identify); only ``submission.csv`` holds the ids, as its format asks."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from datamodules.io.errors import DataError
from datamodules.layouts.privacy import image_key
from datamodules.readers.dicom import read_dicom
from datamodules.readers.radiograph import DEFAULT_PERCENTILES, is_dicom, read_radiograph
from datamodules.readers.rle import rle_encode
from datamodules.writers.png import write_png

SUFFIXES = (".dcm", ".dicom", ".png")
MASK_FOLDERS = {"masks", "overlays", "probabilities"}  # a PNG layout's labels, our outputs


@dataclass(frozen=True)
class Radiograph:
    name: str  # the image's key (image_key of its id): output file names, logs
    path: Path
    image_id: str  # the file stem (the SOP Instance UID of SIIM files): submission.csv only

    @staticmethod
    def summary(row: dict) -> str:
        call = "PTX" if row["ptx"] else "no PTX"
        return f"{call}, {row['area_px']} px, top probability {row['top_probability']:.2f}"


def find_radiographs(root: Path) -> list[Radiograph]:
    """A DICOM or PNG file, or every one under a folder (not under masks/ or our outputs)."""
    if not root.exists():
        raise DataError("input not found", path=root)
    if root.is_file():
        return [Radiograph(image_key(root.stem), root, root.stem)]
    found = [
        p
        for p in sorted(root.rglob("*"))
        if p.is_file()
        and p.suffix.lower() in SUFFIXES
        and not MASK_FOLDERS & set(p.relative_to(root).parts[:-1])
    ]
    names: dict[str, Path] = {}
    for path in found:
        if path.stem in names:
            raise DataError(
                f"two images with the id {path.stem!r} (also {names[path.stem]})", path=path
            )
        names[path.stem] = path
    return [Radiograph(image_key(stem), path, stem) for stem, path in names.items()]


def pixel_area_mm2(path: Path) -> float | None:
    """mm² of one pixel from a DICOM's PixelSpacing (or ImagerPixelSpacing); None if unknown."""
    if not is_dicom(path):
        return None
    ds = read_dicom(path, header_only=True)
    spacing = ds.get("PixelSpacing") or ds.get("ImagerPixelSpacing")
    if not spacing or len(spacing) != 2:
        return None
    return float(spacing[0]) * float(spacing[1])


def overlay(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """RGB uint8: the radiograph in grey with the mask's contour in red."""
    grey = (np.clip(image, 0, 1) * 255).astype(np.uint8)
    rgb = np.repeat(grey[..., None], 3, axis=-1)
    edge = mask.astype(bool) & ~ndimage.binary_erosion(mask.astype(bool), iterations=2)
    rgb[edge] = (255, 0, 0)
    return rgb


def predict_radiograph(predictor, item: Radiograph, out: Path, args) -> dict:
    """Segment one radiograph; write its mask and overlay PNGs; return its row."""
    data = predictor.data_settings
    image = read_radiograph(
        item.path,
        data.get("intensity", "percentiles"),
        data.get("percentiles", DEFAULT_PERCENTILES),
    )
    prediction = predictor.probabilities(image[None], batch_size=1)
    calls = predictor.calls(prediction.grid)
    mask = predictor.masks(prediction.native, calls)[0]
    write_png(out / "masks" / f"{item.name}.png", mask * 255)
    write_png(out / "overlays" / f"{item.name}.png", overlay(image, mask))
    if args.save_probabilities:
        probability = np.round(prediction.native[0] * 255).astype(np.uint8)
        write_png(out / "probabilities" / f"{item.name}.png", probability)
    area = int(mask.sum())
    pixel_mm2 = pixel_area_mm2(item.path)
    return {
        "case": item.name,
        "ptx": bool(calls[0]),
        "area_px": area,
        "area_mm2": None if pixel_mm2 is None else area * pixel_mm2,
        "grid_area_px": int((prediction.grid[0] > predictor.rule.top_threshold).sum()),
        "top_probability": float(prediction.native[0].max()),
        "height": int(image.shape[0]),
        "width": int(image.shape[1]),
        "_rle": rle_encode(mask if calls[0] else np.zeros_like(mask)),
    }


def write_submission(path: Path, items: list[Radiograph], rows: list[dict]) -> None:
    """SIIM-ACR ``ImageId,EncodedPixels`` of each item and its row: the relative RLE of the
    images called PTX, else ``-1``. The one output that holds the images' own ids."""
    from experiments.predict import write_csv

    pairs = zip(items, rows, strict=True)
    write_csv(path, [{"ImageId": i.image_id, "EncodedPixels": r["_rle"]} for i, r in pairs])
