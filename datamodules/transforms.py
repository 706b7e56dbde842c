"""Every array transform of the data path, pure functions of their inputs.

Intensity: ``lung_window`` (CT Hounsfield units -> [0, 1]) and ``robust_range`` /
``to_unit`` (a radiograph's values -> [0, 1], used by ``readers.radiograph``). Geometry:
``resize_images`` / ``resize_masks`` (deterministic, before the preprocessing cache) and
``random_hflip`` (training items only).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F


def lung_window(
    hu: np.ndarray, width: float = 1500.0, level: float = -600.0, out: np.ndarray | None = None
) -> np.ndarray:
    """HU -> [0, 1] float32: ``level - width/2`` maps to 0, ``level + width/2`` to 1, clipped.

    With the paper's lung window (1500, -600): -1350 HU -> 0, -600 -> 0.5, +150 -> 1.
    ``out`` (float32, same shape; may be ``hu`` itself) saves a volume-sized copy.
    """
    hu = np.asarray(hu, dtype=np.float32)
    out = np.empty_like(hu) if out is None else out
    np.subtract(hu, np.float32(level - width / 2.0), out=out)
    np.divide(out, np.float32(width), out=out)
    return np.clip(out, 0.0, 1.0, out=out)


def robust_range(
    values: np.ndarray, percentiles: Sequence[float], padding: np.ndarray | None = None
) -> tuple[float, float]:
    """The ``percentiles`` (e.g. 0.5 and 99.5) of the pixels inside the image.

    Inside: not at the image's extreme values (collimator blades, background and saturated
    detector areas sit there and can cover half an image) and not padding (bool mask);
    all pixels when fewer than 1 % are inside (e.g. a binary image).
    """
    inside = (values > values.min()) & (values < values.max())
    if padding is not None:
        inside &= ~padding
    sample = values[inside] if inside.sum() >= 0.01 * values.size else values
    low, high = np.percentile(sample, list(percentiles))
    return float(low), float(high)


def to_unit(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """``low`` -> 0, ``high`` -> 1, clipped, float32 (a zero range gives zeros)."""
    out = (np.asarray(values, dtype=np.float64) - low) / (high - low if high > low else np.inf)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def resize_images(images: np.ndarray, size: int | None) -> np.ndarray:
    """Resize N x H x W float images to N x size x size (bilinear, antialiased when shrinking)."""
    if size is None or images.shape[1:] == (size, size):
        return np.asarray(images, dtype=np.float32)
    tensor = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))[:, None]
    shrinking = size < max(images.shape[1:])
    out = F.interpolate(
        tensor, size=(size, size), mode="bilinear", align_corners=False, antialias=shrinking
    )
    return out[:, 0].clamp_(0.0, 1.0).numpy()


def resize_masks(masks: np.ndarray, size: int | None) -> np.ndarray:
    """Resize N x H x W {0,1} masks: area average then >= 0.5 (nearest when enlarging)."""
    if size is None or masks.shape[1:] == (size, size):
        return np.asarray(masks, dtype=np.uint8)
    tensor = torch.from_numpy(np.ascontiguousarray(masks, dtype=np.float32))[:, None]
    out = F.interpolate(tensor, size=(size, size), mode="area")
    return (out[:, 0] >= 0.5).to(torch.uint8).numpy()


def random_hflip(image: torch.Tensor, mask: torch.Tensor, p: float = 0.5):
    """Flip a C x H x W image and its H x W mask left-right together with probability ``p``."""
    if torch.rand(()) < p:
        return image.flip(-1), mask.flip(-1)
    return image, mask
