"""Finding chest X-ray data on disk: the SIIM-ACR layouts and the PNG folder layout.

- SIIM: ``train-rle.csv`` (or ``stage_2_train.csv``) beside ``dicom-images-train/`` (nested
  ``<StudyUID>/<SeriesUID>/<SOPInstanceUID>.dcm``) or ``train_png/<ImageId>.png``.
- PNG folders: ``images/<ImageId>.png`` and ``masks/<ImageId>.png``.

The image id is the file stem (the SOP Instance UID for SIIM). ``find_layout`` recognises
the layout, ``discover_radiographs`` lists its images with their mask source, and
``radiograph_case`` makes each one a :class:`Radiograph` case from its header alone (patient
key, grid, label of RLE rows); ``with_scheme`` decides one RLE scheme for the whole CSV.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from datamodules.io.errors import DataError
from datamodules.layouts import Case
from datamodules.layouts.privacy import anonymous_key, image_key
from datamodules.readers.dicom import read_dicom
from datamodules.readers.radiograph import image_shape, is_dicom
from datamodules.readers.rle import RleRow, check_rows, detect_scheme, read_rle_csv

CSV_NAMES = ("train-rle.csv", "stage_2_train.csv")  # first found wins
IMAGE_FOLDERS = {"dicom-images-train": (".dcm",), "train_png": (".png",)}
IMAGE_SUFFIXES = (".png",)  # the PNG folder layout
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


@dataclass(frozen=True)
class Radiograph(Case):
    """One radiograph. ``rows`` (with their CSV line numbers) and ``csv`` serve decoding and
    error messages; the cache key sees only ``files`` and ``meta`` (the RLE strings).
    ``image_id`` is the file stem, which may identify; ``key`` (``image_key`` of it) is what
    records carry."""

    image_id: str = ""
    key: str = ""
    shape: tuple[int, int] = (0, 0)
    mask_file: Path | None = None
    rows: tuple[RleRow, ...] = ()
    csv: Path | None = None
    scheme: str = "relative"


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


def images_by_id(folder: Path, suffixes: tuple[str, ...] = IMAGE_SUFFIXES) -> dict[str, Path]:
    """Files under ``folder`` (recursively) keyed by file stem, the image id.

    Two files with one stem would make ids ambiguous: DataError naming both.
    """
    found: dict[str, Path] = {}
    for path in sorted(folder.rglob("*")):
        if path.suffix.lower() not in suffixes or not path.is_file():
            continue
        if path.stem in found:
            raise DataError(
                f"two files share the image id {path.stem!r} (also {found[path.stem]}); "
                "ids must be unique: remove one",
                path=path,
            )
        found[path.stem] = path
    return found


def png_pairs(
    images_dir: Path, masks_dir: Path
) -> tuple[dict[str, tuple[Path, Path]], dict[str, list[str]]]:
    """Same-named image/mask pairs, and the ids left unpaired by reason.

    Returns ``({id: (image, mask)}, {"image without mask": [...], "mask without image": [...]})``.
    """
    images, masks = images_by_id(images_dir), images_by_id(masks_dir)
    pairs = {i: (images[i], masks[i]) for i in sorted(images.keys() & masks.keys())}
    skipped = {
        "image without mask": sorted(images.keys() - masks.keys()),
        "mask without image": sorted(masks.keys() - images.keys()),
    }
    return pairs, skipped


def radiograph_case(entry: RadiographEntry) -> Radiograph:
    """Patient key, grid and (for RLE rows) label of one image, from its header alone;
    a mask PNG is decoded once, into the cache, which then gives the label."""
    patient_id = ""
    if is_dicom(entry.image):
        header = read_dicom(entry.image, header_only=True)
        patient_id = str(header.get("PatientID", "") or "").strip()
        shape = (int(header.get("Rows", 0)), int(header.get("Columns", 0)))
    else:
        shape = image_shape(entry.image)
    # grouped by patient when the DICOM says who it is; else each image stands alone
    patient = anonymous_key(patient_id or f"image:{entry.image_id}")
    if entry.mask is not None:
        label, files, meta = None, (entry.image, entry.mask), {}
    else:
        label = int(any(r.encoded != "-1" for r in entry.rows))
        files, meta = (entry.image,), {"rle": [r.encoded for r in entry.rows]}
    return Radiograph(
        patient=patient,
        files=files,
        meta=meta,
        label=label,
        image_id=entry.image_id,
        key=image_key(entry.image_id),
        shape=shape,
        mask_file=entry.mask,
        rows=entry.rows,
    )


def with_scheme(
    cases: Sequence[Radiograph], csv: Path, rle_scheme: str = "auto"
) -> tuple[list[Radiograph], str]:
    """The cases with the RLE scheme of their CSV recorded (``"auto"``: detected for the whole
    file, else ``rle_scheme`` checked against every row), and that scheme."""
    sized = [(row, c.shape[0] * c.shape[1]) for c in cases for row in c.rows]
    if rle_scheme == "auto":
        scheme = detect_scheme(sized, csv)
    else:
        scheme = rle_scheme
        check_rows(sized, scheme, csv)
    cases = [replace(c, meta={**c.meta, "scheme": scheme}, csv=csv, scheme=scheme) for c in cases]
    return cases, scheme
