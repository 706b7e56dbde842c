"""Finding chest X-ray data on disk: the SIIM-ACR layouts and the PNG folder layout.

- SIIM: ``train-rle.csv`` (or ``stage_2_train.csv``) beside ``dicom-images-train/`` (nested
  ``<StudyUID>/<SeriesUID>/<SOPInstanceUID>.dcm``) or ``train_png/<ImageId>.png``.
- PNG folders: ``images/<ImageId>.png`` and ``masks/<ImageId>.png``.

The image id is the file stem (the SOP Instance UID for SIIM).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from datamodules.errors import DataError
from datamodules.readers.png import images_by_id, png_pairs
from datamodules.readers.rle import RleRow, read_rle_csv

CSV_NAMES = ("train-rle.csv", "stage_2_train.csv")  # first found wins
IMAGE_FOLDERS = {"dicom-images-train": (".dcm",), "train_png": (".png",)}
LAYOUT_HELP = (
    "point data_dir at a folder holding train-rle.csv (or stage_2_train.csv) and "
    "dicom-images-train/ (or train_png/), or holding images/ and masks/ folders of "
    "same-named PNGs"
)


@dataclass(frozen=True)
class Layout:
    """Where a chest X-ray data set keeps its images and masks.

    ``kind`` is ``"siim"`` (masks as RLE rows in ``csv``) or ``"png"`` (mask files in
    ``masks``).
    """

    kind: str
    images: Path
    csv: Path | None = None
    masks: Path | None = None


@dataclass(frozen=True)
class RadiographEntry:
    """One image found on disk with where its mask comes from (a PNG or RLE rows)."""

    image_id: str
    image: Path
    mask: Path | None = None
    rows: tuple[RleRow, ...] = ()


def find_layout(root: str | Path, rle_csv: str | Path | None = None) -> Layout:
    """Recognise the layout of ``root``; ``rle_csv`` names the CSV when several are there."""
    root = Path(root)
    if rle_csv is not None:
        csv = root / rle_csv
        if not csv.is_file():
            raise DataError("RLE CSV not found; check rle_csv (relative to data_dir)", path=csv)
    else:
        csv = next((root / n for n in CSV_NAMES if (root / n).is_file()), None)
    folder = next((root / n for n in IMAGE_FOLDERS if (root / n).is_dir()), None)
    if csv is not None:
        if folder is None:
            raise DataError(
                f"found {csv.name} but no image folder ({' or '.join(IMAGE_FOLDERS)}/); "
                + LAYOUT_HELP,
                path=root,
            )
        return Layout("siim", folder, csv=csv)
    if (root / "images").is_dir() and (root / "masks").is_dir():
        return Layout("png", root / "images", masks=root / "masks")
    raise DataError(f"no chest X-ray layout recognised; {LAYOUT_HELP}", path=root)


def discover_radiographs(layout: Layout) -> tuple[list[RadiographEntry], dict[str, list[str]]]:
    """Every image with its mask source, sorted by id, and the ids skipped by reason.

    SIIM: an image needs at least one CSV row (``-1`` for no pneumothorax); rows whose image
    is missing and images without rows are returned as skipped, not silently dropped.
    """
    if layout.kind == "png":
        pairs, skipped = png_pairs(layout.images, layout.masks)
        entries = [RadiographEntry(i, image, mask=mask) for i, (image, mask) in pairs.items()]
        return entries, skipped
    images = images_by_id(layout.images, IMAGE_FOLDERS[layout.images.name])
    rows = read_rle_csv(layout.csv)
    entries = [
        RadiographEntry(i, images[i], rows=tuple(rows[i]))
        for i in sorted(images.keys() & rows.keys())
    ]
    skipped = {
        "image without RLE row": sorted(images.keys() - rows.keys()),
        "RLE row without image": sorted(rows.keys() - images.keys()),
    }
    return entries, skipped
