"""The PNG folder layout: ``images/<ImageId>.png`` beside ``masks/<ImageId>.png`` (0/255),
and the writer of the PNGs ``ptx predict`` makes (masks, overlays, probability maps)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from datamodules.atomic import write_bytes_atomic
from datamodules.errors import DataError

IMAGE_SUFFIXES = (".png",)


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


def write_png(path: str | Path, pixels: np.ndarray) -> Path:
    """Save uint8 ``H x W`` (grey; a mask as 0/255) or ``H x W x 3`` (RGB) atomically."""
    pixels = np.asarray(pixels)
    if pixels.dtype != np.uint8 or pixels.ndim not in (2, 3):
        raise ValueError(
            f"write_png takes uint8 H x W or H x W x 3, got {pixels.dtype} {pixels.shape}"
        )
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return write_bytes_atomic(path, buffer.getvalue())
