"""The diagnosis rules: the paper's 50 px on the predicted grid, the scaled reading, the tuned
SIIM-ACR triplet (and its search on hand-made validation counts)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from lightning_modules.diagnosis import DiagnosisRule, diagnose, scaled_min_area
from lightning_modules.postprocessing import (
    THRESHOLDS,
    ThresholdCounts,
    candidate_min_areas,
    triplet_scores,
    tune_rule,
)


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


def test_paper_rule_is_50_pixels_on_the_predicted_grid():
    for size in (64, 256, 1024):  # the same 50 px whatever the grid
        calls = diagnose(masks_with_areas([0, 49, 50, 51, 500], size))
        assert calls.tolist() == [False, False, False, True, True]  # "more than 50" is strict
    rule = DiagnosisRule()  # paper
    probs = masks_with_areas([50, 51], 64).float() * 0.9
    assert rule.calls(probs).tolist() == [False, True]
    assert rule.area_threshold(64) == rule.area_threshold(1024) == 50


def test_scaled_rule_scales_with_the_grid_area():
    assert scaled_min_area(50, 1024, 1024) == 50
    assert scaled_min_area(50, 256, 1024) == pytest.approx(3.125)
    assert scaled_min_area(50, (512, 256), reference_size=(1024, 512)) == pytest.approx(12.5)
    assert scaled_min_area(50, np.int64(512), reference_size=512) == 50  # CT's native grid
    assert scaled_min_area(50, 256, None) == 50  # no reference: the paper's reading
    # at 256 x 256 the bar is 3.125 px: 3 pixels are noise, 4 a pneumothorax
    assert diagnose(masks_with_areas([3, 4], 256), reference_size=1024).tolist() == [False, True]
    rule = DiagnosisRule("scaled", 50, reference_size=1024)
    assert rule.area_threshold(256) == pytest.approx(3.125)
    assert rule.calls(masks_with_areas([3, 4], 256).float()).tolist() == [False, True]
    with pytest.raises(ValueError, match="reference_size"):
        DiagnosisRule("scaled", 50)


def test_resized_masks_keep_their_scaled_call():
    # 60 px at 1024 (4 x 15) is 3.75 px at 256 and still positive; 40 px (4 x 10) is 2.5 px
    big, small = block_mask(4, 15), block_mask(4, 10)
    for mask, positive in ((big, True), (small, False)):
        assert diagnose(mask, reference_size=1024).item() is positive
        area = F.interpolate(mask[None].float(), size=(256, 256), mode="area")[0]
        assert area.sum().item() == pytest.approx(mask.sum().item() / 16)
        assert diagnose(area, reference_size=1024).item() is positive
        nearest = F.interpolate(mask[None].float(), size=(256, 256), mode="nearest")[0].bool()
        assert nearest.sum().item() == (4 if positive else 3)
        assert diagnose(nearest, reference_size=1024).item() is positive


def test_integer_masks_and_bad_input():
    masks = masks_with_areas([51, 50], 1024).to(torch.uint8)
    assert diagnose(masks).tolist() == [True, False]
    with pytest.raises(ValueError, match="B x H x W"):
        diagnose(masks[0])
    with pytest.raises(ValueError, match="min_area"):
        diagnose(masks, min_area=-1)
    with pytest.raises(ValueError, match="positive"):
        scaled_min_area(50, 256, reference_size=0)
    with pytest.raises(ValueError, match="unknown diagnosis rule 'area'"):
        DiagnosisRule("area")
    with pytest.raises(ValueError, match="top_threshold"):
        DiagnosisRule("tuned", top_threshold=1.5)


def test_tuned_rule_calls_and_clears_masks():
    probs = torch.zeros(3, 64, 64)
    probs[0, :10, :10] = 0.9  # 100 px above 0.8: positive
    probs[1, :5, :5] = 0.9  # 25 px above 0.8: negative, its mask cleared
    probs[2, :20, :20] = 0.6  # 400 px above 0.5 but none above 0.8: negative
    rule = DiagnosisRule("tuned", min_area=30, top_threshold=0.8, pixel_threshold=0.5)
    assert rule.calls(probs).tolist() == [True, False, False]
    assert rule.masks(probs).flatten(1).sum(1).tolist() == [100, 0, 0]
    # paper keeps the network's own masks whatever the call
    assert DiagnosisRule().masks(probs).flatten(1).sum(1).tolist() == [100, 25, 400]
    assert DiagnosisRule.from_dict(rule.to_dict()) == rule
    assert "p > 0.8" in rule.describe() and "50" in DiagnosisRule().describe()


def _counts(probs: torch.Tensor, truth: torch.Tensor) -> dict:
    metric = ThresholdCounts()
    metric.update(probs[:2], truth[:2], torch.tensor([0, 1]))
    metric.update(probs[2:], truth[2:], torch.arange(2, len(probs)))
    return metric.compute()


def test_threshold_counts_hand_computed():
    probs = torch.zeros(2, 4, 4)
    probs[0, 0, :4] = torch.tensor([0.15, 0.35, 0.55, 0.95])
    truth = torch.zeros(2, 4, 4, dtype=torch.long)
    truth[0, 0, 2:] = 1
    counts = _counts(probs, truth)
    assert counts["area"][0].tolist() == [4, 3, 3, 2, 2, 1, 1, 1, 1]  # p > 0.1, ..., 0.9
    assert counts["tp"][0].tolist() == [2, 2, 2, 2, 2, 1, 1, 1, 1]
    assert counts["true_area"].tolist() == [2, 0]
    assert counts["area"][1].sum() == 0


def test_triplet_scores_equal_the_kaggle_dice_of_each_triplet():
    torch.manual_seed(0)
    truth = torch.zeros(6, 32, 32, dtype=torch.long)
    truth[:3, 8:20, 8:20] = 1  # three positives, three negatives
    probs = torch.rand(6, 32, 32) * 0.3 + 0.6 * truth
    probs[3, :3, :3] = 0.95  # a small confident false positive on a negative
    counts = _counts(probs, truth)
    areas = candidate_min_areas((32, 32))
    scores = triplet_scores(counts["area"], counts["tp"], counts["true_area"], areas)
    assert scores.shape == (9, len(areas), 9)
    for top, a, pixel in [(4, 0, 4), (7, 2, 3), (0, len(areas) - 1, 8)]:
        rule = DiagnosisRule(
            "tuned", areas[a], top_threshold=THRESHOLDS[top], pixel_threshold=THRESHOLDS[pixel]
        )
        masks = rule.masks(probs)
        p, t = masks, truth.bool()
        inter = (p & t).flatten(1).sum(1).double()
        total = p.flatten(1).sum(1).double() + t.flatten(1).sum(1).double()
        dice = torch.where(
            total > 0, 2 * inter / total.clamp(min=1), torch.ones(6, dtype=torch.double)
        )
        assert scores[top, a, pixel] == pytest.approx(dice.mean().item(), abs=1e-12)


def test_tuning_clears_small_false_positives_and_keeps_ties_at_the_paper_rule():
    truth = torch.zeros(8, 64, 64, dtype=torch.long)
    truth[:4, 10:40, 10:40] = 1  # 900 px each
    probs = 0.95 * truth.float()
    probs[4:, :4, :4] = 0.95  # 16 confident pixels on each negative image
    rule = tune_rule(_counts(probs, truth), (64, 64))
    assert rule.rule == "tuned" and rule.tuned_on == "val"
    assert rule.objective == pytest.approx(1.0)
    assert 16 <= rule.min_area < 900  # the smallest candidate above 16 px nearest 50
    assert (rule.top_threshold, rule.pixel_threshold) == (0.5, 0.5)  # flat: as published
    assert rule.min_area == 50.0
    untuned = DiagnosisRule()
    assert untuned.calls(probs).tolist() == [True] * 4 + [False] * 4  # 16 px < 50 already
    probs[4:, :12, :12] = 0.95  # 144 px false positives: 50 no longer clears them
    rule = tune_rule(_counts(probs, truth), (64, 64))
    assert rule.objective == pytest.approx(1.0) and 144 <= rule.min_area < 900
