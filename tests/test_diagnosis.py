"""The area rule: more than 50 PTX pixels at 1024 x 1024, scaled to the masks' grid."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from lightning_modules.diagnosis import diagnose, scaled_min_area, threshold_masks


def masks_with_areas(areas: list[int], size: int) -> torch.Tensor:
    """``len(areas) x size x size`` bool masks, image i with its first areas[i] pixels set."""
    masks = torch.zeros(len(areas), size * size, dtype=torch.bool)
    for i, area in enumerate(areas):
        masks[i, :area] = True
    return masks.view(len(areas), size, size)


def block_mask(rows: int, cols: int, size: int = 1024, top: int = 512, left: int = 256):
    """One ``1 x size x size`` mask holding a rows x cols rectangle (4-pixel aligned corner)."""
    mask = torch.zeros(1, size, size, dtype=torch.bool)
    mask[0, top : top + rows, left : left + cols] = True
    return mask


def test_below_at_and_above_the_threshold_at_the_reference_grid():
    calls = diagnose(masks_with_areas([0, 49, 50, 51, 5000], 1024))
    assert calls.tolist() == [False, False, False, True, True]  # "more than 50" is strict


def test_threshold_scales_with_the_grid_area():
    assert scaled_min_area(50, 1024) == 50
    assert scaled_min_area(50, 256) == pytest.approx(3.125)
    assert scaled_min_area(50, (512, 256), reference_size=(1024, 512)) == pytest.approx(12.5)
    assert scaled_min_area(50, np.int64(512), reference_size=512) == 50  # CT's native grid
    # at 256 x 256 the bar is 3.125 px: 3 pixels are noise, 4 a pneumothorax
    assert diagnose(masks_with_areas([3, 4], 256)).tolist() == [False, True]


def test_resized_masks_keep_their_call():
    # 60 px at 1024 (4 x 15) is 3.75 px at 256 and still positive; 40 px (4 x 10) is 2.5 px
    big, small = block_mask(4, 15), block_mask(4, 10)
    for mask, positive in ((big, True), (small, False)):
        assert diagnose(mask).item() is positive
        area = F.interpolate(mask[None].float(), size=(256, 256), mode="area")[0]
        assert area.sum().item() == pytest.approx(mask.sum().item() / 16)
        assert diagnose(area).item() is positive
        nearest = F.interpolate(mask[None].float(), size=(256, 256), mode="nearest")[0].bool()
        assert nearest.sum().item() == (4 if positive else 3)
        assert diagnose(nearest).item() is positive


def test_reference_size_is_configurable():
    masks = masks_with_areas([40, 60], 512)
    assert diagnose(masks, reference_size=512).tolist() == [False, True]
    assert diagnose(masks, min_area=20, reference_size=512).tolist() == [True, True]
    # the same 512 x 512 masks read against the 1024 grid: the bar is 12.5 px
    assert diagnose(masks).tolist() == [True, True]


def test_integer_masks_and_bad_input():
    masks = masks_with_areas([51, 50], 1024).to(torch.uint8)
    assert diagnose(masks).tolist() == [True, False]
    with pytest.raises(ValueError, match="B x H x W"):
        diagnose(masks[0])
    with pytest.raises(ValueError, match="min_area"):
        diagnose(masks, min_area=-1)
    with pytest.raises(ValueError, match="positive"):
        scaled_min_area(50, 256, reference_size=0)


def test_threshold_masks_clears_small_masks_only():
    probs = torch.zeros(3, 256, 256)
    probs[0, :2, :2] = 0.9  # 4 px at 256: above 3.125 -> kept
    probs[1, :1, :3] = 0.9  # 3 px: cleared
    probs[2, :10, :10] = 0.4  # below the probability threshold: empty
    out = threshold_masks(probs, probability_threshold=0.5, min_area=50)
    assert out.flatten(1).sum(1).tolist() == [4, 0, 0]
    assert threshold_masks(probs, 0.5, min_area=0).flatten(1).sum(1).tolist() == [4, 3, 0]
    assert threshold_masks(probs, 0.3, min_area=0).flatten(1).sum(1).tolist() == [4, 3, 100]
