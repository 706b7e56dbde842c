"""Tuning the ``tuned`` diagnosis rule on validation data: the SIIM-ACR winners' "triplet".

The top SIIM-ACR solutions post-processed each probability map with three numbers chosen on
validation data: a top threshold and a minimum area (an image is positive when more than
``min_area`` pixels exceed ``top_threshold``) and a pixel threshold (its mask is the pixels
above ``pixel_threshold``). :class:`ThresholdCounts` accumulates, per validation image and
per candidate threshold, the predicted area and its overlap with the ground truth: that is
all the search needs, so no probability map is kept. :func:`tune_rule` then scores every
triplet of the grid on those counts and returns the best as a :class:`DiagnosisRule`.

The objective is the per-image mean Dice over all validation images with empty/empty = 1
(the SIIM-ACR leaderboard metric): it rewards both emptying the maps of images without
pneumothorax and segmenting the others, which is what the triplet trades off.
"""

from __future__ import annotations

import numpy as np
import torch
from torchmetrics import Metric
from torchmetrics.utilities.data import dim_zero_cat

from lightning_modules.diagnosis import DiagnosisRule

THRESHOLDS = tuple(round(0.1 * k, 1) for k in range(1, 10))  # 0.1, ..., 0.9
# minimum areas in pixels of a 256 x 256 grid, scaled by area to the evaluated grid
MIN_AREAS_256 = (0, 5, 10, 25, 50, 100, 200, 400, 800, 1600, 3200)


class ThresholdCounts(Metric):
    """Per image and threshold ``t`` of :data:`THRESHOLDS`: ``area`` (pixels with p > t) and
    ``tp`` (those inside the ground truth), plus the ground-truth area; gathered across
    processes and de-duplicated by dataset index like ``SegmentationMetrics``."""

    full_state_update = False

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.thresholds = THRESHOLDS
        self.grid: tuple[int, int] | None = None
        for name in ("index", "area", "tp", "true_area"):
            self.add_state(name, default=[], dist_reduce_fx="cat")

    def update(self, probabilities: torch.Tensor, target: torch.Tensor, index) -> None:
        """``probabilities`` ``B x H x W`` PTX probabilities, ``target`` ``B x H x W`` {0, 1}."""
        self.grid = tuple(probabilities.shape[-2:])
        truth = target.bool()
        t = torch.tensor(self.thresholds, device=probabilities.device).view(1, -1, 1, 1)
        above = probabilities[:, None] > t  # B x T x H x W
        self.area.append(above.flatten(2).sum(2, dtype=torch.int32).long())
        self.tp.append((above & truth[:, None]).flatten(2).sum(2, dtype=torch.int32).long())
        self.true_area.append(truth.flatten(1).sum(1, dtype=torch.int32).long())
        self.index.append(torch.as_tensor(index, device=probabilities.device).reshape(-1))

    def compute(self) -> dict[str, np.ndarray]:
        """``area``, ``tp`` (int N x T), ``true_area`` (int N), one row per distinct image."""
        index = dim_zero_cat(self.index).cpu().numpy()
        _, keep = np.unique(index, return_index=True)
        return {
            "area": dim_zero_cat(self.area).cpu().numpy()[keep],
            "tp": dim_zero_cat(self.tp).cpu().numpy()[keep],
            "true_area": dim_zero_cat(self.true_area).cpu().numpy()[keep],
        }


def candidate_min_areas(grid: tuple[int, int]) -> np.ndarray:
    """:data:`MIN_AREAS_256` in pixels of ``grid`` (plus the paper's 50 px), sorted, unique."""
    scale = grid[0] * grid[1] / (256 * 256)
    return np.unique(np.round([*(a * scale for a in MIN_AREAS_256), 50.0], 2))


def triplet_scores(
    area: np.ndarray, tp: np.ndarray, true_area: np.ndarray, min_areas: np.ndarray
) -> np.ndarray:
    """Mean Kaggle Dice of every (top threshold, min area, pixel threshold) triplet.

    Args:
        area, tp: int ``N x T`` counts at each threshold; true_area: int ``N``.
        min_areas: ``A`` candidate minimum areas (pixels).
    Returns:
        float64 ``T x A x T`` (top threshold, min area, pixel threshold).
    """
    area, tp = area.astype(np.float64), tp.astype(np.float64)
    true_area = true_area.astype(np.float64)
    # Dice of the pixel-threshold mask of each image (N x T); empty/empty = 1
    denominator = area + true_area[:, None]
    dice = np.divide(2 * tp, denominator, out=np.ones_like(tp), where=denominator > 0)
    empty_score = (true_area == 0).astype(np.float64)  # an image called negative: mask empty
    called = area[:, :, None] > min_areas[None, None, :]  # N x T(top) x A
    # positive call: the pixel-threshold mask's Dice; negative call: 1 if truly empty, else 0
    scores = np.where(called[..., None], dice[:, None, None, :], empty_score[:, None, None, None])
    return scores.mean(axis=0)


def tune_rule(counts: dict[str, np.ndarray], grid: tuple[int, int]) -> DiagnosisRule:
    """The best ``tuned`` rule on the validation ``counts`` of :class:`ThresholdCounts`.

    Ties go to the triplet nearest the untuned paper rule (thresholds 0.5, 50 px), so a flat
    objective leaves the rule as published.
    """
    if len(counts["true_area"]) == 0:
        raise ValueError("no validation images to tune the diagnosis rule on")
    thresholds = np.asarray(THRESHOLDS)
    min_areas = candidate_min_areas(grid)
    scores = triplet_scores(counts["area"], counts["tp"], counts["true_area"], min_areas)
    best = scores.max()
    top, area, pixel = np.nonzero(np.isclose(scores, best, rtol=0, atol=1e-12))
    distance = (
        np.abs(thresholds[top] - 0.5)
        + np.abs(thresholds[pixel] - 0.5)
        + np.abs(np.log1p(min_areas[area]) - np.log1p(50.0))
    )
    i = int(np.argmin(distance))
    return DiagnosisRule(
        rule="tuned",
        min_area=float(min_areas[area[i]]),
        top_threshold=float(thresholds[top[i]]),
        pixel_threshold=float(thresholds[pixel[i]]),
        tuned_on="val",
        objective=float(best),
    )
