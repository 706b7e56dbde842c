"""Image-level pneumothorax calls from predicted masks: the X-ray paper's area rule.

The paper calls an image pneumothorax when its predicted mask covers more than 50 pixels.
A pixel count only means something at a stated resolution: the threshold is given at
``reference_size`` (default 1024 x 1024, the radiographs' native grid) and scaled by area to
the grid the masks are on (50 px at 1024 x 1024 is 3.125 px at 256 x 256).
"""

from __future__ import annotations

from collections.abc import Sequence
from numbers import Integral

import torch

PAPER_MIN_AREA = 50  # pixels, at the native radiograph grid
PAPER_REFERENCE_SIZE = 1024


def _pair(size: int | Sequence[int]) -> tuple[int, int]:
    h, w = (size, size) if isinstance(size, Integral) else tuple(size)
    if int(h) < 1 or int(w) < 1:
        raise ValueError(f"a grid size must be positive, got {size!r}")
    return int(h), int(w)


def _check_batch(masks: torch.Tensor) -> None:
    # an H x W mask would silently be read as H images of one row each
    if masks.ndim != 3:
        raise ValueError(
            f"masks must be B x H x W, got shape {tuple(masks.shape)}; "
            "add a batch dimension (mask[None]) for a single image"
        )


def scaled_min_area(
    min_area: float,
    shape: int | Sequence[int],
    reference_size: int | Sequence[int] = PAPER_REFERENCE_SIZE,
) -> float:
    """``min_area`` pixels at ``reference_size`` expressed in pixels of a ``shape`` grid."""
    h, w = _pair(shape)
    rh, rw = _pair(reference_size)
    return float(min_area) * (h * w) / (rh * rw)


def diagnose(
    masks: torch.Tensor,
    min_area: float = PAPER_MIN_AREA,
    reference_size: int | Sequence[int] = PAPER_REFERENCE_SIZE,
) -> torch.Tensor:
    """Per image True (pneumothorax) when the mask area exceeds the scaled threshold.

    Args:
        masks: ``B x H x W`` binary predicted masks (bool or 0/1).
        min_area: threshold in pixels at ``reference_size``; an area equal to it is negative.
        reference_size: the grid ``min_area`` is stated at (int or (H, W)).
    Returns:
        bool tensor of shape ``B``, on the masks' device.
    """
    _check_batch(masks)
    if min_area < 0:
        raise ValueError(f"min_area must be >= 0 pixels, got {min_area}")
    area = masks.flatten(1).sum(1)  # exact int64 for bool/integer masks, on any device
    return area > scaled_min_area(min_area, masks.shape[-2:], reference_size)


def threshold_masks(
    probabilities: torch.Tensor,
    probability_threshold: float = 0.5,
    min_area: float = 0.0,
    reference_size: int | Sequence[int] = PAPER_REFERENCE_SIZE,
) -> torch.Tensor:
    """Binary masks from ``B x H x W`` PTX probabilities, emptied when too small.

    The (probability threshold, minimum area) post-processing of the top SIIM-ACR solutions:
    pixels above ``probability_threshold`` form the mask; a mask whose area does not exceed
    ``min_area`` (at ``reference_size``) is cleared. Tune both on validation data only.
    """
    masks = probabilities > probability_threshold
    keep = diagnose(masks, min_area, reference_size)  # min_area 0 keeps any non-empty mask
    return masks & keep[:, None, None]
