"""The papers' segmentation metrics as pure functions of per-image confusion counts.

One entry per image (per slice for CT) in every array. ``SegmentationMetrics`` accumulates
the counts; these functions turn them into numbers, and anything that re-reads
``per_image.csv`` (sweeps, bootstrap intervals) can call them too. The empty-mask conventions
are those of docs/design.md; NaN marks a value that is undefined for an image.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike
from scipy.ndimage import binary_erosion
from scipy.spatial import cKDTree

PER_IMAGE_KEYS = ("acc", "dice", "iou", "sen", "spec", "mpa", "dsc")
HAUSDORFF_KEYS = ("hd", "hd95")
ALIASES = {"dsc1": "dice", "pa1": "sen"}  # the X-ray paper's names for the same numbers


def ratio(num: ArrayLike, den: ArrayLike, empty: float) -> np.ndarray:
    """``num / den`` elementwise in float64, ``empty`` where ``den`` is 0."""
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    out = np.full(np.broadcast_shapes(num.shape, den.shape), empty, dtype=np.float64)
    np.divide(num, den, out=out, where=den > 0)
    return out


def image_metrics(tp: ArrayLike, fp: ArrayLike, fn: ArrayLike, tn: ArrayLike) -> dict:
    """Per-image metrics from the pneumothorax-class confusion counts (pixels).

    Args:
        tp, fp, fn, tn: int arrays of shape ``N`` (one entry per image).
    Returns:
        ``{key: float64 array N}`` for ``PER_IMAGE_KEYS``. ``dice``/``iou`` are 1 when both
        masks are empty; ``sen`` is NaN without ground-truth PTX; ``spec`` is NaN when the
        ground truth covers the image; ``mpa`` averages the per-class pixel accuracies of the
        classes present in the ground truth; ``dsc`` is the mean of background and PTX Dice.
    """
    tp, fp, fn, tn = (np.asarray(a, dtype=np.int64) for a in (tp, fp, fn, tn))
    sen = ratio(tp, tp + fn, np.nan)
    spec = ratio(tn, tn + fp, np.nan)
    present = (~np.isnan(sen)).astype(np.int64) + (~np.isnan(spec))
    dice = ratio(2 * tp, 2 * tp + fp + fn, 1.0)
    return {
        "acc": ratio(tp + tn, tp + fp + fn + tn, np.nan),
        "dice": dice,
        "iou": ratio(tp, tp + fp + fn, 1.0),
        "sen": sen,
        "spec": spec,
        "mpa": ratio(np.nan_to_num(sen) + np.nan_to_num(spec), present, np.nan),
        "dsc": (ratio(2 * tn, 2 * tn + fp + fn, 1.0) + dice) / 2,
    }


def mean_sd(values: ArrayLike) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1) over the defined (non-NaN) entries.

    NaN when no entry is defined (the sd also when only one is).
    """
    v = np.asarray(values, dtype=np.float64)
    v = v[~np.isnan(v)]
    mean = float(v.mean()) if v.size else float("nan")
    sd = float(v.std(ddof=1)) if v.size > 1 else float("nan")
    return mean, sd


def _edges(mask: np.ndarray) -> np.ndarray:
    # Boundary pixels: the mask minus its 4-neighbour erosion, outside the grid counting as
    # background (scipy's default, the same edges MONAI's get_mask_edges finds).
    return mask & ~binary_erosion(mask)


def hausdorff(pred: np.ndarray, true: np.ndarray) -> tuple[float, float]:
    """Symmetric Hausdorff distance and HD95 between two non-empty 2-D masks, in pixels.

    Distances are Euclidean between boundary pixels (mask minus its erosion), the way MONAI's
    ``compute_hausdorff_distance`` measures them. HD95 follows MONAI's convention: the 95th
    percentile (linear interpolation) of each directed distance set, then the larger of the
    two; medpy's ``hd95`` instead pools both directions before taking the percentile.

    Args:
        pred, true: ``H x W`` bool masks, both with at least one pixel.
    Returns:
        (hd, hd95) in pixels of the grid the masks are on.
    """
    if not (pred.any() and true.any()):
        raise ValueError(
            f"Hausdorff distance needs two non-empty masks (pred area {int(pred.sum())}, "
            f"true area {int(true.sum())}); skip images where either mask is empty"
        )
    rows, cols = np.nonzero(pred | true)
    # Crop to the union's bounding box: the edges there are those of the full grid.
    box = (slice(rows.min(), rows.max() + 1), slice(cols.min(), cols.max() + 1))
    p = np.argwhere(_edges(pred[box].astype(bool))).astype(np.float64)
    t = np.argwhere(_edges(true[box].astype(bool))).astype(np.float64)
    p_to_t = cKDTree(t).query(p, k=1)[0]
    t_to_p = cKDTree(p).query(t, k=1)[0]
    hd = max(p_to_t.max(), t_to_p.max())
    hd95 = max(np.quantile(p_to_t, 0.95), np.quantile(t_to_p, 0.95))
    return float(hd), float(hd95)


def group_dice(groups: ArrayLike, tp: ArrayLike, fp: ArrayLike, fn: ArrayLike) -> tuple:
    """Dice and IoU per group (patient) from the summed counts of its images.

    For CT this is the 3-D Dice of each patient's volume. Empty/empty scores 1, as per image.
    Returns:
        (group names sorted, dice float64 G, iou float64 G, n_images int G,
        pred_area int G, true_area int G), areas in pixels (voxels for CT).
    """
    names, inverse = np.unique(np.asarray(groups), return_inverse=True)

    def total(a):
        return np.bincount(inverse, weights=np.asarray(a, np.float64), minlength=len(names))

    tp, fp, fn = total(tp), total(fp), total(fn)
    return (
        names,
        ratio(2 * tp, 2 * tp + fp + fn, 1.0),
        ratio(tp, tp + fp + fn, 1.0),
        np.bincount(inverse, minlength=len(names)),
        (tp + fp).astype(np.int64),
        (tp + fn).astype(np.int64),
    )


def diagnosis_metrics(pred_ptx: ArrayLike, true_ptx: ArrayLike) -> dict[str, float]:
    """Image-level diagnosis metrics from predicted and true PTX calls (bool arrays N).

    Keys ``diag_acc``, ``diag_sen``, ``diag_spec``, ``diag_ppv``, ``diag_npv``, ``diag_f1``;
    NaN where a denominator is 0 (no positives, no predicted positives, ...).
    """
    p, t = np.asarray(pred_ptx, dtype=bool), np.asarray(true_ptx, dtype=bool)
    tp, fp = np.sum(p & t), np.sum(p & ~t)
    fn, tn = np.sum(~p & t), np.sum(~p & ~t)
    values = {
        "diag_acc": ratio(tp + tn, p.size, np.nan),
        "diag_sen": ratio(tp, tp + fn, np.nan),
        "diag_spec": ratio(tn, tn + fp, np.nan),
        "diag_ppv": ratio(tp, tp + fp, np.nan),
        "diag_npv": ratio(tn, tn + fn, np.nan),
        "diag_f1": ratio(2 * tp, 2 * tp + fp + fn, np.nan),
    }
    return {k: float(v) for k, v in values.items()}


def set_metrics(
    values: dict[str, np.ndarray],
    tp: ArrayLike,
    fp: ArrayLike,
    fn: ArrayLike,
    patients: ArrayLike,
) -> dict[str, float]:
    """Set-level numbers from the per-image values and counts of N distinct images.

    Args:
        values: ``{key: float64 array N}`` per-image metrics (``image_metrics``, plus
            ``hd``/``hd95`` when computed).
        tp, fp, fn: int arrays N, confusion counts of the PTX class.
        patients: N patient keys, for the per-volume (per-patient) Dice.
    Returns:
        for each key ``k``: ``k`` (mean where defined) and ``k_sd``; the aliases ``dsc1`` and
        ``pa1``; ``dice_global``/``iou_global`` (pooled over all pixels), ``dice_pos`` (mean
        over GT-positive images), ``dice_kaggle`` (mean over all images, SIIM convention),
        ``dice_volume`` (mean over patients of their 3-D Dice), ``n_images``, ``n_positive``,
        ``n_patients``.
    """
    tp, fp, fn = (np.asarray(a, dtype=np.int64) for a in (tp, fp, fn))
    out: dict[str, float] = {}
    for key, v in values.items():
        out[key], out[f"{key}_sd"] = mean_sd(v)
    for alias, key in ALIASES.items():
        out[alias], out[f"{alias}_sd"] = out[key], out[f"{key}_sd"]
    positive = (tp + fn) > 0
    out["dice_global"] = float(ratio(2 * tp.sum(), 2 * tp.sum() + fp.sum() + fn.sum(), 1.0))
    out["iou_global"] = float(ratio(tp.sum(), tp.sum() + fp.sum() + fn.sum(), 1.0))
    out["dice_pos"] = mean_sd(values["dice"][positive])[0]
    out["dice_kaggle"] = mean_sd(values["dice"])[0]
    _, volume_dice, *_ = group_dice(patients, tp, fp, fn)
    out["dice_volume"] = mean_sd(volume_dice)[0]
    out["n_images"] = int(tp.size)
    out["n_positive"] = int(positive.sum())
    out["n_patients"] = len(volume_dice)
    return out
