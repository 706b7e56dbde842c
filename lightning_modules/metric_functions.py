"""The papers' segmentation metrics as pure functions of per-image confusion counts.

One entry per image (per slice for CT) in every array. ``SegmentationMetrics`` accumulates
the counts; these functions turn them into numbers, and anything that re-reads
``per_image.csv`` (sweeps, bootstrap intervals) can call them too. The empty-mask conventions
are those of docs/design.md; NaN marks a value that is undefined for an image.

Every set-level number is a mean over a named population (:data:`POPULATION`): the overlap
metrics over the images whose ground truth has pneumothorax (the X-ray paper's PTX group, the
EFA paper's pneumothorax slices), so an empty prediction scores 0 wherever there is something
to find; pixel accuracy and specificity over every image, as the EFA paper defines them; the
false-positive figures over the images without pneumothorax.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike
from scipy.ndimage import binary_erosion
from scipy.spatial import cKDTree

# Version of what a run record's numbers mean (metrics.json ``record_version``). 2: set-level
# overlap metrics over the images with pneumothorax, ``dice_kaggle`` the all-image mean, the
# diagnosis rule recorded. 3: radiograph ids are keys (``image_key``), never file stems.
# Readers refuse records of another version (``records.OLDER_RECORDS`` says why).
RECORD_VERSION = 3
PER_IMAGE_KEYS = ("acc", "dice", "iou", "sen", "spec", "mpa", "dsc")
HAUSDORFF_KEYS = ("hd", "hd95")
ALIASES = {"dsc1": "dice", "pa1": "sen"}  # the X-ray paper's names for the same numbers
POSITIVE, NEGATIVE, ALL = "positive", "negative", "all"
POPULATION = {  # key -> the test images its set-level value is taken over
    **dict.fromkeys(("acc", "spec", "dice_kaggle", "dice_global", "iou_global"), ALL),
    **dict.fromkeys(("dice", "iou", "sen", "mpa", "dsc", *HAUSDORFF_KEYS, "hd_max"), POSITIVE),
    **dict.fromkeys(("dice_volume", "iou_volume"), POSITIVE),  # patients with pneumothorax
    **dict.fromkeys(("empty_fp_rate", "neg_pred_area"), NEGATIVE),
}
# set-level keys where smaller is better (significance marks need the direction)
LOWER_IS_BETTER = frozenset({*HAUSDORFF_KEYS, "hd_max", "empty_fp_rate", "neg_pred_area"})


def population_of(key: str) -> str:
    """The population of a key (aliases resolved); ``all`` for others (``diag_*``, counts)."""
    return POPULATION.get(ALIASES.get(key, key), ALL)


def in_population(true_area: ArrayLike, population: str) -> np.ndarray:
    """bool N: which images belong to ``population`` given their ground-truth areas."""
    positive = np.nan_to_num(np.asarray(true_area, dtype=np.float64)) > 0
    if population == POSITIVE:
        return positive
    if population == NEGATIVE:
        return ~positive
    if population == ALL:
        return np.ones_like(positive)
    raise ValueError(f"unknown population {population!r}; use {POSITIVE}, {NEGATIVE} or {ALL}")


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
        (group names in order of first appearance, dice float64 G, iou float64 G, n_images
        int G, pred_area int G, true_area int G), areas in pixels (voxels for CT). The
        data's order, not the sorted keys: keys are HMACs under a site's secret, and a
        seeded bootstrap over the groups must draw the same patients at every site.
    """
    keys = np.asarray(groups).tolist()
    position = {key: i for i, key in enumerate(dict.fromkeys(keys))}
    names = np.asarray(list(position), dtype=object if not keys else None)
    inverse = np.fromiter((position[k] for k in keys), dtype=np.int64, count=len(keys))

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


def volume_dice(groups: ArrayLike, tp: ArrayLike, fp: ArrayLike, fn: ArrayLike) -> tuple:
    """3-D Dice of each patient whose ground truth has pneumothorax (the headline population
    of a per-volume Dice): ``(patients, dice)``, both of length P+, patients sorted."""
    names, dice, _, _, _, true_area = group_dice(groups, tp, fp, fn)
    keep = true_area > 0
    return names[keep], dice[keep]


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
    pred_ptx: ArrayLike,
) -> dict[str, float]:
    """Set-level numbers from the per-image values and counts of N distinct images.

    Args:
        values: ``{key: float64 array N}`` per-image metrics (``image_metrics``, plus
            ``hd``/``hd95`` when computed).
        tp, fp, fn: int arrays N, confusion counts of the PTX class.
        patients: N patient keys, for the per-volume (per-patient) Dice.
        pred_ptx: bool N, the diagnosis rule's call on each image.
    Returns:
        for each key ``k``: ``k`` (mean over its :data:`POPULATION` where defined) and
        ``k_sd``; the aliases ``dsc1`` and ``pa1``; ``dice_kaggle`` (mean over all images,
        empty/empty = 1: the SIIM-ACR leaderboard convention, never a headline);
        ``dice_global``/``iou_global`` (pooled over all pixels); ``dice_volume`` (mean over
        the patients with pneumothorax of their 3-D Dice) and ``dice_volume_sd``; ``hd_max``
        (largest HD over the PTX group, when computed); over the images without
        pneumothorax ``empty_fp_rate`` (share called PTX by the rule) and ``neg_pred_area``
        (mean predicted PTX area, pixels); the diagnosis numbers (:func:`diagnosis_metrics`,
        all images); and the population sizes ``n_images``, ``n_positive``, ``n_negative``,
        ``n_patients``, ``n_patients_positive``.
    """
    tp, fp, fn = (np.asarray(a, dtype=np.int64) for a in (tp, fp, fn))
    pred_ptx = np.asarray(pred_ptx, dtype=bool)
    positive = (tp + fn) > 0
    out: dict[str, float] = {}
    for key, v in values.items():
        keep = in_population(tp + fn, population_of(key))
        out[key], out[f"{key}_sd"] = mean_sd(v[keep])
    for alias, key in ALIASES.items():
        out[alias], out[f"{alias}_sd"] = out[key], out[f"{key}_sd"]
    out["dice_kaggle"] = mean_sd(values["dice"])[0]
    out["dice_global"] = float(ratio(2 * tp.sum(), 2 * tp.sum() + fp.sum() + fn.sum(), 1.0))
    out["iou_global"] = float(ratio(tp.sum(), tp.sum() + fp.sum() + fn.sum(), 1.0))
    patients = np.asarray(patients)
    with_ptx, dice_3d = volume_dice(patients, tp, fp, fn)
    out["dice_volume"], out["dice_volume_sd"] = mean_sd(dice_3d)
    if "hd" in values:
        hd = values["hd"][positive]
        out["hd_max"] = float(np.nanmax(hd)) if np.isfinite(hd).any() else float("nan")
    out["empty_fp_rate"] = mean_sd(pred_ptx[~positive])[0]
    out["neg_pred_area"] = mean_sd((tp + fp)[~positive])[0]
    out.update(diagnosis_metrics(pred_ptx, positive))
    out["n_images"] = int(tp.size)
    out["n_positive"] = int(positive.sum())
    out["n_negative"] = int((~positive).sum())
    out["n_patients"] = len(np.unique(patients))
    out["n_patients_positive"] = len(with_ptx)
    return out
