"""The PNGs ``ptx predict`` writes (masks, overlays, probability maps), written atomically."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from datamodules.io.atomic import write_bytes_atomic


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
